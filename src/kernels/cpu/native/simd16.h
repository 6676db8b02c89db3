/* Sixteen float lanes, one source for two widths: a __m512 where the translation unit is compiled
 * with AVX-512, two __m256 halves (lanes 0-7, 8-15) with AVX2. Every operation is the same IEEE
 * operation per lane on both, and the reductions take one fixed order (lanes 0-7 plus lanes 8-15,
 * then hsum()'s order), so code written with these gives the same bits at either width. */
#ifndef QUANTSPEC_SIMD16_H
#define QUANTSPEC_SIMD16_H
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdint.h>
#include "simd_avx2.h"

#ifdef __AVX512F__
typedef __m512 v16f;
typedef __mmask16 v16m; /* a lane mask */

static inline v16f v16_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void v16_store(float *p, v16f v) { _mm512_storeu_ps(p, v); }
static inline v16f v16_set1(float x) { return _mm512_set1_ps(x); }
static inline v16f v16_zero(void) { return _mm512_setzero_ps(); }
static inline v16f v16_add(v16f a, v16f b) { return _mm512_add_ps(a, b); }
static inline v16f v16_sub(v16f a, v16f b) { return _mm512_sub_ps(a, b); }
static inline v16f v16_mul(v16f a, v16f b) { return _mm512_mul_ps(a, b); }
static inline v16f v16_fmadd(v16f a, v16f b, v16f c) { return _mm512_fmadd_ps(a, b, c); }
static inline v16f v16_max(v16f a, v16f b) { return _mm512_max_ps(a, b); }
/* lanes [0, n) */
static inline v16m v16_first(int n) { return (v16m)(n >= 16 ? 0xffffu : (1u << n) - 1); }
/* b where m, else a */
static inline v16f v16_blend(v16f a, v16f b, v16m m) { return _mm512_mask_blend_ps(m, a, b); }
/* a, with the lanes where x == -inf set to +0 */
static inline v16f v16_zero_where_neg_inf(v16f a, v16f x) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ), a);
}
static inline float v16_hsum(v16f v) { return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castsi256_ps(_mm512_extracti64x4_epi64(_mm512_castps_si512(v), 1)))); }
static inline float v16_hmax(v16f v) { return hmax(_mm256_max_ps(_mm512_castps512_ps256(v), _mm256_castsi256_ps(_mm512_extracti64x4_epi64(_mm512_castps_si512(v), 1)))); }
/* round to nearest even, then to int16 with saturation, 16 values to dst */
static inline void v16_store_i16(int16_t *dst, v16f v) {
  _mm256_storeu_si256((__m256i *)dst, _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(v)));
}
/* exp for x <= 0: exp256()'s operations lane by lane */
static inline v16f v16_exp(v16f x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  /* y · 2^fx in one instruction: exp256 builds 2^fx from its exponent bits and multiplies; after
   * the clamp fx is an integer in [-126, 0] and the product is a normal float, exact either way */
  return _mm512_scalef_ps(y, fx);
}
#else
typedef struct {
  __m256 lo, hi;
} v16f;
typedef struct {
  __m256 lo, hi;
} v16m;

static inline v16f v16_make(__m256 lo, __m256 hi) {
  v16f v;
  v.lo = lo, v.hi = hi;
  return v;
}
static inline v16f v16_load(const float *p) { return v16_make(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)); }
static inline void v16_store(float *p, v16f v) { _mm256_storeu_ps(p, v.lo), _mm256_storeu_ps(p + 8, v.hi); }
static inline v16f v16_set1(float x) { return v16_make(_mm256_set1_ps(x), _mm256_set1_ps(x)); }
static inline v16f v16_zero(void) { return v16_make(_mm256_setzero_ps(), _mm256_setzero_ps()); }
static inline v16f v16_add(v16f a, v16f b) { return v16_make(_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)); }
static inline v16f v16_sub(v16f a, v16f b) { return v16_make(_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)); }
static inline v16f v16_mul(v16f a, v16f b) { return v16_make(_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)); }
static inline v16f v16_fmadd(v16f a, v16f b, v16f c) {
  return v16_make(_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi));
}
static inline v16f v16_max(v16f a, v16f b) { return v16_make(_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)); }
static inline v16m v16_first(int n) {
  const __m256i nv = _mm256_set1_epi32(n);
  v16m m;
  m.lo = _mm256_castsi256_ps(_mm256_cmpgt_epi32(nv, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  m.hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(nv, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)));
  return m;
}
static inline v16f v16_blend(v16f a, v16f b, v16m m) {
  return v16_make(_mm256_blendv_ps(a.lo, b.lo, m.lo), _mm256_blendv_ps(a.hi, b.hi, m.hi));
}
static inline v16f v16_zero_where_neg_inf(v16f a, v16f x) {
  const __m256 ni = _mm256_set1_ps(-INFINITY);
  return v16_make(_mm256_andnot_ps(_mm256_cmp_ps(x.lo, ni, _CMP_EQ_OQ), a.lo), _mm256_andnot_ps(_mm256_cmp_ps(x.hi, ni, _CMP_EQ_OQ), a.hi));
}
static inline float v16_hsum(v16f v) { return hsum(_mm256_add_ps(v.lo, v.hi)); }
static inline float v16_hmax(v16f v) { return hmax(_mm256_max_ps(v.lo, v.hi)); }
static inline void v16_store_i16(int16_t *dst, v16f v) {
  const __m256i a = _mm256_cvtps_epi32(v.lo), b = _mm256_cvtps_epi32(v.hi);
  /* packs works per 128-bit lane: a0-3 b0-3 a4-7 b4-7, put back in order */
  _mm256_storeu_si256((__m256i *)dst, _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8));
}
static inline v16f v16_exp(v16f x) { return v16_make(exp256(x.lo), exp256(x.hi)); }
#endif

#endif
#endif
