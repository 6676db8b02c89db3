/* The activations of a BF16-activation prompt matmul (kernels.h gemm_acts_bf16), laid out once
 * per matmul for both the AMX tiles (gemm_amx.c) and the AVX-512 BF16 dot products (gemm_dp.c):
 * a row of 16 tokens' column pairs is at once an AMX B-tile row and a vdpbf16ps operand. Compiled
 * with AVX-512. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include "gemm_bf16.h"
#include "kernels.h"
#include "simd512.h"

/* The B tiles of token blocks [tb0, tb1): xb + (tb * slices + s) * 512 holds, for the 16 tokens of
 * block tb and columns 32s .. 32s + 31, row k = the pairs (x[t, 32s + 2k], x[t, 32s + 2k + 1]) of
 * the 16 tokens, in BF16. Tokens past n and columns past cols are zero. */
void gemm_acts_pairs(uint16_t *xb, const float *x, int n, int cols, int kp, int tb0, int tb1) {
  const int slices = kp / 32;
  for (int tb = tb0; tb < tb1; tb++)
    for (int s = 0; s < slices; s++) {
      const __mmask32 cm = cols_mask(cols, 32 * s);
      __m512i t[16];
      for (int i = 0; i < 16; i++) {
        const int tok = 16 * tb + i;
        if (tok >= n) {
          t[i] = _mm512_setzero_si512();
          continue;
        }
        const float *src = x + (size_t)tok * cols + 32 * s;
        const __m512 f0 = _mm512_maskz_loadu_ps((__mmask16)cm, src), f1 = _mm512_maskz_loadu_ps((__mmask16)(cm >> 16), src + 16);
        t[i] = join256(bf16_of16(f0), bf16_of16(f1));
      }
      transpose16_epi32(t);
      uint16_t *dst = xb + ((size_t)tb * slices + s) * 512;
      for (int k = 0; k < 16; k++) _mm512_store_si512(dst + 32 * k, t[k]);
    }
}

#endif
