// Public API of quantspec.

export { loadModel, Model, defaultModelPath, type LoadOptions, type SessionOptions } from './engine/model.js';
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
