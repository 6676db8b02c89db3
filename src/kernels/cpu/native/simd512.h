/* AVX-512 helpers shared by the AVX-512 kernels and the AMX GEMM (compiled with AVX-512). */
#ifndef QUANTSPEC_SIMD512_H
#define QUANTSPEC_SIMD512_H
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

/* r[k] = dword k of the 16 rows, from r[p] = the 16 dwords of row p, in place (a 16 x 16 dword
 * transpose). */
static inline void transpose16_epi32(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) { /* r[4i + j], lane L: dword 4L + j of rows 4i..4i+3 */
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; j++) {
    const __m512i c0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x44), c1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xee);
    const __m512i c2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x44), c3 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xee);
    t[j] = _mm512_shuffle_i32x4(c0, c2, 0x88);
    t[4 + j] = _mm512_shuffle_i32x4(c0, c2, 0xdd);
    t[8 + j] = _mm512_shuffle_i32x4(c1, c3, 0x88);
    t[12 + j] = _mm512_shuffle_i32x4(c1, c3, 0xdd);
  }
  for (int k = 0; k < 16; k++) r[k] = t[k];
}

#endif
#endif
