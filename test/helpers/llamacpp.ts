// node-llama-cpp (llama.cpp's prebuilt CPU binaries) as an independent oracle for tests. It is a
// pinned dev dependency; in CI a missing or unusable binary fails the test, elsewhere it skips
// with a visible message.

import type * as NodeLlamaCpp from 'node-llama-cpp';
import { inCi } from './ci.js';

export type LlamaCppModule = typeof NodeLlamaCpp;
export type Llama = Awaited<ReturnType<LlamaCppModule['getLlama']>>;

export async function openLlamaCpp(): Promise<{ mod: LlamaCppModule; llama: Llama } | { skip: string }> {
  try {
    const mod = await import('node-llama-cpp');
    // Prebuilt CPU binaries only: never build from source or download anything.
    const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: mod.LlamaLogLevel.error, progressLogs: false });
    return { mod, llama };
  } catch (e) {
    const msg = `node-llama-cpp is unavailable here (${(e as Error).message.split('\n')[0]})`;
    if (inCi()) throw new Error(`${msg}; CI installs the pinned dev dependency and must be able to run it.`);
    process.stderr.write(`# SKIP: ${msg}\n`);
    return { skip: msg };
  }
}

/** Greedy continuation of `ids` in llama.cpp: F32 KV cache, no flash attention (F32-exact). */
export async function llamaCppGreedy(llama: Llama, file: string, prompts: number[][], n: number): Promise<number[][]> {
  const model = await llama.loadModel({ modelPath: file });
  try {
    const longest = Math.max(...prompts.map((p) => p.length)) + n;
    const ctx = await model.createContext({
      contextSize: Math.max(256, longest), flashAttention: false, threads: 2, sequences: 1,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
    });
    const out: number[][] = [];
    try {
      const seq = ctx.getSequence();
      for (const ids of prompts) {
        await seq.clearHistory();
        const got: number[] = [];
        for await (const t of seq.evaluate(ids as NodeLlamaCpp.Token[], { temperature: 0 })) {
          got.push(t);
          if (got.length >= n) break;
        }
        out.push(got);
      }
    } finally {
      await ctx.dispose();
    }
    return out;
  } finally {
    await model.dispose();
  }
}

/**
 * llama.cpp's own margin at the position after `prefix`: ln(p1 / p2) of its two most likely next
 * tokens at temperature 1 (= the difference of their logits). A parting between engines is a tie
 * only where this is small.
 */
export async function llamaCppTopGap(llama: Llama, file: string, prefix: number[]): Promise<number> {
  const model = await llama.loadModel({ modelPath: file });
  try {
    const ctx = await model.createContext({
      contextSize: Math.max(256, prefix.length + 8), flashAttention: false, threads: 2, sequences: 1,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
    });
    try {
      const seq = ctx.getSequence();
      for await (const out of seq.evaluateWithMetadata(prefix as NodeLlamaCpp.Token[], { probabilities: true }, { temperature: 1, topK: 0, topP: 1, minP: 0 })) {
        const p = [...out.probabilities.values()].sort((a, b) => b - a);
        return Math.log(p[0]! / p[1]!);
      }
      throw new Error('llama.cpp produced no token');
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}
