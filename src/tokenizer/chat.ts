// Chat prompts through the model's own Jinja chat template (@huggingface/jinja).

import { Template } from '@huggingface/jinja';
import { InvalidArgumentError, TokenizerError } from '../core/errors.js';
import type { Tokenizer } from './tokenizer.js';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

const templateCache = new Map<string, Template>();

export function renderChat(tokenizer: Tokenizer, messages: readonly ChatMessage[], addGenerationPrompt = true): string {
  const source = tokenizer.chatTemplate;
  if (!source) {
    throw new TokenizerError('this model has no chat template (tokenizer_config.json "chat_template"); use a plain prompt instead of chat.');
  }
  if (messages.length === 0) throw new InvalidArgumentError('a chat needs at least one message.', 'messages');
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
      messages,
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
export function encodeChat(tokenizer: Tokenizer, messages: readonly ChatMessage[]): number[] {
  const text = renderChat(tokenizer, messages, true);
  const bosText = tokenizer.templateTokens['bos_token'];
  const templateHasBos = bosText !== undefined && bosText.length > 0 && text.startsWith(bosText);
  return tokenizer.encode(text, { addSpecial: tokenizer.addsBos && !templateHasBos });
}
