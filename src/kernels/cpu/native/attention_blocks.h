/* The blocks of quantized attention that differ per instruction set, shared by the AVX2 and
 * AVX-512 files (both compiled with AVX2): attention_rows_with() in kernels_avx2.c does the
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
} key_args;

typedef struct {
  const uint8_t *up, *lw; /* value plane bytes of the first position, this KV head, channel 0 */
  int rb, n;
  const float *wu, *wl; /* [r * n + i] */
  float *out;           /* out[r * d + c] */
  int d;                /* head_dim: a multiple of 16 */
} value_args;

typedef struct {
  /* scores of nr (1..4) pairs against the key planes; bits 4 or 8 */
  void (*keys)(const key_args *a, int nr, int bits);
  /* the d value channels of nr (1..4) pairs accumulated over the value planes; every channel's
   * sum runs over the positions in order, one FMA each, so the ISAs agree exactly */
  void (*values)(const value_args *a, int nr, int bits);
} attn_blocks;

void attention_rows_with(const attn_blocks *blocks, const attn_args *a, int q0, int q1, int p0, int p1, float *scratch,
                         attn_partial *part, float *out_partial);

/* The planes are read with a stride of a whole row (all KV heads), which the hardware prefetchers
 * follow poorly: the blocks prefetch their own bytes this many positions ahead. */
#define PF_AHEAD 64

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
