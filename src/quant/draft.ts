// The draft's weights (DESIGN 2.4): the target's linear layers quantized to 4 bits at load time
// (round to nearest, group-wise), and its output head to 8 bits. Norms, biases and embeddings are
// shared with the target, so the extra memory is only the quantized copies.

import { InvalidArgumentError } from '../core/errors.js';
import type { LayerWeights, WeightSet } from './weight-set.js';
import type { DenseTensor } from '../core/tensor.js';
import type { WeightTensor } from './format.js';
import { weightBytes } from './format.js';
import { dequantQ8Row, quantizeQ4, quantizeQ8 } from './weights.js';

/** Roles the draft may quantize: the seven per-layer projections and the output head. */
export const DRAFT_ROLES = ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3', 'lm_head'] as const;
export type DraftRole = (typeof DRAFT_ROLES)[number];

export interface DraftOptions {
  /** Bits per draft weight; 4 is the only width the draft uses. */
  readonly bits: 4;
  /** Columns per quantization group (default 32). */
  readonly groupSize: number;
  /** Symmetric (Q4_0-like) or asymmetric with a minimum (Q4_1-like, the default). */
  readonly symmetric: boolean;
  /** Which matrices become 4-bit; the rest are shared with the target. 'lm_head' here makes the head 4-bit (headBits 4). */
  readonly roles: readonly DraftRole[];
  /**
   * The output head's bits: 8 (symmetric blocks of 32, the default: the head is a large share of
   * a draft step's bytes at real vocabularies, and 4 bits cost acceptance), 4 (as the projections)
   * or 0 (shared with the target). A head the target already holds quantized is shared.
   */
  readonly headBits: 0 | 4 | 8;
}

export const DEFAULT_DRAFT: DraftOptions = Object.freeze({
  bits: 4,
  groupSize: 32,
  symmetric: false,
  roles: ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as DraftRole[],
  headBits: 8,
});

/** The 8-bit head's columns per scale (Q8 blocks of 32). */
export const HEAD_Q8_GROUP = 32;

/** Parse a role list: "all", "mlp", "attn", "none", or comma-separated role names. */
export function parseDraftRoles(spec: string): DraftRole[] {
  switch (spec) {
    case 'all': return ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'];
    case 'all+head': return [...DRAFT_ROLES];
    case 'mlp': return ['w1', 'w2', 'w3'];
    case 'attn': return ['wq', 'wk', 'wv', 'wo'];
    case 'none': return [];
  }
  const roles = spec.split(',').map((s) => s.trim()).filter(Boolean);
  for (const r of roles) {
    if (!(DRAFT_ROLES as readonly string[]).includes(r)) {
      throw new InvalidArgumentError(
        `unknown draft layer "${r}"; use all, all+head, mlp, attn, none or a list of ${DRAFT_ROLES.join(', ')}.`,
        'draft.layers',
      );
    }
  }
  return roles as DraftRole[];
}

export interface DraftWeights {
  readonly weights: WeightSet;
  /** Bytes the draft adds on top of the target (its 4-bit matrices). */
  readonly extraBytes: number;
}

/** Build the draft WeightSet; `prepare` lets the backend repack the new matrices. */
export function buildDraftWeights(
  target: WeightSet, opts: DraftOptions, prepare: (w: WeightTensor) => WeightTensor = (w) => w,
  /** Sees each source matrix the draft quantizes, after it is done (load progress). */
  onMatrix: (w: WeightTensor) => WeightTensor = (w) => w,
  /** A faster route to prepare(quantizeQ4(w, ...)) with the same result (a backend's native quantizer), or null. */
  fast?: (w: DenseTensor, groupSize: number, symmetric: boolean) => WeightTensor | null,
  /** The same for prepare(quantizeQ8(w, groupSize)). */
  fast8?: (w: DenseTensor, groupSize: number) => WeightTensor | null,
): DraftWeights {
  if (opts.bits !== 4) throw new InvalidArgumentError(`draft.bits supports 4 only, got ${opts.bits}.`, 'draft.bits');
  let extra = 0;
  const roles = new Set(opts.roles);
  const headBits = roles.has('lm_head') ? 4 : opts.headBits;
  const quantize = (w: WeightTensor, bits: 4 | 8): WeightTensor => {
    if (w.dtype === 'q4' || (bits === 8 && w.dtype === 'q8')) return w; // already as small
    // 8-bit sources (GGUF Q8_0) are read back to F32 first, one matrix at a time
    const src = w.dtype === 'q8' ? q8ToF32(w) : w;
    const t = bits === 4
      ? fast?.(src, opts.groupSize, opts.symmetric) ?? prepare(quantizeQ4(src, opts.groupSize, opts.symmetric))
      : fast8?.(src, HEAD_Q8_GROUP) ?? prepare(quantizeQ8(src, HEAD_Q8_GROUP));
    onMatrix(w);
    extra += weightBytes(t);
    return t;
  };
  const q = (role: DraftRole, w: WeightTensor): WeightTensor => (roles.has(role) ? quantize(w, 4) : w);
  const layers: LayerWeights[] = target.layers.map((l) => ({
    ...l,
    wq: q('wq', l.wq), wk: q('wk', l.wk), wv: q('wv', l.wv), wo: q('wo', l.wo),
    w1: q('w1', l.w1), w2: q('w2', l.w2), w3: q('w3', l.w3),
  }));
  const lmHead = headBits === 0 ? target.lmHead : quantize(target.lmHead, headBits);
  return { weights: { tokEmbed: target.tokEmbed, layers, finalNorm: target.finalNorm, lmHead }, extraBytes: extra };
}

/** An 8-bit matrix as F32 (what its codes and scales mean). */
function q8ToF32(w: Extract<WeightTensor, { dtype: 'q8' }>): DenseTensor {
  const [rows, cols] = w.shape;
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) dequantQ8Row(data.subarray(r * cols, (r + 1) * cols), w, r);
  return { dtype: 'f32', shape: [rows, cols], data };
}
