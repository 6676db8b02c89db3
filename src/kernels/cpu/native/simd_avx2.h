/* AVX2 helpers shared by the AVX2 kernels and the AVX attention driver (both compiled with
 * -mavx2 -mfma -mf16c): horizontal sums, loads, exp, full-precision row dots. */
#ifndef QUANTSPEC_SIMD_AVX2_H
#define QUANTSPEC_SIMD_AVX2_H
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "kernels.h"

static inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

static inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

static inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

static inline __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256 load8_bf16(const uint16_t *p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline float one_f32(const float *p) { return *p; }
static inline float one_f16(const uint16_t *p) { return _cvtsh_ss(*p); }
static inline float one_bf16(const uint16_t *p) {
  uint32_t b = (uint32_t)*p << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

/* exp for x <= 0 (softmax arguments), Cephes-style: 2^n · p(r), relative error ~2e-7. */
static inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

#define MAX_REP 64

static inline float dot_fp(const kv_view *kv, size_t base, const float *q, int d) {
  __m256 acc = _mm256_setzero_ps();
  if (kv->fp_dtype == 0) {
    const float *k = (const float *)kv->fp_keys + base;
    for (int i = 0; i < d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc);
  } else {
    const uint16_t *k = (const uint16_t *)kv->fp_keys + base;
    for (int i = 0; i < d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8_f16(k + i), acc);
  }
  return hsum(acc);
}

static inline void axpy_fp(float *o, float e, const kv_view *kv, size_t base, int d) {
  const __m256 ev = _mm256_set1_ps(e);
  if (kv->fp_dtype == 0) {
    const float *v = (const float *)kv->fp_values + base;
    for (int i = 0; i < d; i += 8) _mm256_storeu_ps(o + i, _mm256_fmadd_ps(ev, _mm256_loadu_ps(v + i), _mm256_loadu_ps(o + i)));
  } else {
    const uint16_t *v = (const uint16_t *)kv->fp_values + base;
    for (int i = 0; i < d; i += 8) _mm256_storeu_ps(o + i, _mm256_fmadd_ps(ev, load8_f16(v + i), _mm256_loadu_ps(o + i)));
  }
}

/* 32 nibbles of one plane row (16 bytes = channels c0..c0+31) as floats in channel order, 4 x 8. */
static inline void nibbles_to_f32(const uint8_t *src, __m256 out[4]) {
  const __m128i packed = _mm_loadu_si128((const __m128i *)src);
  const __m128i mask = _mm_set1_epi8(15);
  const __m128i lo = _mm_and_si128(packed, mask), hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
  const __m128i c0 = _mm_unpacklo_epi8(lo, hi), c1 = _mm_unpackhi_epi8(lo, hi); /* channels 0..15, 16..31 */
  out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c0));
  out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c0, 8)));
  out[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c1));
  out[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c1, 8)));
}

#endif
#endif
