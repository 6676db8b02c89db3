/* The hierarchical KV quantizer and the cache's F16 row writes at 8 lanes (compiled with -mavx2
 * -mfma -mf16c; the AVX2 and AVX-512 tables share them). Each element goes through the float
 * operations of kernels_common.c kv_quantize (and so of src/kernels/reference/kvquant.ts) one IEEE
 * operation at a time, so the codes and metadata are the scalar ones bit for bit:
 *  - keys: 8 channels side by side down each key group of G tokens (their minimum and maximum are
 *    per lane in token order, as the scalar loop takes them);
 *  - values: 8 channels at a time across each value group of one token; the group's minimum and
 *    maximum are reduced across lanes, which is exact except for the sign of a zero extreme, so
 *    such a group is rescanned in order. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "kernels.h"
#include "simd_avx2.h"

/* Eight F32 elements of an F32 (fp_dtype 0) or F16 (1) row buffer from index i. */
static inline __m256 load8_rows(int fp_dtype, const void *rows, size_t i) {
  return fp_dtype == 0 ? load8_f32((const float *)rows + i) : load8_f16((const uint16_t *)rows + i);
}

/* The codes u | (l + 8) << 4 of x against scale s and minimum mn (per lane), as encode() takes
 * them: t = x - mn, u = clamp(rint(t / s), 0, 15), r = x - (mn + u·s), l = clamp(rint(r / (s / 16)),
 * -8, 7); 8 << 4 where s is 0. Quotients above the top code are clamped first; NaN converts to
 * INT32_MIN and clamps to the bottom code, as in encode(). */
static inline __m256i encode8(__m256 x, __m256 s, __m256 mn) {
  /* min(15, q) keeps NaN (minps returns its second operand when either is NaN) */
  const __m256 qt = _mm256_min_ps(_mm256_set1_ps(15.0f), _mm256_div_ps(_mm256_sub_ps(x, mn), s));
  __m256i u = _mm256_cvtps_epi32(qt);
  u = _mm256_min_epi32(_mm256_max_epi32(u, _mm256_setzero_si256()), _mm256_set1_epi32(15));
  const __m256 rec = _mm256_add_ps(mn, _mm256_mul_ps(_mm256_cvtepi32_ps(u), s));
  const __m256 qr = _mm256_min_ps(_mm256_set1_ps(7.0f), _mm256_div_ps(_mm256_sub_ps(x, rec), _mm256_div_ps(s, _mm256_set1_ps(16.0f))));
  __m256i l = _mm256_cvtps_epi32(qr);
  l = _mm256_min_epi32(_mm256_max_epi32(l, _mm256_set1_epi32(-8)), _mm256_set1_epi32(7));
  const __m256i code = _mm256_or_si256(u, _mm256_slli_epi32(_mm256_add_epi32(l, _mm256_set1_epi32(8)), 4));
  const __m256i zero_s = _mm256_castps_si256(_mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_EQ_OQ));
  return _mm256_blendv_epi8(code, _mm256_set1_epi32(8 << 4), zero_s);
}

/* Eight codes of channels c .. c + 7 to their nibbles: upper[j] = u(2j) | u(2j + 1) << 4 and the
 * same of the lower nibbles, four bytes each. */
static inline void store_nibbles(uint8_t *upper, uint8_t *lower, __m256i codes) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(codes), _mm256_extracti128_si256(codes, 1));
  const __m128i b = _mm_packus_epi16(w, w); /* bytes 0-7: the codes */
  const __m128i nib = _mm_set1_epi8(15), pair = _mm_set1_epi16(0x1001);
  const __m128i u = _mm_maddubs_epi16(_mm_and_si128(b, nib), pair);                     /* u(2j) + 16 u(2j + 1) */
  const __m128i l = _mm_maddubs_epi16(_mm_and_si128(_mm_srli_epi16(b, 4), nib), pair);
  const int up = _mm_cvtsi128_si32(_mm_packus_epi16(u, u)), lw = _mm_cvtsi128_si32(_mm_packus_epi16(l, l));
  memcpy(upper, &up, 4);
  memcpy(lower, &lw, 4);
}

/* The least and greatest of elements [i, i + n) of a row buffer (n a multiple of 8), as the scalar
 * loop finds them in order: NaN never taken; a zero extreme, whose sign depends on the order, is
 * found again in order. */
static void group_range(int fp_dtype, const void *rows, size_t i, int n, float *mn, float *mx) {
  __m256 lo = _mm256_set1_ps(INFINITY), hi = _mm256_set1_ps(-INFINITY);
  for (int c = 0; c < n; c += 8) {
    const __m256 x = load8_rows(fp_dtype, rows, i + c);
    lo = _mm256_min_ps(x, lo); /* x < lo ? x : lo, NaN keeps lo */
    hi = _mm256_max_ps(x, hi);
  }
  float l[8], h[8];
  _mm256_storeu_ps(l, lo), _mm256_storeu_ps(h, hi);
  float a = INFINITY, b = -INFINITY;
  for (int k = 0; k < 8; k++) a = l[k] < a ? l[k] : a, b = h[k] > b ? h[k] : b;
  if (a == 0.0f || b == 0.0f) {
    a = INFINITY, b = -INFINITY;
    for (int c = 0; c < n; c++) {
      const float x = kv_fp_value(fp_dtype, rows, i + c);
      if (x < a) a = x;
      if (x > b) b = x;
    }
  }
  *mn = a, *mx = b;
}

void avx2_kv_quantize(const kv_planes *p, uint8_t *k_upper, uint8_t *k_lower, uint16_t *k_scale, uint16_t *k_min,
                      uint8_t *v_upper, uint8_t *v_lower, uint16_t *v_scale, uint16_t *v_min, int fp_dtype, const void *fp_keys,
                      const void *fp_values, int src_row, int dst_pos, int n_tokens) {
  const int kv_dim = p->kv_dim, G = p->group_k, Gv = p->group_v, half = kv_dim / 2;
  if (kv_dim % 8 != 0 || Gv % 8 != 0) {
    kv_quantize(p, k_upper, k_lower, k_scale, k_min, v_upper, v_lower, v_scale, v_min, fp_dtype, fp_keys, fp_values, src_row,
                dst_pos, n_tokens);
    return;
  }
  /* keys: per channel over each group of G tokens */
  for (int g0 = 0; g0 < n_tokens; g0 += G) {
    const size_t meta_row = (size_t)((dst_pos + g0) / G) * kv_dim;
    for (int c = 0; c < kv_dim; c += 8) {
      __m256 lo = _mm256_set1_ps(INFINITY), hi = _mm256_set1_ps(-INFINITY);
      for (int t = 0; t < G; t++) {
        const __m256 x = load8_rows(fp_dtype, fp_keys, (size_t)(src_row + g0 + t) * kv_dim + c);
        lo = _mm256_min_ps(x, lo), hi = _mm256_max_ps(x, hi);
      }
      float l[8], h[8];
      _mm256_storeu_ps(l, lo), _mm256_storeu_ps(h, hi);
      for (int k = 0; k < 8; k++) kv_group_meta(l[k], h[k], k_scale + meta_row + c + k, k_min + meta_row + c + k);
      const __m256 s = load8_f16(k_scale + meta_row + c), mn = load8_f16(k_min + meta_row + c);
      for (int t = 0; t < G; t++) {
        const __m256 x = load8_rows(fp_dtype, fp_keys, (size_t)(src_row + g0 + t) * kv_dim + c);
        const size_t byte = (size_t)(dst_pos + g0 + t) * half + c / 2;
        store_nibbles(k_upper + byte, k_lower + byte, encode8(x, s, mn));
      }
    }
  }
  /* values: per token over each group of Gv channels */
  const int groups = kv_dim / Gv;
  for (int t = 0; t < n_tokens; t++) {
    const size_t src = (size_t)(src_row + t) * kv_dim;
    for (int g = 0; g < groups; g++) {
      float mn, mx;
      group_range(fp_dtype, fp_values, src + (size_t)g * Gv, Gv, &mn, &mx);
      const size_t mi = (size_t)(dst_pos + t) * groups + g;
      kv_group_meta(mn, mx, v_scale + mi, v_min + mi);
      const __m256 s = _mm256_set1_ps(qs_f16_to_f32(v_scale[mi])), m = _mm256_set1_ps(qs_f16_to_f32(v_min[mi]));
      for (int c = g * Gv; c < (g + 1) * Gv; c += 8) {
        const size_t byte = (size_t)(dst_pos + t) * half + c / 2;
        store_nibbles(v_upper + byte, v_lower + byte, encode8(load8_rows(fp_dtype, fp_values, src + c), s, m));
      }
    }
  }
}

/* dst[i] = F16 of src[i], rounded to nearest even (F16C), every NaN as qs_f32_to_f16 writes it
 * (the sign, all exponent bits and only the quiet bit). */
void avx2_f32_to_f16(uint16_t *dst, const float *src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(src + i);
    __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m128i nan = _mm_packs_epi32(_mm256_castsi256_si128(_mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q))),
                                        _mm256_extracti128_si256(_mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)), 1));
    const __m128i canonical = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16((short)0x8000)), _mm_set1_epi16(0x7e00));
    h = _mm_blendv_epi8(h, canonical, nan);
    _mm_storeu_si128((__m128i *)(dst + i), h);
  }
  for (; i < n; i++) dst[i] = qs_f32_to_f16(src[i]);
}
#endif
