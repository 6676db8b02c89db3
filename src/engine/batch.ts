// Continuous batching: the sessions of one model that want a step at the same turn of the event
// loop share one forward pass, so each weight matrix is read once for all of them. Prefill chunks
// and single steps run between batches (each is its own turn).
//
// Policy for QuantSpec: a sequence that is alone at its turn runs its decoder's step (speculative
// rounds with its own γ); when two or more are waiting, each takes a plain target step in the
// batch. On a model whose steps are bound by weight reads a batch of B already amortizes those
// reads over B tokens, which is what a round buys one sequence; rounds resume as soon as a
// sequence decodes alone. Output is exact either way (a plain step is the target's own token).

import { computeLogits, createScratch, forwardBatch, type ForwardScratch, type ModelRuntime } from '../model/forward.js';
import type { WeightSet } from '../model/weights.js';
import type { DecodeState, StepResult } from '../speculative/decoder.js';
import type { SessionParts } from './session.js';

interface Pending {
  readonly parts: SessionParts;
  readonly state: DecodeState;
  readonly maxNew: number;
  resolve(r: StepResult | PromiseLike<StepResult>): void;
  reject(e: unknown): void;
}

export class StepBatcher {
  readonly maxSequences: number;
  private readonly rt: ModelRuntime;
  private readonly target: WeightSet;
  private readonly scratch: ForwardScratch; // [maxSequences] rows
  private pending: Pending[] = [];
  private scheduled = false;
  /** Steps run in batches of two or more, and batches, since creation (for the load test and metrics). */
  batchedSteps = 0;
  batches = 0;

  constructor(rt: ModelRuntime, target: WeightSet, maxSequences: number, contextLength: number) {
    this.rt = rt;
    this.target = target;
    this.maxSequences = maxSequences;
    this.scratch = createScratch(rt.config, maxSequences, maxSequences, contextLength);
  }

  /** The session's next step, possibly in a batch with others waiting at this turn. */
  step(parts: SessionParts, state: DecodeState, maxNew: number): Promise<StepResult> {
    return new Promise((resolve, reject) => {
      this.pending.push({ parts, state, maxNew, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending.splice(0, this.maxSequences);
    if (this.pending.length > 0) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    if (batch.length === 1) {
      const p = batch[0]!;
      try {
        p.resolve(p.parts.decoder.step(p.state, p.maxNew));
      } catch (e) {
        p.reject(e);
      }
      return;
    }
    try {
      forwardBatch(this.rt, this.target, batch.map((p) => ({
        cache: p.parts.cache, kind: p.parts.targetView, tokens: p.state.tokens, first: p.state.tokens.length - 1, nTokens: 1,
      })), this.scratch);
      const V = this.rt.config.vocabSize;
      const logits = computeLogits(this.rt, this.target, this.scratch, 0, batch.length);
      this.batches++;
      this.batchedSteps += batch.length;
      batch.forEach((p, i) => p.resolve(p.parts.decoder.stepFromLogits(p.state, logits.subarray(i * V, (i + 1) * V))));
    } catch (e) {
      for (const p of batch) p.reject(e);
    }
  }
}
