/* The blocks of quantized attention that differ per instruction set, shared by the AVX2 and
 * AVX-512 files (both compiled with AVX2): attention_rows_with() in attention_avx.c does the
 * rest (folding the query, masking, softmax pieces, FP rows) and calls these for the planes. */
#ifndef QUANTSPEC_ATTENTION_BLOCKS_H
#define QUANTSPEC_ATTENTION_BLOCKS_H
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>
#include "kernels.h"

typedef struct {
  const uint8_t *up, *lw; /* plane bytes of the first position, this KV head */
  int rb, half;           /* plane row bytes; bytes of one head */
  const int16_t *qlo, *qhi;
  const float *dq, *base;
  const int32_t *qsum;
  float *scores; /* scores[r * count + i] for position i of the block */
  int count;
  float scale;
  int n; /* positions */
  /* Scratch a block may fill once per key group for these pairs and reuse on the later calls of
   * the group (attn_key_prep_floats per KV head's pairs); fresh marks the group's first call. */
  uint8_t *prep;
  int fresh;
  /* Where not NULL (the wide calls of attn_blocks.wide_keys_min_pairs), smax[r * 16 ..] keeps the
   * largest score pair r has been given, in lanes of the block's choosing, starting from -inf: the
   * softmax's maximum without another pass over the scores (a maximum is exact in any order). */
  float *smax;
} key_args;

/* Values over the planes in integers: position i's weight e·s is rounded to an int16 W (one unit
 * worth dw[r], a 32767th of the pair's largest weight in the block), and Σ W·code runs in int32
 * with two positions per multiply-add (vpmaddwd / vpdpwssd take int16 pairs (W_i, W_i+1) against
 * (code_i, code_i+1) of one channel). Codes are centred (u - 8; INT8 16u + l8 - 128): smaller
 * codes carry less of W's rounding error, and the caller's bias term takes the offset. Integer
 * sums are exact, so every ISA gets the same result. */
typedef struct {
  const uint8_t *up, *lw; /* value plane bytes of the first position, this KV head, channel 0 */
  int rb, n;              /* plane row bytes; positions (at most VALUE_ROWS) */
  const int32_t *w;       /* [r * npw + i / 2]: W of positions i (low half) and i + 1 (high half) */
  int npw;                /* entries of w per pair of (query, head), at least (n + 1) / 2 */
  const float *dw;        /* [r]: what one unit of W is worth (INT8: already divided by 16) */
  int32_t *acc;           /* [r * d + ..]: the running Σ W·code, in an order of the ISA's choosing */
  int finish;             /* last rows of the value block: out[r * d + c] += dw[r] · Σ W·code instead */
  float *out;
  int d;                  /* head_dim: a multiple of 32 */
} value_args;

/* Rows per call of the plane blocks: the driver walks a chunk in blocks of this many positions and
 * every KV head within a block, so the plane rows (all heads side by side) are read nearly in
 * order, which the hardware prefetchers follow; one head down a whole chunk is a strided walk. */
#define KEY_ROWS 16
#define WIDE_KEY_ROWS 64
#define VALUE_ROWS 32 /* even: a weight pair never straddles two calls */

/* Largest head_dim the AVX driver takes (others go to the scalar kernels). */
#define MAX_D 512

/* Positions per value block: |Σ W·code| stays below 2^31 (VALUE_BLOCK · 32767 · 128 < 2^31). */
#define VALUE_BLOCK 256

/* out[c] += dw · acc[c] for the channels of one pair: the same float operations on every ISA. */
static inline void value_finish(float *out, const int32_t *acc, int channels, float dw) {
  for (int c = 0; c < channels; c++) out[c] += (float)acc[c] * dw;
}

typedef struct {
  /* scores of the nr pairs of one KV head against the key planes; bits 4 or 8 */
  void (*keys)(const key_args *a, int nr, int bits);
  /* the d value channels of nr (1..4) pairs accumulated over the value planes (see value_args) */
  void (*values)(const value_args *a, int nr, int bits);
  /* Optional, instead of values: one whole value block (n <= VALUE_BLOCK positions) of one KV
   * head for all nr pairs, finished into out; a->acc is scratch of 2 * VALUE_BLOCK * d bytes. */
  void (*value_block)(const value_args *a, int nr, int bits);
  /* value_block serves KV heads with at least this many pairs (a verify pass); fewer go to values */
  int value_block_min_pairs;
  /* KV heads with at least this many pairs (0: none) take keys WIDE_KEY_ROWS positions a call
   * instead of KEY_ROWS (a tile kernel then overlaps one block's products with another's scores)
   * and keep each pair's largest score (key_args.smax) */
  int wide_keys_min_pairs;
} attn_blocks;

void attention_rows_with(const attn_blocks *blocks, const attn_args *a, int q0, int q1, int p0, int p1, float *scratch,
                         attn_partial *part, float *out_partial);
/* The same driver compiled with AVX-512 (attention_avx512.c), for the AVX-512 and AMX tables. */
void attention_rows_with512(const attn_blocks *blocks, const attn_args *a, int q0, int q1, int p0, int p1, float *scratch,
                            attn_partial *part, float *out_partial);

/* The planes are read with a stride of a whole row (all KV heads), which the hardware prefetchers
 * follow poorly: the blocks prefetch their own bytes this many positions ahead. */
#define PF_AHEAD 64

/* Prefetch the value plane rows of positions i and i + 1 (the value blocks' step), PF_AHEAD
 * positions ahead. */
static inline __attribute__((always_inline)) void value_prefetch(const value_args *a, int i, const int BITS) {
  const size_t rb = a->rb, next = i + 1 < a->n ? rb : 0;
  const uint8_t *u0 = a->up + (size_t)(i + PF_AHEAD) * rb, *l0 = a->lw + (size_t)(i + PF_AHEAD) * rb;
  _mm_prefetch((const char *)u0, _MM_HINT_T0);
  _mm_prefetch((const char *)(u0 + next), _MM_HINT_T0);
  if (BITS == 8) {
    _mm_prefetch((const char *)l0, _MM_HINT_T0);
    _mm_prefetch((const char *)(l0 + next), _MM_HINT_T0);
  }
}

/* Eight int32 vectors to their eight horizontal sums, in order (integer adds: exact). */
static inline __m256i hsum8x8_i32(const __m256i v[8]) {
  const __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i t2 = _mm256_hadd_epi32(v[4], v[5]), t3 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* Scores of 8 positions from their integer dots: (dq · dot + base) · scale, INT8 dots first
 * corrected by (Σ q·code - 8 Σ q) / 16. Every position takes this path, so a score does not depend
 * on how the positions were chunked. */
static inline __attribute__((always_inline)) void key_scores8(const key_args *a, int r, __m256i dots, int i0, int m, const int BITS) {
  __m256 dot;
  if (BITS == 8)
    dot = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dots, _mm256_set1_epi32(8 * a->qsum[r]))), _mm256_set1_ps(1.0f / 16.0f));
  else
    dot = _mm256_cvtepi32_ps(dots);
  const __m256 sc = _mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(a->dq[r]), dot), _mm256_set1_ps(a->base[r])),
                                  _mm256_set1_ps(a->scale));
  float *dst = a->scores + (size_t)r * a->count + i0;
  if (m == 8) {
    _mm256_storeu_ps(dst, sc);
  } else {
    float tmp[8];
    _mm256_storeu_ps(tmp, sc);
    memcpy(dst, tmp, sizeof(float) * m);
  }
}

#endif
#endif
