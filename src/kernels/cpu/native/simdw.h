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
