// One line describing the machine, for benchmark output.

import * as fs from 'node:fs';
import * as os from 'node:os';
import { physicalCores } from '../src/kernels/cpu/index.js';

export function cpuModel(): string {
  try {
    const m = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/);
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

export function cpuFlags(): string[] {
  try {
    const m = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/flags\s*:\s*(.*)/);
    return m ? m[1]!.split(/\s+/).filter((f) => ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_vnni'].includes(f)) : [];
  } catch {
    return [];
  }
}

export function machineSummary(): string {
  return `${cpuModel()} (${physicalCores()} cores, ${os.availableParallelism()} logical, ${cpuFlags().join(' ')}), ` +
    `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
}
