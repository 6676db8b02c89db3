// RoPE angle tables, including rope_scaling 'linear' and 'llama3'. Angles follow HF's F32 arithmetic:
// inv_freq in F32, angle = F32(inv_freq · pos), then cos/sin of that F32 angle.

import type { ModelConfig, RopeScaling } from './config.js';

export interface RopeTables {
  readonly cos: Float32Array; // [contextLength, headDim / 2]
  readonly sin: Float32Array; // [contextLength, headDim / 2]
  readonly contextLength: number;
}

/** inv_freq[j] = theta^(-2j/headDim), then adjusted by the scaling rule. */
export function inverseFrequencies(headDim: number, theta: number, scaling: RopeScaling): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let j = 0; j < half; j++) inv[j] = 1 / Math.pow(theta, Math.fround((2 * j) / headDim));
  if (scaling.type === 'linear') {
    for (let j = 0; j < half; j++) inv[j] = inv[j]! / scaling.factor;
  } else if (scaling.type === 'factors') {
    for (let j = 0; j < half; j++) inv[j] = inv[j]! / scaling.factors[j]!;
  } else if (scaling.type === 'llama3') {
    // Llama 3.1: long wavelengths are divided by `factor`, short ones kept, the band between blended.
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions: old } = scaling;
    const lowWavelen = old / lowFreqFactor;
    const highWavelen = old / highFreqFactor;
    for (let j = 0; j < half; j++) {
      const f = inv[j]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) inv[j] = f / factor;
      else if (wavelen >= highWavelen) {
        const smooth = (old / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        inv[j] = (1 - smooth) * (f / factor) + smooth * f;
      }
    }
  }
  return inv;
}

export function buildRopeTables(config: ModelConfig, contextLength: number): RopeTables {
  const half = config.headDim / 2;
  const inv = inverseFrequencies(config.headDim, config.ropeTheta, config.ropeScaling);
  const cos = new Float32Array(contextLength * half);
  const sin = new Float32Array(contextLength * half);
  for (let p = 0; p < contextLength; p++) {
    for (let j = 0; j < half; j++) {
      const angle = Math.fround(inv[j]! * p);
      cos[p * half + j] = Math.cos(angle);
      sin[p * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin, contextLength };
}
