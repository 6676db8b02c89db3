// Seeded pseudo-random numbers. All randomness in the engine comes from an Rng passed in by the
// caller (DESIGN rule 7): never Math.random.

export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number;
}

/**
 * xoshiro128** (Blackman & Vigna): small state, good statistics, fast with 32-bit integer ops.
 * Seeded through splitmix32 so that nearby seeds give unrelated streams.
 */
export class Xoshiro128 implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const split = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = split();
    this.s1 = split();
    this.s2 = split();
    this.s3 = split();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  next(): number {
    // 53 bits of randomness from two draws, as a double in [0, 1).
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** A seed for callers that did not pass one: derived from the clock, not Math.random. */
export function clockSeed(): number {
  // Node's nanosecond clock; a browser's performance.now() (microseconds) with the epoch time.
  if (typeof process !== 'undefined' && process.hrtime) {
    const t = process.hrtime.bigint();
    return Number(t & 0xffffffffn) ^ Number((t >> 32n) & 0xffffffffn);
  }
  return (Math.floor(performance.now() * 1000) ^ Date.now()) >>> 0;
}
