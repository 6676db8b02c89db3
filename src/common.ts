// The part of the public API that the Node entry (index.ts) and the browser build (browser.ts) share.

export type { Model, SessionOptions } from './engine/model.js';
export {
  Session, collect,
  type PromptInput, type GenerateOptions, type GenerationChunk, type GenerationResult, type Timings, type FinishReason,
} from './engine/session.js';
export type { ChatMessage } from './tokenizer/chat.js';
export type { Tokenizer } from './tokenizer/tokenizer.js';
export type { ModelConfig } from './model/config.js';
export type { SamplingParams } from './sampling/params.js';
export { DEFAULT_SAMPLING } from './sampling/params.js';
export * from './core/errors.js';
