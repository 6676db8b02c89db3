// What the command line and the server use from the layers below, in one place: they reach the
// model, sampling, tokenizer, kernel and decoding modules only through the engine (DESIGN 3).

export type { DecodingOptions, KvMode, SpecMode } from '../speculative/modes.js';
export type { BackendName } from '../kernels/select.js';
export type { PrefillActivations } from '../model/forward.js';
export { resolveSampling } from '../sampling/params.js';
export type { ChatMessage } from '../tokenizer/chat.js';
export { describeConfig } from '../model/config.js';
export { convertHfToGguf, writeModelGguf, type GgufDtype } from '../model/gguf-writer.js';
export { SYNTHETIC_MODELS, SYNTHETIC_PREFIX, syntheticGgufInput } from '../model/synthetic.js';
export type { ResponseFormat } from '../sampling/json-schema.js';
export type { ChatTool, ChatToolCall } from '../tokenizer/chat.js';
export { splitToolCall, toolSyntaxOf, type ParsedToolCall, type ToolChoice, type ToolSyntax } from './tools.js';
