/* Prompt matmuls with BF16 weights as AVX-512 BF16 dot products (vdpbf16ps), for CPUs with
 * AVX512_BF16 and no AMX (kernel_table.gemm_bf16 of the avx512 table there). Compiled with
 * AVX-512 and -mavx512bf16. F16 weights are not taken: split into two BF16 parts they need two
 * products per weight, which measured slower than the exact FMA matmul.
 *
 * The same contract as the tiles (gemm_amx.c): out[t, r] = Σ_j w[r, j] · bf16(x[t, j]) with F32
 * sums, the weights exact. The activations come in gemm_acts.c's layout, whose row k of a slice
 * holds 16 tokens' column pairs (x[t, 2k], x[t, 2k + 1]): one vdpbf16ps with a weight row's pair (w[r, 2k],
 * w[r, 2k + 1]) broadcast adds that pair to 16 tokens' sums at once. Every output is one weight
 * row against one token's lane, summed over the column pairs in order, so a token's result
 * depends on nothing but its own activations (batch and chunking invariant). */
#ifdef QUANTSPEC_AVX512BF16
#include <immintrin.h>
#include <string.h>
#include "gemm_bf16.h"
#include "kernels.h"

#define PANEL GEMM_PANEL /* weight rows per panel */
#define ROWS 8           /* weight rows per register block */
#define BLOCKS 3         /* token blocks (of 16) per register block */

/* Weight rows [r0, r0 + PANEL) at panel + i * kp, zero past rows and cols: a partial panel, or
 * rows whose length is not a multiple of 32. */
static void build_rows(uint16_t *panel, const uint16_t *w, int rows, int cols, int r0, int kp) {
  for (int i = 0; i < PANEL; i++) {
    const int r = r0 + i;
    for (int c0 = 0; c0 < kp; c0 += 32) {
      const __mmask32 cm = r < rows && c0 < cols ? cols_mask(cols, c0) : 0;
      _mm512_storeu_si512(panel + (size_t)i * kp + c0, _mm512_maskz_loadu_epi16(cm, w + (size_t)r * cols + c0));
    }
  }
}

/* Rows r .. r + ROWS - 1 (a + i * ld) against token blocks tb .. tb + NB - 1. */
static inline __attribute__((always_inline)) void dp_block(float *out, const uint16_t *xb, int slices, const uint16_t *a, size_t ld,
                                                           int rows, int n, int r, int tb, const int NB) {
  __m512 acc[ROWS][BLOCKS];
  for (int i = 0; i < ROWS; i++)
    for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();
  const size_t bstep = (size_t)slices * 512; /* elements between token blocks */
  for (int s = 0; s < slices; s++) {
    const uint16_t *bx = xb + ((size_t)tb * slices + s) * 512;
    for (int k = 0; k < 16; k++) {
      __m512bh b[BLOCKS];
      for (int j = 0; j < NB; j++) b[j] = (__m512bh)_mm512_load_si512(bx + j * bstep + 32 * k);
      for (int i = 0; i < ROWS; i++) {
        int32_t pair;
        memcpy(&pair, a + (size_t)i * ld + 32 * s + 2 * k, sizeof pair);
        const __m512bh wv = (__m512bh)_mm512_set1_epi32(pair);
        for (int j = 0; j < NB; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], b[j], wv);
      }
    }
  }
  float lane[16];
  for (int i = 0; i < ROWS && r + i < rows; i++)
    for (int j = 0; j < NB; j++) {
      _mm512_storeu_ps(lane, acc[i][j]);
      const int t0 = 16 * (tb + j);
      for (int l = 0; l < 16 && t0 + l < n; l++) out[(size_t)(t0 + l) * rows + r + i] = lane[l];
    }
}

void dp_gemm_bf16(float *out, const uint16_t *xb, int kp, const uint16_t *w, int dtype, int rows, int cols, int n, int r0, int r1,
                  uint16_t *panel) {
  (void)dtype; /* BF16 only (kernel_table.gemm_dtypes) */
  const int slices = kp / 32, nb = (n + 15) / 16;
  for (int rp = r0; rp < r1; rp += PANEL) {
    const uint16_t *base = w + (size_t)rp * cols;
    size_t ld = (size_t)cols;
    if (cols % 32 != 0 || rp + PANEL > rows) { /* otherwise the rows are read in place */
      build_rows(panel, w, rows, cols, rp, kp);
      base = panel, ld = (size_t)kp;
    }
    for (int r = rp; r < rp + PANEL && r < rows; r += ROWS) {
      const uint16_t *a = base + (size_t)(r - rp) * ld;
      int tb = 0;
      for (; tb + BLOCKS <= nb; tb += BLOCKS) dp_block(out, xb, slices, a, ld, rows, n, r, tb, BLOCKS);
      if (nb - tb == 2) dp_block(out, xb, slices, a, ld, rows, n, r, tb, 2);
      else if (nb - tb == 1) dp_block(out, xb, slices, a, ld, rows, n, r, tb, 1);
    }
  }
}

/* kernel_table.peak_flops kind 1 on this path: 12 independent vdpbf16ps chains on registers. */
double dp_peak_bf16(long iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; i++) acc[i] = _mm512_setzero_ps();
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = a; /* (1, 1) in BF16 */
  for (long it = 0; it < iters; it++) {
    __asm__ volatile("" : "+v"(a)); /* keep the products from being hoisted */
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  float sink = 0;
  for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(acc[i]);
  __asm__ volatile("" : : "x"(sink));
  return 2.0 * 32 * 12 * (double)iters;
}
#endif
