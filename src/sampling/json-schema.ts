// A JSON Schema, compiled to the nodes the JSON automaton (json-automaton.ts) walks. The subset is
// what OpenAI's strict structured outputs and zod/pydantic schemas use: type (one or a list),
// properties / required / additionalProperties, items / minItems / maxItems, minLength /
// maxLength, enum, const, anyOf / oneOf, $ref into $defs / definitions (recursion included),
// nullable types. A keyword that would constrain values beyond this (pattern, format, numeric
// bounds tighter than the safe-integer range, ...) is refused with a message naming it, because
// ignoring it would produce output the schema rejects.

import { InvalidArgumentError } from '../core/errors.js';

export type SchemaNode =
  | { readonly id: number; readonly kind: 'object'; readonly props: readonly Property[]; readonly additional: SchemaNode | null }
  | { readonly id: number; readonly kind: 'array'; readonly items: SchemaNode; readonly min: number; readonly max: number }
  | { readonly id: number; readonly kind: 'string'; readonly min: number; readonly max: number }
  | { readonly id: number; readonly kind: 'number'; readonly integer: boolean; readonly nonNegative: boolean }
  /** One of these JSON texts exactly (enum, const, true/false, null). */
  | { readonly id: number; readonly kind: 'literal'; readonly texts: readonly string[] }
  | { readonly id: number; readonly kind: 'anyOf'; options: SchemaNode[] };

export interface Property {
  readonly key: string;
  /** The key as it appears in the output after its opening quote: JSON-escaped, with the closing quote. */
  readonly keyText: string;
  readonly node: SchemaNode;
  readonly required: boolean;
}

/** Keywords that only annotate (or that the automaton already implies); anything else is refused. */
const ANNOTATIONS = new Set(['title', 'description', '$schema', '$id', '$comment', 'default', 'examples', 'strict', 'name', 'deprecated', 'readOnly', 'writeOnly']);
const HANDLED = new Set(['type', 'properties', 'required', 'additionalProperties', 'items', 'minItems', 'maxItems', 'minLength', 'maxLength',
  'enum', 'const', 'anyOf', 'oneOf', '$ref', '$defs', 'definitions', 'nullable', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum']);

/** Bounds at least this loose are implied by the automaton's digit limit (zod writes ±(2^53 - 1) for `.int()`). */
const LOOSE_BOUND = 1e15;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Node ids are unique across every compiled schema, so nodes of several schemas can share a state key. */
let lastId = 0;

class Compiler {  private readonly refs = new Map<string, SchemaNode>();
  private readonly root: Json;
  private any: SchemaNode | null = null;

  constructor(root: Json) {
    this.root = root;
  }

  private fail(path: string, what: string): never {
    throw new InvalidArgumentError(`the JSON schema at ${path} ${what}`, 'responseFormat');
  }

  /** Any JSON value (a schema of `{}` or `true`, additionalProperties: true, json_object's values). */
  anyValue(): SchemaNode {
    if (this.any) return this.any;
    const node: SchemaNode = { id: ++lastId, kind: 'anyOf', options: [] };
    this.any = node;
    node.options.push(
      { id: ++lastId, kind: 'object', props: [], additional: node },
      { id: ++lastId, kind: 'array', items: node, min: 0, max: Infinity },
      { id: ++lastId, kind: 'string', min: 0, max: Infinity },
      { id: ++lastId, kind: 'number', integer: false, nonNegative: false },
      { id: ++lastId, kind: 'literal', texts: ['true', 'false', 'null'] },
    );
    return node;
  }

  compile(schema: unknown, path: string): SchemaNode {
    if (schema === true || (isObject(schema) && Object.keys(schema).every((k) => ANNOTATIONS.has(k)))) return this.anyValue();
    if (!isObject(schema)) this.fail(path, `must be an object (or true), got ${JSON.stringify(schema)}.`);
    for (const k of Object.keys(schema)) {
      if (!ANNOTATIONS.has(k) && !HANDLED.has(k)) this.fail(path, `uses "${k}", which this server cannot enforce; remove it or describe the constraint in the prompt.`);
    }
    if (typeof schema['$ref'] === 'string') return this.ref(schema['$ref'], path);
    if ('const' in schema) return this.literal([schema['const']], path);
    if (Array.isArray(schema['enum'])) {
      if (schema['enum'].length === 0) this.fail(path, 'has an empty "enum".');
      return this.literal(schema['enum'], path);
    }
    const alternatives = schema['anyOf'] ?? schema['oneOf'];
    if (alternatives !== undefined) {
      if (!Array.isArray(alternatives) || alternatives.length === 0) this.fail(path, 'has an "anyOf"/"oneOf" that is not a non-empty list.');
      const node: SchemaNode = { id: ++lastId, kind: 'anyOf', options: [] };
      alternatives.forEach((alt, i) => node.options.push(this.compile(alt, `${path}.anyOf[${i}]`)));
      return node;
    }
    const type = schema['type'];
    let types: string[];
    if (typeof type === 'string') types = [type];
    else if (Array.isArray(type) && type.length > 0 && type.every((t) => typeof t === 'string')) types = type as string[];
    else if (type === undefined) types = inferTypes(schema);
    else this.fail(path, `has a "type" that is neither a string nor a list of strings.`);
    if (schema['nullable'] === true && !types.includes('null')) types = [...types, 'null'];
    if (types.length === 0) return this.anyValue();
    const nodes = types.map((t) => this.typed(t, schema, path));
    return nodes.length === 1 ? nodes[0]! : { id: ++lastId, kind: 'anyOf', options: nodes };
  }

  private typed(type: string, s: Json, path: string): SchemaNode {
    const count = (key: string, dflt: number): number => {
      const v = s[key];
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) this.fail(path, `has "${key}" that is not a non-negative integer.`);
      return v;
    };
    switch (type) {
      case 'object': {
        const properties = s['properties'] ?? {};
        if (!isObject(properties)) this.fail(path, 'has "properties" that is not an object.');
        const required = s['required'] ?? [];
        if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) this.fail(path, 'has "required" that is not a list of strings.');
        for (const r of required as string[]) if (!(r in properties)) this.fail(path, `requires "${r}", which is not in its "properties".`);
        const props: Property[] = Object.entries(properties).map(([key, sub]) => ({
          key, keyText: JSON.stringify(key).slice(1), node: this.compile(sub, `${path}.properties.${key}`), required: (required as string[]).includes(key),
        }));
        const ap = s['additionalProperties'];
        // Declared properties are written in their declared order; free keys only where none are declared.
        let additional: SchemaNode | null = null;
        if (props.length === 0 && ap !== false) additional = ap === undefined || ap === true ? this.anyValue() : this.compile(ap, `${path}.additionalProperties`);
        return { id: ++lastId, kind: 'object', props, additional };
      }
      case 'array': {
        const min = count('minItems', 0);
        const max = count('maxItems', Infinity);
        if (max < min) this.fail(path, 'has maxItems < minItems.');
        const items = s['items'] === undefined ? this.anyValue() : this.compile(s['items'], `${path}.items`);
        return { id: ++lastId, kind: 'array', items, min, max };
      }
      case 'string': {
        const min = count('minLength', 0);
        const max = count('maxLength', Infinity);
        if (max < min) this.fail(path, 'has maxLength < minLength.');
        return { id: ++lastId, kind: 'string', min, max };
      }
      case 'number':
      case 'integer': {
        let nonNegative = false;
        for (const key of ['minimum', 'exclusiveMinimum'] as const) {
          const v = s[key];
          if (v === undefined) continue;
          if (typeof v !== 'number') this.fail(path, `has "${key}" that is not a number.`);
          if (v === 0 && key === 'minimum') nonNegative = true;
          else if (v > -LOOSE_BOUND) this.fail(path, `has "${key}": ${v}; only 0 (no minus sign) or bounds beyond ±1e15 can be enforced.`);
        }
        for (const key of ['maximum', 'exclusiveMaximum'] as const) {
          const v = s[key];
          if (v === undefined) continue;
          if (typeof v !== 'number' || v < LOOSE_BOUND) this.fail(path, `has "${key}": ${String(v)}; only bounds beyond ±1e15 can be enforced.`);
        }
        return { id: ++lastId, kind: 'number', integer: type === 'integer', nonNegative };
      }
      case 'boolean':
        return { id: ++lastId, kind: 'literal', texts: ['true', 'false'] };
      case 'null':
        return { id: ++lastId, kind: 'literal', texts: ['null'] };
      default:
        return this.fail(path, `has an unknown type "${type}".`);
    }
  }

  private literal(values: readonly unknown[], path: string): SchemaNode {
    const texts = values.map((v) => {
      const t = JSON.stringify(v);
      if (t === undefined) this.fail(path, `has a value that is not JSON.`);
      return t;
    });
    return { id: ++lastId, kind: 'literal', texts: [...new Set(texts)] };
  }

  private ref(ref: string, path: string): SchemaNode {
    const existing = this.refs.get(ref);
    if (existing) return existing;
    const m = /^#(?:\/(\$defs|definitions)\/([^/]+))?$/.exec(ref);
    if (!m) this.fail(path, `has "$ref": "${ref}"; only "#", "#/$defs/NAME" and "#/definitions/NAME" are supported.`);
    const target = m[1] === undefined ? this.root : (this.root[m[1]] as Json | undefined)?.[decodeURIComponent(m[2]!).replace(/~1/g, '/').replace(/~0/g, '~')];
    if (target === undefined) this.fail(path, `has "$ref": "${ref}", which names nothing in the schema.`);
    // A placeholder first, so that a recursive definition refers to itself.
    const node: SchemaNode = { id: ++lastId, kind: 'anyOf', options: [] };
    this.refs.set(ref, node);
    node.options.push(this.compile(target, ref));
    return node;
  }
}

/** Types a schema without "type" implies by its keywords (none: any value). */
function inferTypes(s: Json): string[] {
  if ('properties' in s || 'required' in s || 'additionalProperties' in s) return ['object'];
  if ('items' in s || 'minItems' in s || 'maxItems' in s) return ['array'];
  if ('minLength' in s || 'maxLength' in s) return ['string'];
  return [];
}

/** A function the model may call: its name and the JSON schema of its arguments. */
export interface ToolSpec {
  readonly name: string;
  readonly parameters: unknown;
}

/** What a generation's output must be: any JSON object, or a value matching a schema. */
export type ResponseFormat = { readonly type: 'text' } | { readonly type: 'json_object' } | { readonly type: 'json_schema'; readonly schema: unknown };

/**
 * A tool call in a template's syntax: `open`, a JSON object {"name": one of the tools, "arguments":
 * that tool's schema}, `close`. With `trigger`, the model writes free text until it writes `open`
 * itself (tool_choice auto); without, the output starts with the call (required, or one named tool).
 */
export interface ToolCallFormat {
  readonly tools: readonly ToolSpec[];
  readonly open: string;
  readonly close: string;
  readonly trigger: boolean;
}

/** The parts a tool call is read as: [open tag] (unless triggered), the call object, the close tag. */
export function compileToolCall(format: ToolCallFormat): SchemaNode[] {
  if (format.tools.length === 0) throw new InvalidArgumentError('a tool call needs at least one tool.', 'tools');
  const calls: SchemaNode = { id: ++lastId, kind: 'anyOf', options: [] };
  for (const tool of format.tools) {
    const params = tool.parameters === undefined ? { type: 'object', properties: {} } : tool.parameters;
    if (!isObject(params)) throw new InvalidArgumentError(`the parameters of tool "${tool.name}" must be a JSON schema object.`, 'tools');
    const c = new Compiler(params);
    const args = c.compile(params, `tools.${tool.name}.parameters`);
    calls.options.push({
      id: ++lastId, kind: 'object', additional: null,
      props: [
        { key: 'name', keyText: 'name"', node: { id: ++lastId, kind: 'literal', texts: [JSON.stringify(tool.name)] }, required: true },
        { key: 'arguments', keyText: 'arguments"', node: args, required: true },
      ],
    });
  }
  const fixed = (text: string): SchemaNode => ({ id: ++lastId, kind: 'literal', texts: [text] });
  return format.trigger ? [calls, fixed(format.close)] : [fixed(format.open), calls, fixed(format.close)];
}

/** The root node for a response format (null for plain text). */
export function compileResponseFormat(format: ResponseFormat): SchemaNode | null {
  if (format.type === 'text') return null;
  if (format.type === 'json_object') {
    const c = new Compiler({});
    return c.compile({ type: 'object' }, 'response_format');
  }
  if (format.type === 'json_schema') {
    const schema = format.schema;
    if (!isObject(schema) && schema !== true) throw new InvalidArgumentError('the JSON schema must be an object.', 'responseFormat');
    return new Compiler(isObject(schema) ? schema : {}).compile(schema, '#');
  }
  throw new InvalidArgumentError(`responseFormat type "${(format as { type: string }).type}" is not one of text, json_object, json_schema.`, 'responseFormat');
}
