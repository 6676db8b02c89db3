// One line describing the machine, for benchmark output.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { physicalCores } from '../kernels/cpu/index.js';

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

/**
 * Read bandwidth in GB/s: the median of 9 streaming sums over `bytes` (default 512 MiB, well
 * beyond this machine's last-level cache) with the native backend's threads and 32 independent
 * accumulators. Every script that quotes a share of bandwidth uses this one probe. Measured in a
 * child process so that the buffer never counts towards the caller's RSS. Null when the native
 * backend is not built.
 */
export function measureReadBandwidth(bytes = 512 << 20): number | null {
  const backend = fileURLToPath(new URL('../kernels/cpu/index.js', import.meta.url));
  const script = `
    const { createCpuBackend } = await import(${JSON.stringify(backend)});
    const cpu = createCpuBackend();
    const data = new Float32Array(${Math.floor(bytes / 4)}).fill(1);
    const times = [];
    for (let i = 0; i < 9; i++) { const t0 = performance.now(); cpu.readSum(data); times.push(performance.now() - t0); }
    times.sort((a, b) => a - b);
    process.stdout.write(String(data.byteLength / (times[4] * 1e6)));`;
  try {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const gbs = Number(out);
    return Number.isFinite(gbs) && gbs > 0 ? gbs : null;
  } catch {
    return null;
  }
}
