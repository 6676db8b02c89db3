// pdlm-5.8m with a chat template that takes tools (Hermes/Qwen call syntax,
// test/fixtures/hermes-tools.jinja, written for these tests): a temporary folder that links the
// real weights and tokenizer and carries its own tokenizer_config.json.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './shared.js';
import { tmpDir } from './hfdir.js';

export function toolsModelDir(pdlmDir: string): string {
  const dir = tmpDir('quantspec-tools-');
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) fs.symlinkSync(path.join(pdlmDir, f), path.join(dir, f));
  const config = JSON.parse(fs.readFileSync(path.join(pdlmDir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  config['chat_template'] = fs.readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'hermes-tools.jinja'), 'utf8');
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}
