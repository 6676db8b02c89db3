// A one-line progress bar on stderr, shown only when stderr is a terminal.

export class ProgressBar {
  private readonly label: string;
  private readonly format: (n: number) => string;
  private readonly enabled: boolean;
  private lastDraw = 0;
  private drawn = false;

  constructor(label: string, format: (n: number) => string = String, enabled = process.stderr.isTTY === true) {
    this.label = label;
    this.format = format;
    this.enabled = enabled;
  }

  update(done: number, total: number): void {
    if (!this.enabled || total <= 0) return;
    const now = performance.now();
    if (now - this.lastDraw < 50 && done < total) return;
    this.lastDraw = now;
    const width = 30;
    const frac = Math.min(1, done / total);
    const filled = Math.round(frac * width);
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    process.stderr.write(`\r${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${this.format(done)}/${this.format(total)}`);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) process.stderr.write('\r\x1b[2K');
    this.drawn = false;
  }
}

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}
