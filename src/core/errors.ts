// Named errors. Every failure a user can cause has its own class whose message says what is wrong
// and what to do about it; callers (CLI, server) print `message` and never a stack trace.

export class QuantspecError extends Error {
  /** Stable machine-readable code, e.g. for the server's error `type`/`code` fields. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A model path that does not exist or lacks a required file. */
export class ModelNotFoundError extends QuantspecError {
  constructor(message: string) {
    super('model_not_found', message);
  }
}

/** A model file whose bytes do not parse (truncated, bad header, offsets past the end). */
export class ModelFormatError extends QuantspecError {
  constructor(message: string) {
    super('model_format', message);
  }
}

/** A config.json / header that parses but describes something we cannot run. */
export class ModelConfigError extends QuantspecError {
  constructor(message: string) {
    super('model_config', message);
  }
}

/** `model_type` / `architectures` not in the supported list. */
export class UnsupportedArchitectureError extends QuantspecError {
  constructor(message: string) {
    super('unsupported_architecture', message);
  }
}

/** A tensor stored in a dtype the loader does not handle. */
export class UnsupportedDtypeError extends QuantspecError {
  constructor(message: string) {
    super('unsupported_dtype', message);
  }
}

/** A tensor whose shape does not match what the config implies, or a kernel called with wrong sizes. */
export class ShapeMismatchError extends QuantspecError {
  constructor(message: string) {
    super('shape_mismatch', message);
  }
}

/** Tokenizer files missing or malformed. */
export class TokenizerError extends QuantspecError {
  constructor(message: string) {
    super('tokenizer', message);
  }
}

/** A prompt (plus requested tokens) that does not fit the context window. */
export class ContextOverflowError extends QuantspecError {
  readonly promptTokens: number;
  readonly contextLength: number;
  constructor(message: string, promptTokens: number, contextLength: number) {
    super('context_length_exceeded', message);
    this.promptTokens = promptTokens;
    this.contextLength = contextLength;
  }
}

/** A request or option with an invalid value (sampling parameters, flags, settings). */
export class InvalidArgumentError extends QuantspecError {
  /** The offending parameter's name as the caller spelled it. */
  readonly param: string | undefined;
  constructor(message: string, param?: string) {
    super('invalid_argument', message);
    this.param = param;
  }
}

/** Misuse of the KV cache contract (e.g. truncating below what is already quantized). */
export class KvCacheError extends QuantspecError {
  constructor(message: string) {
    super('kv_cache', message);
  }
}

/** A compute backend that was asked for by name but cannot run here. */
export class BackendUnavailableError extends QuantspecError {
  constructor(message: string) {
    super('backend_unavailable', message);
  }
}

/** Generation stopped because the caller aborted it. */
export class CancelledError extends QuantspecError {
  constructor(message = 'generation was cancelled') {
    super('cancelled', message);
  }
}
