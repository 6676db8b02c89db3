// The demo page: load a model from URLs or picked files, then stream a completion with tokens/s
// and acceptance shown live. Query parameters fill the form (model, tokenizer, prompt, max,
// temperature, spec) and `run=1` loads and generates at once; body[data-state] says where it is
// (loading, ready, generating, done, error), for people and for the end-to-end test.

import { loadModelFiles } from '../../dist/browser/quantspec.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
for (const [key, id] of [['model', 'model-url'], ['tokenizer', 'tokenizer-url'], ['prompt', 'prompt'], ['max', 'max-tokens'], ['temperature', 'temperature'], ['spec', 'spec']]) {
  if (params.has(key)) $(id).value = params.get(key);
}

let model = null;
const setState = (s) => { document.body.dataset.state = s; };

function fail(e) {
  setState('error');
  $('load-status').textContent = `${e.name ?? 'Error'}: ${e.message}`;
  console.error(e);
}

$('adapter').textContent = navigator.gpu ? 'WebGPU: available' : 'WebGPU: not available in this browser (enable it, or use a browser that has it)';

/** The model's files from the picked files, else from the URLs. */
function modelFiles() {
  const picked = [...$('files').files];
  if (picked.length > 0) {
    const named = (name) => picked.find((f) => f.name === name);
    const gguf = picked.find((f) => f.name.endsWith('.gguf'));
    if (gguf) return { gguf };
    const weights = picked.filter((f) => f.name.endsWith('.safetensors'));
    if (named('config.json') && named('tokenizer.json') && weights.length > 0) {
      return {
        config: named('config.json'), tokenizer: named('tokenizer.json'), tokenizerConfig: named('tokenizer_config.json'),
        generationConfig: named('generation_config.json'), weights,
      };
    }
    const tokenizer = picked.find((f) => /^tok.*\.bin$/.test(f.name));
    const bin = picked.find((f) => f.name.endsWith('.bin') && f !== tokenizer);
    if (bin && tokenizer) return { llama2c: bin, tokenizer };
    throw new Error('pick a .gguf file; a Hugging Face model\'s config.json, tokenizer.json (and tokenizer_config.json) and .safetensors; or a llama2.c .bin with its tokenizer (tok*.bin)');
  }
  const url = $('model-url').value.trim();
  if (!url) throw new Error('give a model URL or pick files');
  if (url.endsWith('.gguf')) return { gguf: url };
  return { llama2c: url, tokenizer: $('tokenizer-url').value.trim() };
}

async function load() {
  setState('loading');
  $('generate').disabled = true;
  $('load-status').textContent = 'downloading…';
  const t0 = performance.now();
  model = await loadModelFiles(modelFiles(), {
    contextLength: 512,
    onFetchProgress: (done, total) => {
      $('load-progress').value = total > 0 ? done / total : 0;
      $('load-status').textContent = `downloading ${(done / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
    },
  });
  $('load-progress').value = 1;
  $('adapter').textContent = model.backendName;
  $('load-status').textContent = `loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${model.config.nLayers} layers, dim ${model.config.dim}, vocab ${model.config.vocabSize}`;
  $('generate').disabled = false;
  setState('ready');
}

async function generate() {
  setState('generating');
  $('generate').disabled = true;
  const prompt = $('prompt').value;
  const out = $('output');
  out.textContent = '';
  const shown = document.createElement('span');
  shown.className = 'prompt';
  shown.textContent = prompt;
  out.append(shown);
  const spec = $('spec').value;
  const stream = model.generate(prompt, {
    maxTokens: Number($('max-tokens').value), temperature: Number($('temperature').value),
    spec, kv: 'int8', ...(spec === 'quantspec' ? { gamma: 4 } : {}),
  });
  const t0 = performance.now();
  let count = 0;
  let steps = 0;
  for (;;) {
    const { value, done } = await stream.next();
    if (done) {
      const s = value.stats;
      $('tps').textContent = value.timings.decodeTokensPerS.toFixed(1);
      $('acceptance').textContent = s ? `${(s.acceptanceRate * 100).toFixed(0)}%` : '–';
      out.dataset.text = value.text;
      break;
    }
    out.append(value.text);
    count += value.tokens.length;
    steps++;
    $('count').textContent = String(count);
    $('tps').textContent = (count / ((performance.now() - t0) / 1000)).toFixed(1);
    // Live: each chunk is one round (accepted drafts + the target's token) of γ = 4 drafts; the
    // exact figure from the statistics replaces it at the end.
    if (spec === 'quantspec') $('acceptance').textContent = `${Math.round((100 * (count - steps)) / (4 * steps))}%`;
  }
  $('generate').disabled = false;
  setState('done');
}

$('load').addEventListener('click', () => load().catch(fail));
$('generate').addEventListener('click', () => generate().catch(fail));
if (params.get('run') === '1') load().then(generate).catch(fail);
