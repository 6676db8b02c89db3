// Public API of the browser build (dist/browser/quantspec.js, made by scripts/build-browser.mjs):
// load a model from URLs or picked files and stream tokens, on WebGPU. The Node entry is index.ts.

export { loadModelFiles, type BrowserLoadOptions, type FileInput, type ModelFiles } from './engine/browser.js';
export * from './common.js';
