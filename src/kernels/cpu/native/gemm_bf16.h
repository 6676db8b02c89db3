/* Shared pieces of the BF16-activation prompt matmuls (kernels.h gemm_acts_bf16 / gemm_bf16):
 * rounding to BF16 and column masks (gemm_acts.c, gemm_amx.c, gemm_dp.c), the exact split of F16
 * weights into two BF16 parts (the tiles, gemm_amx.c). Included by files compiled with AVX-512
 * (F, BW). */
#ifndef QUANTSPEC_GEMM_BF16_H
#define QUANTSPEC_GEMM_BF16_H
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdint.h>

/* 16 floats to BF16, rounded to nearest even, NaN kept a quiet NaN (core/half.ts f32ToBf16). */
static inline __m256i bf16_of16(__m512 f) {
  const __m512i b = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

static inline __m512i join256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* 32 F16 weights as two rows of 32 BF16 whose sum is each weight exactly: hi = the weight cut to
 * BF16's 8 significant bits (the upper half of its F32 bits), lo = the rest, at most 3 significant
 * bits, so its upper half holds it exactly too. Picking the upper halves of 32 F32 lanes is one
 * two-source permute per row (rounding hi to nearest would cost five more operations per 16
 * weights and split no more exactly). An infinite weight gives hi = inf and lo = NaN. */
static inline void f16_split(const uint16_t *src, __mmask32 cm, __m512i *hi, __m512i *lo) {
  const __m512i raw = _mm512_maskz_loadu_epi16(cm, src);
  const __m512 f0 = _mm512_cvtph_ps(_mm512_castsi512_si256(raw)), f1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(raw, 1));
  const __m512i upper = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19,
                                         17, 15, 13, 11, 9, 7, 5, 3, 1);
  const __m512i top = _mm512_set1_epi32((int)0xffff0000u);
  const __m512 r0 = _mm512_sub_ps(f0, _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(f0), top)));
  const __m512 r1 = _mm512_sub_ps(f1, _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(f1), top)));
  *hi = _mm512_permutex2var_epi16(_mm512_castps_si512(f0), upper, _mm512_castps_si512(f1));
  *lo = _mm512_permutex2var_epi16(_mm512_castps_si512(r0), upper, _mm512_castps_si512(r1));
}

static inline __mmask32 cols_mask(int cols, int c0) {
  const int nc = cols - c0 < 32 ? cols - c0 : 32;
  return nc == 32 ? 0xffffffffu : (1u << nc) - 1;
}

#endif
#endif
