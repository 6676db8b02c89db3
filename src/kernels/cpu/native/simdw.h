/* Float vectors of the widest width the translation unit is compiled for: 16 lanes (__m512) with
 * AVX-512, 8 lanes (__m256) with AVX2. Code written with these (matmul_fp.h, vw_peak_fma below)
 * is one source for the two kernel files; each width keeps its own reduction order, so results
 * are batch invariant per width (not equal across widths, which nothing asks of the matmuls). VW_ROWS is the rows a
 * matmul block keeps accumulators for beside up to 6 tokens: 4 with AVX-512's 32 registers, 2 with
 * AVX2's 16. */
#ifndef QUANTSPEC_SIMDW_H
#define QUANTSPEC_SIMDW_H
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdint.h>
#include "simd_avx2.h"

#ifdef __AVX512F__
typedef __m512 vwf;
#define VW_LANES 16
#define VW_ROWS 4
static inline vwf vw_zero(void) { return _mm512_setzero_ps(); }
static inline vwf vw_fmadd(vwf a, vwf b, vwf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vwf vw_load_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline vwf vw_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline vwf vw_load_bf16(const uint16_t *p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
/* lanes 0-7 plus 8-15, then hsum()'s order */
static inline float vw_hsum(vwf v) {
  return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
/* vw_hsum of four vectors at once, as the four lanes of the result: each sum takes the same
 * additions of the same operands as vw_hsum (lanes i + 8, then i + 4, then the pairs (0, 1) and
 * (2, 3), then their two sums), so every lane equals vw_hsum of its vector bit for bit, with about
 * half the shuffles and a third of the additions of four vw_hsum calls. */
static inline __m128 vw_hsum4(vwf a, vwf b, vwf c, vwf d) {
  /* [a lanes 0-7 + 8-15 | b's], [c's | d's] */
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
  /* per 128-bit lane, one vector's x_i = y_i + y_(i+4) */
  const __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
  const __m512 s = _mm512_add_ps(x, _mm512_movehdup_ps(x));  /* x0 + x1, ., x2 + x3, . */
  const __m512 r = _mm512_add_ps(s, _mm512_permute_ps(s, 2)); /* element 0: (x0 + x1) + (x2 + x3) */
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), r));
}
#else
typedef __m256 vwf;
#define VW_LANES 8
#define VW_ROWS 2
static inline vwf vw_zero(void) { return _mm256_setzero_ps(); }
static inline vwf vw_fmadd(vwf a, vwf b, vwf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vwf vw_load_f32(const float *p) { return load8_f32(p); }
static inline vwf vw_load_f16(const uint16_t *p) { return load8_f16(p); }
static inline vwf vw_load_bf16(const uint16_t *p) { return load8_bf16(p); }
static inline float vw_hsum(vwf v) { return hsum(v); }
/* vw_hsum of four vectors at once, as the four lanes of the result (see the AVX-512 version):
 * each lane equals hsum() of its vector bit for bit. */
static inline __m128 vw_hsum4(vwf a, vwf b, vwf c, vwf d) {
  /* [a's x_i = lo_i + hi_i | b's], [c's | d's] */
  const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
  const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
  const __m256 sab = _mm256_add_ps(ab, _mm256_movehdup_ps(ab)), scd = _mm256_add_ps(cd, _mm256_movehdup_ps(cd));
  /* element 0 of each 128-bit lane: (x0 + x1) + (x2 + x3) */
  const __m256 rab = _mm256_add_ps(sab, _mm256_permute_ps(sab, 2)), rcd = _mm256_add_ps(scd, _mm256_permute_ps(scd, 2));
  /* a and b in elements 0 and 4 of rab, c and d in those of rcd: to lanes 0-3 */
  const __m256 m = _mm256_shuffle_ps(rab, rcd, 0x00); /* [a, a, c, c | b, b, d, d] */
  const __m128 lo = _mm256_castps256_ps128(m), hi = _mm256_extractf128_ps(m, 1);
  return _mm_movelh_ps(_mm_unpacklo_ps(lo, hi), _mm_unpackhi_ps(lo, hi));
}
#endif

/* kernel_table.peak_flops kind 0: the FLOPs of `iters` rounds of 16 independent FMA chains at the
 * native width (enough to cover two FMA ports' latency), on registers alone. */
static inline double vw_peak_fma(long iters) {
  vwf acc[16];
  float m16[16];
  for (int k = 0; k < 16; k++) m16[k] = 0.999f;
  const vwf m = vw_load_f32(m16);
  for (int k = 0; k < 16; k++) acc[k] = vw_zero();
  for (long i = 0; i < iters; i++)
    for (int k = 0; k < 16; k++) acc[k] = vw_fmadd(acc[k], m, m);
  float sink = 0;
  for (int k = 0; k < 16; k++) sink += vw_hsum(acc[k]);
  __asm__ __volatile__("" : : "x"(sink));
  return 2.0 * VW_LANES * 16 * (double)iters;
}

#endif
#endif
