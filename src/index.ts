// Public API of quantspec (Node). The browser build's entry is browser.ts.

export { loadModel, Model, defaultModelPath, type LoadOptions } from './engine/model.js';
export * from './common.js';
