// A character-level pushdown automaton for JSON that matches a compiled schema (json-schema.ts).
// A state is a set of stacks (the automaton is nondeterministic: anyOf, optional properties and
// numbers that end only when the next character is not a digit). Stacks are immutable linked lists
// of immutable frames, so a state is never mutated: rolling back a rejected draft is keeping the
// older state. Bounded by construction: at most MAX_WS whitespace characters in a row, at most
// MAX_DIGITS digits in a number's integer or fraction part, so a schema with bounded strings and
// arrays always terminates.

import type { Property, SchemaNode } from './json-schema.js';

/** Whitespace characters allowed in a row between tokens (newlines and indentation included). */
export const MAX_WS = 8;
/** Digits allowed in a number's integer part and in its fraction (15 keep integers exact in a double). */
export const MAX_DIGITS = 15;
const MAX_EXP_DIGITS = 3;

type Frame =
  /** Before a value: whitespace so far. */
  | { readonly t: 'value'; readonly node: SchemaNode; readonly ws: number }
  /** Inside a literal: the candidate texts still matching, chars matched. */
  | { readonly t: 'lit'; readonly texts: readonly string[]; readonly pos: number }
  /** Inside a string (after its opening quote). esc: 0 none, 1 after a backslash, 2-5 hex digits of \u still to come. */
  | { readonly t: 'str'; readonly node: Extract<SchemaNode, { kind: 'string' }> | null; readonly len: number; readonly esc: number }
  /** Inside a declared key (after its opening quote): the properties it may still be, chars matched. */
  | { readonly t: 'key'; readonly cands: readonly number[]; readonly pos: number }
  | { readonly t: 'num'; readonly node: Extract<SchemaNode, { kind: 'number' }>; readonly phase: number; readonly digits: number }
  /**
   * An object. phase: 'open' after `{`, 'key' while a free key is read, 'colon' before `:`,
   * 'value' while a value is read, 'after' after a value, 'comma' after `,`. next: the index of the
   * first declared property not yet written.
   */
  | { readonly t: 'obj'; readonly node: Extract<SchemaNode, { kind: 'object' }>; readonly phase: string; readonly next: number; readonly cur: number; readonly ws: number }
  | { readonly t: 'arr'; readonly node: Extract<SchemaNode, { kind: 'array' }>; readonly phase: string; readonly n: number; readonly ws: number }
  /** Parts written one after another (a tool call: its opening tag, the JSON value, its closing tag); `i` is the part being read. */
  | { readonly t: 'seq'; readonly parts: readonly SchemaNode[]; readonly i: number }
  /** The bottom of every stack: waiting for the value, or done (then nothing more may follow). */
  | { readonly t: 'root'; readonly done: boolean };

export interface Stack {
  readonly f: Frame;
  readonly up: Stack | null;
  /** Memoized identity of the whole stack (see stackKey). */
  key?: string;
}

/** A state: the stacks the characters so far may have led to (empty: no way on). */
export type JsonState = readonly Stack[];

const on = (f: Frame, up: Stack | null): Stack => ({ f, up });
const swap = (s: Stack, f: Frame): Stack => ({ f, up: s.up });

const isWs = (c: string) => c === ' ' || c === '\n' || c === '\t' || c === '\r';
const isDigit = (c: string) => c >= '0' && c <= '9';
const isHex = (c: string) => isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

/** The state before a value of `root`, or before `parts` in order (each a value; literals for fixed text). */
export function initialState(root: SchemaNode | readonly SchemaNode[]): JsonState {
  const bottom = on({ t: 'root', done: false }, null);
  if (!Array.isArray(root)) return [on({ t: 'value', node: root as SchemaNode, ws: 0 }, bottom)];
  const parts = root as readonly SchemaNode[];
  return [on({ t: 'value', node: parts[0]!, ws: 0 }, on({ t: 'seq', parts, i: 0 }, bottom))];
}

/** Advance a state by one character. */
export function stepState(state: JsonState, c: string): JsonState {
  if (state.length === 1) return step(state[0]!, c);
  const out: Stack[] = [];
  const seen = new Set<string>();
  for (const s of state) {
    for (const n of step(s, c)) {
      const k = stackKey(n);
      if (!seen.has(k)) {
        seen.add(k);
        out.push(n);
      }
    }
  }
  return out;
}

/** Advance by a whole string (a token's text); empty when some character has no way on. */
export function advanceText(state: JsonState, text: string): JsonState {
  let s = state;
  for (let i = 0; i < text.length && s.length > 0; i++) s = stepState(s, text[i]!);
  return s;
}

/** Whether the text so far is a complete value (the generation may end here). */
export function canFinish(state: JsonState): boolean {
  return state.some((s) => finishes(s));
}

/** Whether nothing but the end may follow (the value is complete and nothing can extend it). */
export function mustFinish(state: JsonState): boolean {
  return state.length > 0 && state.every((s) => s.f.t === 'root' && s.f.done);
}

function finishes(s: Stack): boolean {
  const f = s.f;
  if (f.t === 'root') return f.done;
  if (f.t === 'num' && numberComplete(f.phase)) return done(s).some(finishes);
  if (f.t === 'lit' && f.texts.some((t) => t.length === f.pos)) return done(s).some(finishes);
  return false;
}

/** A stable string naming a stack, for deduplication and the mask cache. */
export function stackKey(s: Stack): string {
  if (s.key !== undefined) return s.key;
  const f = s.f;
  let k: string;
  switch (f.t) {
    case 'value': k = `v${f.node.id},${f.ws}`; break;
    case 'lit': k = `l${f.texts.join('\u0000')}\u0001${f.pos}`; break;
    case 'str': k = `s${f.node ? f.node.id : -1},${f.len},${f.esc}`; break;
    case 'key': k = `k${f.cands.join(',')};${f.pos}`; break;
    case 'num': k = `n${f.node.id},${f.phase},${f.digits}`; break;
    case 'obj': k = `o${f.node.id},${f.phase},${f.next},${f.cur},${f.ws}`; break;
    case 'arr': k = `a${f.node.id},${f.phase},${f.n},${f.ws}`; break;
    case 'seq': k = `q${f.parts.map((p) => p.id).join(',')};${f.i}`; break;
    case 'root': k = f.done ? 'R' : 'r'; break;
  }
  s.key = s.up ? `${k}|${stackKey(s.up)}` : k;
  return s.key;
}

export function stateKey(state: JsonState): string {
  return state.length === 1 ? stackKey(state[0]!) : state.map(stackKey).sort().join('#');
}

/** The frame below a finished value, told that its value is done. */
function done(s: Stack): Stack[] {
  const up = s.up!;
  const f = up.f;
  switch (f.t) {
    case 'root': return [swap(up, { t: 'root', done: true })];
    case 'obj':
      if (f.phase === 'key') return [swap(up, { ...f, phase: 'colon', ws: 0 })];
      return [swap(up, { ...f, phase: 'after', ws: 0 })];
    case 'arr': return [swap(up, { ...f, phase: 'after', n: f.n + 1, ws: 0 })];
    case 'seq':
      if (f.i + 1 < f.parts.length) return [on({ t: 'value', node: f.parts[f.i + 1]!, ws: 0 }, swap(up, { ...f, i: f.i + 1 }))];
      return done(up);
    default: throw new Error(`a value finished inside a ${f.t} frame`);
  }
}

function step(s: Stack, c: string): Stack[] {
  const f = s.f;
  switch (f.t) {
    case 'value': return stepValue(s, f, c);
    case 'lit': {
      const texts = f.texts.filter((t) => t.length > f.pos && t[f.pos] === c);
      const out: Stack[] = [];
      if (texts.length > 0) {
        const pos = f.pos + 1;
        // A literal that can no longer be extended is done at once.
        if (texts.length === 1 && texts[0]!.length === pos) out.push(...done(s));
        else out.push(swap(s, { t: 'lit', texts, pos }));
      }
      if (f.texts.some((t) => t.length === f.pos)) for (const d of done(s)) out.push(...step(d, c));
      return out;
    }
    case 'str': return stepString(s, f, c);
    case 'key': {
      const props = keyProps(s);
      const cands = f.cands.filter((j) => props[j]!.keyText[f.pos] === c);
      if (cands.length === 0) return [];
      const pos = f.pos + 1;
      const whole = cands.find((j) => props[j]!.keyText.length === pos);
      if (whole !== undefined) {
        // The closing quote matched: the key is this property (keys are distinct, so it is the only one).
        const obj = s.up!;
        const of = obj.f as Extract<Frame, { t: 'obj' }>;
        return [swap(obj, { ...of, phase: 'colon', cur: whole, next: whole + 1, ws: 0 })];
      }
      return [swap(s, { t: 'key', cands, pos })];
    }
    case 'num': {
      const next = numberStep(f, c);
      if (next !== null) return [swap(s, next)];
      if (!numberComplete(f.phase)) return [];
      return done(s).flatMap((d) => step(d, c));
    }
    case 'obj': return stepObject(s, f, c);
    case 'arr': return stepArray(s, f, c);
    case 'seq':
    case 'root': return [];
  }
}

function stepValue(s: Stack, f: Extract<Frame, { t: 'value' }>, c: string): Stack[] {
  if (!isWs(c)) return startValue(s, f, c);
  const out = f.ws < MAX_WS ? [swap(s, { ...f, ws: f.ws + 1 })] : [];
  // Fixed text that itself begins with whitespace (a tool call's closing tag after a newline).
  if (f.node.kind === 'literal' && f.node.texts.some((t) => t[0] === c)) out.push(...startValue(s, f, c));
  return out;
}

function startValue(s: Stack, f: Extract<Frame, { t: 'value' }>, c: string): Stack[] {
  const node = f.node;
  switch (node.kind) {
    case 'anyOf': return node.options.flatMap((o) => startValue(s, { t: 'value', node: o, ws: f.ws }, c));
    case 'literal': return step(swap(s, { t: 'lit', texts: node.texts, pos: 0 }), c);
    case 'string': return c === '"' ? [swap(s, { t: 'str', node, len: 0, esc: 0 })] : [];
    case 'number': return step(swap(s, { t: 'num', node, phase: 0, digits: 0 }), c);
    case 'object': return c === '{' ? [swap(s, { t: 'obj', node, phase: 'open', next: 0, cur: -1, ws: 0 })] : [];
    case 'array': return c === '[' ? [swap(s, { t: 'arr', node, phase: 'open', n: 0, ws: 0 })] : [];
  }
}

function stepString(s: Stack, f: Extract<Frame, { t: 'str' }>, c: string): Stack[] {
  const min = f.node ? f.node.min : 0;
  const max = f.node ? f.node.max : Infinity;
  // Unbounded strings do not count their length, so every position inside one is the same state.
  const counted = min > 0 || max < Infinity;
  const grow = (esc: number): Stack[] => (counted ? [swap(s, { ...f, len: f.len + 1, esc })] : esc === f.esc ? [s] : [swap(s, { ...f, esc })]);
  if (f.esc === 1) {
    if (c === 'u') return [swap(s, { ...f, esc: 5 })];
    return '"\\/bfnrt'.includes(c) ? grow(0) : [];
  }
  if (f.esc > 1) {
    if (!isHex(c)) return [];
    return f.esc === 2 ? grow(0) : [swap(s, { ...f, esc: f.esc - 1 })];
  }
  if (c === '"') return f.len >= min ? done(s) : [];
  if (c.charCodeAt(0) < 0x20) return [];
  if (f.len >= max) return [];
  if (c === '\\') return [swap(s, { ...f, esc: 1 })];
  return grow(0);
}

/** The declared properties of the object a key frame belongs to. */
function keyProps(s: Stack): readonly Property[] {
  return (s.up!.f as Extract<Frame, { t: 'obj' }>).node.props;
}

/** Properties that may be written next: from `next` up to and including the first required one. */
function candidates(props: readonly Property[], next: number): number[] {
  const out: number[] = [];
  for (let j = next; j < props.length; j++) {
    out.push(j);
    if (props[j]!.required) break;
  }
  return out;
}

function requiredLeft(props: readonly Property[], next: number): boolean {
  for (let j = next; j < props.length; j++) if (props[j]!.required) return true;
  return false;
}

function stepObject(s: Stack, f: Extract<Frame, { t: 'obj' }>, c: string): Stack[] {
  const node = f.node;
  const ws = (): Stack[] => (f.ws < MAX_WS ? [swap(s, { ...f, ws: f.ws + 1 })] : []);
  switch (f.phase) {
    case 'open':
    case 'comma': {
      if (isWs(c)) return ws();
      if (c === '}' && f.phase === 'open' && !requiredLeft(node.props, f.next)) return done(s);
      if (c !== '"') return [];
      if (node.additional) return [on({ t: 'str', node: null, len: 0, esc: 0 }, swap(s, { ...f, phase: 'key', ws: 0 }))];
      const cands = candidates(node.props, f.next);
      return cands.length > 0 ? [on({ t: 'key', cands, pos: 0 }, s)] : [];
    }
    case 'colon':
      if (isWs(c)) return ws();
      if (c !== ':') return [];
      return [on({ t: 'value', node: node.additional ?? node.props[f.cur]!.node, ws: 0 }, swap(s, { ...f, phase: 'value', ws: 0 }))];
    case 'after':
      if (isWs(c)) return ws();
      if (c === '}') return requiredLeft(node.props, f.next) ? [] : done(s);
      if (c === ',') return node.additional || f.next < node.props.length ? [swap(s, { ...f, phase: 'comma', ws: 0 })] : [];
      return [];
    default:
      return [];
  }
}

function stepArray(s: Stack, f: Extract<Frame, { t: 'arr' }>, c: string): Stack[] {
  const node = f.node;
  if (f.phase === 'open' || f.phase === 'after') {
    if (isWs(c)) return f.ws < MAX_WS ? [swap(s, { ...f, ws: f.ws + 1 })] : [];
    if (c === ']') return f.n >= node.min ? done(s) : [];
    if (f.phase === 'after') {
      return c === ',' && f.n < node.max ? [on({ t: 'value', node: node.items, ws: 0 }, swap(s, { ...f, phase: 'value', ws: 0 }))] : [];
    }
    if (node.max === 0) return [];
    return step(on({ t: 'value', node: node.items, ws: 0 }, swap(s, { ...f, phase: 'value', ws: 0 })), c);
  }
  return [];
}

// Number phases: 0 start, 1 after '-', 2 integer digits, 3 a leading 0, 4 after '.', 5 fraction
// digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits. 2, 3, 5 and 8 may end.
function numberComplete(phase: number): boolean {
  return phase === 2 || phase === 3 || phase === 5 || phase === 8;
}

function numberStep(f: Extract<Frame, { t: 'num' }>, c: string): Extract<Frame, { t: 'num' }> | null {
  const to = (phase: number, digits: number) => ({ ...f, phase, digits });
  const integer = f.node.integer;
  const firstDigit = () => (c === '0' ? to(3, 1) : c >= '1' && c <= '9' ? to(2, 1) : null);
  const afterInteger = () => (integer ? null : c === '.' ? to(4, 0) : c === 'e' || c === 'E' ? to(6, 0) : null);
  switch (f.phase) {
    case 0:
      if (c === '-') return f.node.nonNegative ? null : to(1, 0);
      return firstDigit();
    case 1:
      return firstDigit();
    case 2:
      if (isDigit(c)) return f.digits < MAX_DIGITS ? to(2, f.digits + 1) : null;
      return afterInteger();
    case 3:
      return afterInteger();
    case 4:
      return isDigit(c) ? to(5, 1) : null;
    case 5:
      if (isDigit(c)) return f.digits < MAX_DIGITS ? to(5, f.digits + 1) : null;
      return c === 'e' || c === 'E' ? to(6, 0) : null;
    case 6:
      if (c === '+' || c === '-') return to(7, 0);
      return isDigit(c) ? to(8, 1) : null;
    case 7:
      return isDigit(c) ? to(8, 1) : null;
    case 8:
      return isDigit(c) && f.digits < MAX_EXP_DIGITS ? to(8, f.digits + 1) : null;
    default:
      return null;
  }
}

/**
 * Inside a string with no escape pending (the state of most steps of a JSON output), a run of
 * plain characters (not `"`, `\` or a control character) only moves the length on. For such a
 * state this gives how many more characters fit and the state after `n` of them, so the mask can
 * judge most tokens without stepping character by character; null for any other state.
 */
export function stringRun(state: JsonState): { readonly room: number; after(n: number): JsonState } | null {
  if (state.length !== 1) return null;
  const s = state[0]!;
  const f = s.f;
  if (f.t !== 'str' || f.esc !== 0) return null;
  const min = f.node ? f.node.min : 0;
  const max = f.node ? f.node.max : Infinity;
  const counted = min > 0 || max < Infinity;
  return {
    room: max - f.len,
    after: (n) => (counted && n > 0 ? [swap(s, { ...f, len: f.len + n })] : state),
  };
}

/** Length of the run of plain string characters at the start of `text` (see stringRun). */
export function plainRun(text: string): number {
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22 || c === 0x5c || c < 0x20) break;
    i++;
  }
  return i;
}
