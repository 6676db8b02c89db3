// Server counters, rendered as Prometheus text.

import type { GenerationResult } from '../engine/session.js';

export class Metrics {
  private readonly requests = new Map<string, number>(); // "route status" -> count
  promptTokens = 0;
  completionTokens = 0;
  drafted = 0;
  accepted = 0;
  queueDepth = 0;
  activeSlots = 0;
  private prefillTokens = 0;
  private prefillMs = 0;
  private decodeTokens = 0;
  private decodeMs = 0;

  countRequest(route: string, status: number): void {
    const key = `${route} ${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  recordGeneration(r: GenerationResult): void {
    this.promptTokens += r.promptIds.length;
    this.completionTokens += r.generatedIds.length;
    this.prefillTokens += r.timings.promptTokens - r.timings.cachedTokens;
    this.prefillMs += r.timings.prefillMs;
    this.decodeTokens += r.generatedIds.length;
    this.decodeMs += r.timings.prefillMs + r.timings.decodeMs;
    this.drafted += r.stats?.drafted ?? 0;
    this.accepted += r.stats?.accepted ?? 0;
  }

  render(): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, values: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of values) lines.push(`${name}${labels} ${Number.isFinite(v) ? v : 0}`);
    };
    metric('quantspec_requests_total', 'counter', 'HTTP requests by route and status.',
      [...this.requests].map(([k, v]) => {
        const [route, status] = k.split(' ');
        return [`{route="${route}",status="${status}"}`, v];
      }));
    metric('quantspec_prompt_tokens_total', 'counter', 'Prompt tokens processed.', [['', this.promptTokens]]);
    metric('quantspec_completion_tokens_total', 'counter', 'Tokens generated.', [['', this.completionTokens]]);
    metric('quantspec_queue_depth', 'gauge', 'Requests waiting for a slot.', [['', this.queueDepth]]);
    metric('quantspec_active_slots', 'gauge', 'Slots generating now.', [['', this.activeSlots]]);
    metric('quantspec_prefill_tokens_per_second', 'gauge', 'Prompt tokens per second, over all requests.',
      [['', this.prefillMs > 0 ? (this.prefillTokens / this.prefillMs) * 1000 : 0]]);
    metric('quantspec_decode_tokens_per_second', 'gauge', 'Generated tokens per second, over all requests.',
      [['', this.decodeMs > 0 ? (this.decodeTokens / this.decodeMs) * 1000 : 0]]);
    metric('quantspec_draft_tokens_total', 'counter', 'Speculative draft tokens proposed.', [['', this.drafted]]);
    metric('quantspec_draft_tokens_accepted_total', 'counter', 'Speculative draft tokens accepted by the target.', [['', this.accepted]]);
    metric('quantspec_draft_acceptance_rate', 'gauge', 'Accepted / drafted tokens since start.',
      [['', this.drafted > 0 ? this.accepted / this.drafted : 0]]);
    return `${lines.join('\n')}\n`;
  }
}
