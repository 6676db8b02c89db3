// Tool calling through the model's chat template. The template renders the tools and the history;
// the model writes a call in the template's syntax, which the engine constrains (the call object's
// name is one of the tools and its arguments match that tool's schema) and parses back.
// Supported syntax: `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, as the Qwen 2.5/3 and
// Hermes templates write it (the most common one in open models). A template that takes tools in
// another syntax gets a named error rather than calls the server cannot read.

import { InvalidArgumentError } from '../core/errors.js';
import type { ToolCallFormat, ToolSpec } from '../sampling/json-schema.js';
import { templateTakesTools, type ChatTool } from '../tokenizer/chat.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export interface ToolSyntax {
  readonly open: string;
  readonly close: string;
}

const HERMES: ToolSyntax = { open: '<tool_call>', close: '</tool_call>' };

/** 'none': the model may not call (answers in text); 'auto': it chooses; 'required': it must call one; or the one it must call. */
export type ToolChoice = 'none' | 'auto' | 'required' | { readonly name: string };

/** The template's call syntax; null when it takes no tools. Throws when it takes tools in a syntax not parsed here. */
export function toolSyntaxOf(tokenizer: Tokenizer): ToolSyntax | null {
  if (!templateTakesTools(tokenizer)) return null;
  if (tokenizer.chatTemplate!.includes(HERMES.open)) return HERMES;
  throw new InvalidArgumentError('this model\'s chat template takes tools, but writes calls in a syntax this engine does not parse ' +
    '(it reads <tool_call>{"name": ..., "arguments": ...}</tool_call>, as Qwen 2.5/3 and Hermes templates write them).', 'tools');
}

/** The constraint format for a request's tools and choice (null: the output is unconstrained text). */
export function toolCallFormat(tokenizer: Tokenizer, tools: readonly ChatTool[], choice: ToolChoice): ToolCallFormat | null {
  if (tools.length === 0 || choice === 'none') return null;
  const syntax = toolSyntaxOf(tokenizer);
  if (syntax === null) {
    throw new InvalidArgumentError('this model\'s chat template does not take tools (it never reads a "tools" variable); leave out tools.', 'tools');
  }
  let offered: readonly ChatTool[] = tools;
  if (typeof choice === 'object') {
    offered = tools.filter((t) => t.name === choice.name);
    if (offered.length === 0) throw new InvalidArgumentError(`toolChoice names "${choice.name}", which is not one of the tools.`, 'toolChoice');
  }
  const specs: ToolSpec[] = offered.map((t) => ({ name: t.name, parameters: t.parameters }));
  return { tools: specs, open: syntax.open, close: syntax.close, trigger: choice === 'auto' };
}

export interface ParsedToolCall {
  readonly name: string;
  readonly arguments: unknown;
}

/**
 * Split an output into the text before the first call and the call (null when there is none or it
 * does not parse, as when the generation stopped at its token budget mid-call).
 */
export function splitToolCall(text: string, syntax: ToolSyntax): { content: string; call: ParsedToolCall | null } {
  const at = text.indexOf(syntax.open);
  if (at < 0) return { content: text, call: null };
  const end = text.indexOf(syntax.close, at + syntax.open.length);
  if (end < 0) return { content: text, call: null };
  try {
    const v = JSON.parse(text.slice(at + syntax.open.length, end)) as { name?: unknown; arguments?: unknown };
    if (typeof v.name !== 'string' || typeof v.arguments !== 'object' || v.arguments === null) return { content: text, call: null };
    return { content: text.slice(0, at).trimEnd(), call: { name: v.name, arguments: v.arguments } };
  } catch {
    return { content: text, call: null };
  }
}
