// Constrained decoding: which tokens may come next so that the output stays a prefix of a JSON
// value matching a schema. The mask at a state is the set of tokens whose whole text the automaton
// accepts from it, plus the end-of-sequence tokens once the value may end. It is computed by one
// walk over the vocabulary sorted by text, where tokens that share a prefix share the automaton's
// steps over it, and cached by state (inside an unbounded string, every position is one state).
// Applying a mask sets the logits of the other tokens to -Infinity after bias and penalties and
// before the warpers, for the draft and the target alike, so speculative decoding stays exact.

import { advanceText, canFinish, initialState, type JsonState, mustFinish, plainRun, stateKey, stepState, stringRun } from './json-automaton.js';
import type { SchemaNode } from './json-schema.js';

export interface ConstraintVocabulary {
  /** Each token's text as it reads inside a sequence; '' for tokens never allowed (special, partial UTF-8). */
  readonly texts: readonly string[];
  readonly eosIds: readonly number[];
}

/** Bytes of cached masks a constraint may hold (each mask is vocabSize bits); with KEPT_FORMATS constraints per model, at most 64 MiB in all. */
const CACHE_BYTES = 8 << 20;

/** Free text before a triggered constraint starts: the last characters, where the trigger may begin. */
export interface FreeText {
  readonly tail: string;
}

/** Where a constrained generation stands: free text (before a trigger) or the automaton's state. */
export type ConstraintState = JsonState | FreeText;

const isFree = (s: ConstraintState): s is FreeText => !Array.isArray(s);

export class JsonConstraint {
  readonly vocabSize: number;
  private readonly root: SchemaNode | readonly SchemaNode[];
  /** Text that starts the constraint (a tool call's opening tag); null: constrained from the first token. */
  private readonly trigger: string | null;
  private readonly texts: readonly string[];
  private readonly eosIds: readonly number[];
  private readonly order: Int32Array; // [allowed-able tokens] ids sorted by text
  private readonly lcp: Int32Array; // [same] common prefix length with the previous text in order
  private readonly plain: Int32Array; // [vocabSize] leading plain string characters of each text
  private readonly words: number; // mask length in 32-bit words
  private readonly cache = new Map<string, Uint32Array>();
  private readonly maxCached: number;
  private readonly walk: JsonState[]; // [longest text + 1] states along the current prefix
  /** Masks computed (cache misses) and served, for the cost figures. */
  computed = 0;
  served = 0;

  constructor(root: SchemaNode | readonly SchemaNode[], vocab: ConstraintVocabulary, trigger: string | null = null) {
    this.root = root;
    this.trigger = trigger;
    this.texts = vocab.texts;
    this.vocabSize = vocab.texts.length;
    this.eosIds = vocab.eosIds;
    const ids = [...vocab.texts.keys()].filter((i) => vocab.texts[i]!.length > 0 && !vocab.eosIds.includes(i));
    ids.sort((a, b) => (vocab.texts[a]! < vocab.texts[b]! ? -1 : vocab.texts[a]! > vocab.texts[b]! ? 1 : a - b));
    this.order = Int32Array.from(ids);
    this.lcp = new Int32Array(ids.length);
    let longest = 0;
    for (let k = 0; k < ids.length; k++) {
      const t = vocab.texts[ids[k]!]!;
      longest = Math.max(longest, t.length);
      if (k === 0) continue;
      const p = vocab.texts[ids[k - 1]!]!;
      let l = 0;
      while (l < p.length && l < t.length && p.charCodeAt(l) === t.charCodeAt(l)) l++;
      this.lcp[k] = l;
    }
    this.plain = Int32Array.from(vocab.texts, plainRun);
    this.words = (this.vocabSize + 31) >>> 5;
    this.maxCached = Math.max(16, Math.floor(CACHE_BYTES / (this.words * 4)));
    this.walk = new Array<JsonState>(longest + 1);
  }

  initial(): ConstraintState {
    return this.trigger === null ? initialState(this.root) : { tail: '' };
  }

  /** The state after `id` (an end-of-sequence token leaves it as it is: the generation ends there). */
  advance(state: ConstraintState, id: number): ConstraintState {
    if (this.eosIds.includes(id)) return state;
    const text = this.texts[id] ?? '';
    if (!isFree(state)) return advanceText(state, text);
    const seen = state.tail + text;
    const at = seen.indexOf(this.trigger!);
    if (at < 0) return { tail: seen.slice(Math.max(0, seen.length - (this.trigger!.length - 1))) };
    return advanceText(initialState(this.root), seen.slice(at + this.trigger!.length));
  }

  /** Whether the output so far may end here (free text, or a complete value). */
  complete(state: ConstraintState): boolean {
    return isFree(state) || canFinish(state);
  }

  /** Allowed tokens at an automaton state as a bitset over the vocabulary. */
  mask(state: JsonState): Uint32Array {
    this.served++;
    const key = stateKey(state);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const m = this.compute(state);
    if (this.cache.size >= this.maxCached) this.cache.clear();
    this.cache.set(key, m);
    return m;
  }

  /** logits[offset + i] = -Infinity for every token the state does not allow (free text allows all). */
  apply(logits: Float32Array, offset: number, state: ConstraintState): void {
    if (isFree(state)) return;
    const m = this.mask(state);
    const V = this.vocabSize;
    for (let w = 0; w < this.words; w++) {
      const bits = m[w]!;
      if (bits === 0xffffffff) continue;
      const end = Math.min(V, (w + 1) << 5);
      for (let i = w << 5; i < end; i++) if ((bits & (1 << (i & 31))) === 0) logits[offset + i] = -Infinity;
    }
  }

  private compute(state: JsonState): Uint32Array {
    this.computed++;
    const m = new Uint32Array(this.words);
    const set = (id: number) => (m[id >>> 5]! |= 1 << (id & 31));
    const run = stringRun(state);
    if (run) {
      // Inside a string: a token of plain characters fits or not by its length alone; only the
      // tokens with a quote, a backslash or a control character step through the automaton.
      let any = false;
      for (let k = 0; k < this.order.length; k++) {
        const id = this.order[k]!;
        const t = this.texts[id]!;
        const p = this.plain[id]!;
        if (p > run.room) continue;
        if (p === t.length || advanceText(run.after(p), t.slice(p)).length > 0) {
          set(id);
          any = true;
        }
      }
      if (!any) for (const id of this.eosIds) set(id);
    } else if (!mustFinish(state)) {
      const walk = this.walk;
      walk[0] = state;
      let depth = 0; // walk[0..depth] hold the states along the previous text's prefix
      let dead = Infinity; // a prefix of this length of the previous text leads nowhere
      let any = false;
      for (let k = 0; k < this.order.length; k++) {
        const lcp = this.lcp[k]!;
        if (lcp >= dead) continue; // shares the dead prefix (texts are sorted, so it is contiguous)
        dead = Infinity;
        const id = this.order[k]!;
        const t = this.texts[id]!;
        if (lcp < depth) depth = lcp;
        while (depth < t.length) {
          const next = stepState(walk[depth]!, t[depth]!);
          if (next.length === 0) {
            dead = depth + 1;
            break;
          }
          walk[++depth] = next;
        }
        if (depth === t.length) {
          set(id);
          any = true;
        }
      }
      // No token leads on (a vocabulary without the characters the schema needs): end rather than stall.
      if (!any) for (const id of this.eosIds) set(id);
    }
    if (canFinish(state)) for (const id of this.eosIds) set(id);
    return m;
  }
}

/** A constraint over one generation: the state after the tokens committed so far. */
export interface ConstraintRun {
  readonly constraint: JsonConstraint;
  state: ConstraintState;
}
