// Chat prompts through the model's own Jinja chat template (@huggingface/jinja).

import { Template } from '@huggingface/jinja';
import { InvalidArgumentError, TokenizerError } from '../core/errors.js';
import type { Tokenizer } from './tokenizer.js';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  /** An assistant turn's tool calls (arguments as a parsed JSON value, as chat templates expect). */
  readonly toolCalls?: readonly ChatToolCall[];
  /** A `tool` turn: the id of the call it answers. */
  readonly toolCallId?: string;
}

export interface ChatToolCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: unknown;
}

/** A function offered to the model, as chat templates take it. */
export interface ChatTool {
  readonly name: string;
  readonly description?: string;
  readonly parameters?: unknown;
}

/** Whether the model's chat template renders a tool list (it reads a `tools` variable). */
export function templateTakesTools(tokenizer: Tokenizer): boolean {
  return tokenizer.chatTemplate !== null && /\btools\b/.test(tokenizer.chatTemplate);
}

/** Messages in the shape Hugging Face chat templates read (snake_case, OpenAI-style tool calls). */
function templateMessages(messages: readonly ChatMessage[]): Record<string, unknown>[] {
  return messages.map((m) => {
    const out: Record<string, unknown> = { role: m.role, content: m.content };
    if (m.toolCalls && m.toolCalls.length > 0) {
      out['tool_calls'] = m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
    }
    if (m.toolCallId !== undefined) out['tool_call_id'] = m.toolCallId;
    return out;
  });
}

const templateCache = new Map<string, Template>();

export function renderChat(tokenizer: Tokenizer, messages: readonly ChatMessage[], addGenerationPrompt = true, tools: readonly ChatTool[] = []): string {
  const source = tokenizer.chatTemplate;
  if (!source) {
    throw new TokenizerError('this model has no chat template (tokenizer_config.json "chat_template"); use a plain prompt instead of chat.');
  }
  if (messages.length === 0) throw new InvalidArgumentError('a chat needs at least one message.', 'messages');
  const usesTools = tools.length > 0 || messages.some((m) => (m.toolCalls?.length ?? 0) > 0 || m.role === 'tool');
  if (usesTools && !templateTakesTools(tokenizer)) {
    throw new InvalidArgumentError('this model\'s chat template does not take tools (it never reads a "tools" variable), so it cannot be offered functions or shown tool calls; leave out tools and tool messages.', 'tools');
  }
  let template = templateCache.get(source);
  if (!template) {
    try {
      template = new Template(source);
    } catch (e) {
      throw new TokenizerError(`the model's chat template does not parse: ${(e as Error).message}.`);
    }
    templateCache.set(source, template);
  }
  try {
    return template.render({
      messages: templateMessages(messages),
      ...(tools.length > 0 ? { tools: tools.map((t) => ({ type: 'function', function: { name: t.name, description: t.description ?? '', parameters: t.parameters ?? { type: 'object', properties: {} } } })) } : {}),
      add_generation_prompt: addGenerationPrompt,
      ...tokenizer.templateTokens,
    });
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw e;
    throw new InvalidArgumentError(`the chat template could not render these messages: ${(e as Error).message}`, 'messages');
  }
}

/**
 * Token ids of a chat prompt. Like llama.cpp, BOS is added unless the rendered template already
 * starts with the BOS text (templates such as Llama 3's write it themselves).
 */
export function encodeChat(tokenizer: Tokenizer, messages: readonly ChatMessage[], tools: readonly ChatTool[] = []): number[] {
  const text = renderChat(tokenizer, messages, true, tools);
  const bosText = tokenizer.templateTokens['bos_token'];
  const templateHasBos = bosText !== undefined && bosText.length > 0 && text.startsWith(bosText);
  return tokenizer.encode(text, { addSpecial: tokenizer.addsBos && !templateHasBos });
}
