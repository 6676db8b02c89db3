// Adaptive draft length: pick γ from measured draft and verify costs and the measured acceptance,
// and fall back to plain decoding when speculation would not pay (DESIGN 2.5).
//
// With per-token acceptance α (i.i.d. model), a round of γ drafts emits E(γ) = (1 - α^(γ+1)) / (1 - α)
// tokens and costs γ·t_draft + t_verify(γ + 1); plain decoding emits one token per t_plain.

const EMA = 0.2;
const WINDOW = 15;
/** Plain steps measured before the controller compares speculation with plain decoding. */
const MIN_PLAIN_SAMPLES = 3;
/**
 * While even full acceptance would not pay at the measured costs, each probe that confirms it
 * doubles the gap to the next, up to this many times probeEvery: the costs move only slowly as the
 * context grows, and at 32K a probe round costs about one plain step more than the tokens it
 * gives, so fixed spacing lost several percent against plain decoding.
 */
const MAX_HOPELESS_BACKOFF = 16;
/**
 * Where only the measured acceptance holds speculation back, each probe that leaves plain decoding
 * ahead doubles the gap to the next, up to this many times probeEvery. A probe there is a full
 * round that loses against plain decoding (pdlm at 4K: a round of 4 at 77% acceptance cost about
 * one plain step more than its tokens), and one every probeEvery steps kept `--spec auto` 5-9%
 * behind plain INT8 decoding.
 */
const MAX_PROBE_BACKOFF = 4;
/**
 * ... but only while the best round at the estimated acceptance is this far behind plain decoding:
 * nearer than that (pdlm at 1K, where either may win by a few percent) a choice of plain decoding
 * can be timing noise, and the probes stay every probeEvery steps.
 */
const BACKOFF_BELOW = 0.9;
/**
 * Rounds whose timings are not kept (their acceptance is): the first round runs the draft's code
 * and reads its weights for the first time. Seen on pdlm at 1K: its draft steps took 0.9-1.3 ms
 * against 0.40-0.45 ms in the rounds after, and with that one sample as the draft's cost the
 * controller decoded plainly for 18 steps before it probed again.
 */
const WARMUP_ROUNDS = 1;
/**
 * γ of the rounds that only warm the draft up or re-measure costs (the warm-up rounds, and the
 * probes while speculation cannot pay even at full acceptance): the cheapest round. Their tokens
 * are whatever it accepts; where speculation does not pay, a round of 4 lost about two plain
 * steps against plain decoding (pdlm at 4K), a round of 1 a third of one.
 */
const CHEAP_GAMMA = 1;

/** Median of the last WINDOW samples: timings on a shared machine have outliers (GC, other load). */
class RecentMedian {
  private readonly samples = new Float64Array(WINDOW);
  private readonly sorted = new Float64Array(WINDOW); // the samples, then +Infinity, sorted in place
  private n = 0;
  private next = 0;

  add(x: number): void {
    this.samples[this.next] = x;
    this.next = (this.next + 1) % WINDOW;
    this.n = Math.min(this.n + 1, WINDOW);
  }

  get count(): number {
    return this.n;
  }

  /** The median; of an even count the lower middle (timing outliers are slow ones). */
  get value(): number {
    if (this.n === 0) return NaN;
    this.sorted.set(this.samples);
    this.sorted.fill(Infinity, this.n);
    this.sorted.sort();
    return this.sorted[(this.n - 1) >> 1]!;
  }
}

export class GammaController {
  readonly maxGamma: number;
  /** γ while measurements are gathered, and for reproducible (seeded) sampling. */
  readonly initialGamma: number;
  /** γ of the warm-up round and of the probes while speculation cannot pay (CHEAP_GAMMA). */
  private readonly cheapGamma: number;
  private readonly draftStep = new RecentMedian(); // ms per draft step
  private readonly verify: RecentMedian[]; // [b] ms per verify pass of b tokens (b = 1 is a plain step)
  // Medians as of the current choose(): each window is sorted once per step.
  private draftMs = NaN;
  private readonly verifyMs: Float64Array; // [b], NaN where not measured
  private acceptedSum = 0; // decayed sums for the acceptance estimate
  private trialSum = 0;
  private plainRun = 0;
  private specRun = 0;
  private hopelessBackoff = 1; // probe spacing (in probeEvery) while speculation cannot pay
  private probeBackoff = 1; // probe spacing (in probeEvery) while only acceptance holds it back
  private lastGamma: number;
  private rounds = 0;
  /** Plain steps between probing rounds while speculation is off, and rounds between plain probes while it is on. */
  readonly probeEvery = 16;

  constructor(maxGamma: number, initial: number) {
    this.maxGamma = maxGamma;
    this.initialGamma = Math.min(initial, maxGamma);
    this.cheapGamma = Math.min(CHEAP_GAMMA, maxGamma);
    this.lastGamma = this.initialGamma;
    this.verify = Array.from({ length: maxGamma + 2 }, () => new RecentMedian());
    this.verifyMs = new Float64Array(maxGamma + 2).fill(NaN);
  }

  observeDraftStep(ms: number): void {
    if (this.rounds >= WARMUP_ROUNDS) this.draftStep.add(ms);
  }

  /** A pass of `batch` tokens: a verify (batch > 1; not kept in the warm-up rounds) or a plain step. */
  observeVerify(batch: number, ms: number): void {
    if (batch > 1 && this.rounds < WARMUP_ROUNDS) return;
    this.verify[batch]!.add(ms);
  }

  /** One round: `accepted` of `gamma` drafts; a rejection (accepted < γ) is one failed trial. */
  observeRound(gamma: number, accepted: number): void {
    this.rounds++;
    const decay = 1 - EMA;
    this.acceptedSum = this.acceptedSum * decay + accepted;
    this.trialSum = this.trialSum * decay + accepted + (accepted < gamma ? 1 : 0);
  }

  /** Estimated per-token acceptance probability. */
  get alpha(): number {
    return this.trialSum > 0 ? Math.min(this.acceptedSum / this.trialSum, 0.999) : 0.8;
  }

  /**
   * Verify cost of b tokens: measured, else interpolated linearly from the measured batch sizes;
   * beyond the largest measured one, extended along the line through the two largest (a plain
   * step is one of them once measured), else 10% more per token. At long contexts a verify's
   * attention grows nearly in proportion to its tokens (pdlm at 16K: 5 tokens cost 2.2 plain
   * steps, 0.3 more per token), so a fixed 10% per token of the largest measured pass made
   * longer rounds look cheaper than they were, and `--spec auto` chose them where they lost.
   */
  private verifyCost(b: number): number {
    const v = this.verifyMs;
    if (!Number.isNaN(v[b]!)) return v[b]!;
    // the nearest measured size below i (-1 if none)
    const measuredBelow = (i: number): number => {
      for (let j = i - 1; j >= 1; j--) if (!Number.isNaN(v[j]!)) return j;
      return -1;
    };
    const lo = measuredBelow(b);
    let hi = -1;
    for (let i = b + 1; i < v.length; i++) if (!Number.isNaN(v[i]!)) { hi = i; break; }
    if (lo > 0 && hi > 0) return v[lo]! + ((v[hi]! - v[lo]!) * (b - lo)) / (hi - lo);
    if (lo > 0) {
      const lo2 = measuredBelow(lo);
      const slope = lo2 > 0 ? (v[lo]! - v[lo2]!) / (lo - lo2) : NaN;
      return slope > 0 ? v[lo]! + slope * (b - lo) : v[lo]! * (1 + 0.1 * (b - lo));
    }
    return hi > 0 ? v[hi]! * (1 + 0.1 * (b - hi)) : NaN;
  }

  /** Milliseconds of a round with γ drafts: γ draft steps and a verify pass of γ + 1 tokens. */
  private roundMs(gamma: number): number {
    return gamma * this.draftMs + this.verifyCost(gamma + 1);
  }

  /** Expected tokens per millisecond of a round with γ drafts. */
  private rate(gamma: number): number {
    const a = this.alpha;
    return (1 - a ** (gamma + 1)) / (1 - a) / this.roundMs(gamma);
  }

  /** Tokens per millisecond of the best round if every draft were accepted. */
  private bestFullAcceptanceRate(): number {
    let best = 0;
    for (let g = 1; g <= this.maxGamma; g++) best = Math.max(best, (g + 1) / this.roundMs(g));
    return best;
  }

  /** The draft length for the next step; 0 means a plain decoding step. */
  choose(): number {
    if (this.rounds < WARMUP_ROUNDS) return this.cheapGamma;
    this.draftMs = this.draftStep.value;
    if (Number.isNaN(this.draftMs)) return this.initialGamma; // still measuring the draft
    for (let b = 1; b < this.verify.length; b++) this.verifyMs[b] = this.verify[b]!.value;
    // Measure plain decoding itself now and then: estimates from other batch sizes drift. The first
    // few plain steps are taken early, so one slow step cannot decide alone.
    if (this.verify[1]!.count < MIN_PLAIN_SAMPLES || ++this.specRun >= 2 * this.probeEvery) {
      this.specRun = 0;
      return 0;
    }
    let best = 0;
    let bestRate = 1 / this.verifyCost(1); // plain decoding
    const plainRate = bestRate;
    let bestSpecRate = 0;
    for (let g = 1; g <= this.maxGamma; g++) {
      const r = this.rate(g);
      bestSpecRate = Math.max(bestSpecRate, r);
      if (r > bestRate) {
        best = g;
        bestRate = r;
      }
    }
    if (best > 0) {
      this.plainRun = 0;
      this.hopelessBackoff = 1;
      this.probeBackoff = 1;
      this.lastGamma = best;
      return best;
    }
    // Speculation does not pay now; still probe now and then so the acceptance estimate stays fresh,
    // less often while the probes keep confirming it (MAX_PROBE_BACKOFF). When even full acceptance
    // would not pay at the measured costs, a probe only re-measures the costs (they move as the
    // context grows), so those probes back off further (MAX_HOPELESS_BACKOFF).
    const hopeless = this.bestFullAcceptanceRate() <= bestRate;
    if (!hopeless) this.hopelessBackoff = 1;
    if (bestSpecRate >= BACKOFF_BELOW * plainRate) this.probeBackoff = 1;
    const backoff = hopeless ? this.hopelessBackoff : this.probeBackoff;
    if (++this.plainRun >= backoff * this.probeEvery) {
      this.plainRun = 0;
      if (!hopeless) {
        this.probeBackoff = Math.min(2 * this.probeBackoff, MAX_PROBE_BACKOFF);
        return this.lastGamma;
      }
      this.hopelessBackoff = Math.min(2 * this.hopelessBackoff, MAX_HOPELESS_BACKOFF);
      return this.cheapGamma; // it only re-measures the costs
    }
    return 0;
  }
}
