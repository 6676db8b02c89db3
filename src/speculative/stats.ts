// Speculative decoding statistics, reported as the paper does (acceptance = accepted / (γ·rounds)).

export interface SpecStats {
  rounds: number;
  drafted: number;
  accepted: number;
  /** Tokens produced by plain (non-speculative) steps, e.g. after an adaptive fallback. */
  plainSteps: number;
  /** acceptedAt[i] = rounds in which draft position i was accepted. */
  readonly acceptedAt: number[];
  /** draftedAt[i] = rounds that drafted position i. */
  readonly draftedAt: number[];
  /** lengths[n] = rounds that accepted exactly n draft tokens. */
  readonly lengths: number[];
  draftMs: number;
  verifyMs: number;
  /** γ of the latest round (0 when the last step was plain). */
  gamma: number;
}

export function emptyStats(): SpecStats {
  return { rounds: 0, drafted: 0, accepted: 0, plainSteps: 0, acceptedAt: [], draftedAt: [], lengths: [], draftMs: 0, verifyMs: 0, gamma: 0 };
}

export function recordRound(s: SpecStats, gamma: number, accepted: number, draftMs: number, verifyMs: number): void {
  s.rounds++;
  s.drafted += gamma;
  s.accepted += accepted;
  s.draftMs += draftMs;
  s.verifyMs += verifyMs;
  s.gamma = gamma;
  for (let i = 0; i < gamma; i++) {
    s.draftedAt[i] = (s.draftedAt[i] ?? 0) + 1;
    if (i < accepted) s.acceptedAt[i] = (s.acceptedAt[i] ?? 0) + 1;
    else s.acceptedAt[i] ??= 0;
  }
  for (let n = s.lengths.length; n <= gamma; n++) s.lengths[n] = 0;
  s.lengths[accepted]!++;
}

/** The paper's acceptance rate: accepted draft tokens / drafted tokens (γ·rounds for fixed γ). */
export function acceptanceRate(s: SpecStats): number {
  return s.drafted > 0 ? s.accepted / s.drafted : 0;
}

/** Mean tokens emitted per round (accepted + the target's own token). */
export function meanAcceptedLength(s: SpecStats): number {
  return s.rounds > 0 ? (s.accepted + s.rounds) / s.rounds : 0;
}

/** Acceptance rate of each draft position. */
export function perPosition(s: SpecStats): number[] {
  return s.draftedAt.map((d, i) => (d > 0 ? (s.acceptedAt[i] ?? 0) / d : 0));
}
