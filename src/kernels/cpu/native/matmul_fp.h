/* The F32, F16 and BF16 weight matmuls, out[t, r] = Σ_j w[r, j] · x[t, j], one source for the AVX2
 * and AVX-512 kernel files (simdw.h gives the width). Each (row, token) dot uses one accumulator
 * stepping VW_LANES columns, a fixed horizontal sum and a scalar tail, whatever rows and tokens
 * are processed together; blocking over rows and tokens only provides independent accumulators,
 * so results are batch invariant. Include once per kernel file, after simdw.h. */
#ifndef QUANTSPEC_MATMUL_FP_H
#define QUANTSPEC_MATMUL_FP_H
#include "simdw.h"

/* RB rows x TB tokens; RB and TB are literal constants at every call, so the accumulators live in
 * registers. */
#define MM_BLOCK(SUFFIX, WT)                                                                             \
  static inline __attribute__((always_inline)) void block_##SUFFIX(float *out, const float *x, const WT *w, \
                                                                    int rows, int cols, int r, int t,     \
                                                                    const int RB, const int TB) {         \
    vwf acc[4][6];                                                                                       \
    for (int i = 0; i < RB; i++)                                                                         \
      for (int k = 0; k < TB; k++) acc[i][k] = vw_zero();                                                \
    int j = 0;                                                                                           \
    for (; j + VW_LANES <= cols; j += VW_LANES) {                                                        \
      vwf wv[4];                                                                                         \
      for (int i = 0; i < RB; i++) {                                                                     \
        if ((j * (int)sizeof(WT)) % 64 == 0) /* the same line of the next group of rows (see below) */  \
          _mm_prefetch((const char *)(w + (size_t)(r + RB + i) * cols + j), _MM_HINT_T0);               \
        wv[i] = vw_load_##SUFFIX(w + (size_t)(r + i) * cols + j);                                        \
      }                                                                                                  \
      for (int k = 0; k < TB; k++) {                                                                     \
        const vwf xv = vw_load_f32(x + (size_t)(t + k) * cols + j);                                      \
        for (int i = 0; i < RB; i++) acc[i][k] = vw_fmadd(wv[i], xv, acc[i][k]);                         \
      }                                                                                                  \
    }                                                                                                    \
    float sums[4][6];                                                                                    \
    for (int k = 0; k < TB; k++) {                                                                       \
      if (RB == 4) { /* vw_hsum's sums, four rows at a time */                                           \
        float s4[4];                                                                                     \
        _mm_storeu_ps(s4, vw_hsum4(acc[0][k], acc[1][k], acc[2][k], acc[3][k]));                         \
        for (int i = 0; i < 4; i++) sums[i][k] = s4[i];                                                  \
      } else                                                                                             \
        for (int i = 0; i < RB; i++) sums[i][k] = vw_hsum(acc[i][k]);                                    \
    }                                                                                                    \
    for (int i = 0; i < RB; i++)                                                                         \
      for (int k = 0; k < TB; k++) {                                                                     \
        float s = sums[i][k];                                                                            \
        for (int jj = j; jj < cols; jj++)                                                                \
          s += one_##SUFFIX(w + (size_t)(r + i) * cols + jj) * x[(size_t)(t + k) * cols + jj];           \
        out[(size_t)(t + k) * rows + r + i] = s;                                                         \
      }                                                                                                  \
  }                                                                                                      \
  /* Rows [r0, r1) for n tokens: 4 rows per block for one token (a decode step), VW_ROWS rows and up  \
   * to 6 tokens per block for several (one pass over each row group for a verify batch). */         \
  static void matmul_##SUFFIX(float *out, const float *x, const WT *w, int rows, int cols, int n, int r0, int r1) { \
    int r = r0;                                                                                          \
    if (n == 1) {                                                                                        \
      for (; r + 4 <= r1; r += 4) block_##SUFFIX(out, x, w, rows, cols, r, 0, 4, 1);                     \
      for (; r < r1; r++) block_##SUFFIX(out, x, w, rows, cols, r, 0, 1, 1);                             \
      return;                                                                                            \
    }                                                                                                    \
    /* Rows in groups whose weights fit in L2 (1 MiB); within a group each block of tokens (in L1) \
     * passes all its rows, so the weights stream from L2 four vectors a step. Rows outer streamed  \
     * the tokens six vectors a step (pdlm's 256x768 F32 at 128 tokens: 236-238 µs that way,       \
     * 192-194 µs this way, runs in turn). */                                                        \
    const int rf = r0 + (r1 - r0) / VW_ROWS * VW_ROWS;                                                  \
    int rg = (int)(((size_t)1 << 20) / ((size_t)cols * sizeof(WT))) / VW_ROWS * VW_ROWS;                 \
    if (rg < VW_ROWS) rg = VW_ROWS;                                                                      \
    for (int g0 = r0; g0 < rf; g0 += rg) {                                                               \
      const int g1 = g0 + rg < rf ? g0 + rg : rf;                                                        \
      int t = 0;                                                                                         \
      for (; t + 6 <= n; t += 6)                                                                         \
        for (r = g0; r < g1; r += VW_ROWS) block_##SUFFIX(out, x, w, rows, cols, r, t, VW_ROWS, 6);      \
      for (r = g0; r < g1; r += VW_ROWS) {                                                               \
        switch (n - t) {                                                                                 \
          case 5: block_##SUFFIX(out, x, w, rows, cols, r, t, VW_ROWS, 5); break;                        \
          case 4: block_##SUFFIX(out, x, w, rows, cols, r, t, VW_ROWS, 4); break;                        \
          case 3: block_##SUFFIX(out, x, w, rows, cols, r, t, VW_ROWS, 3); break;                        \
          case 2: block_##SUFFIX(out, x, w, rows, cols, r, t, VW_ROWS, 2); break;                        \
          case 1: block_##SUFFIX(out, x, w, rows, cols, r, t, VW_ROWS, 1); break;                        \
          default: break;                                                                                \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
    r = rf;                                                                                              \
    for (; r < r1; r++) {                                                                                \
      int t = 0;                                                                                         \
      for (; t + 6 <= n; t += 6) block_##SUFFIX(out, x, w, rows, cols, r, t, 1, 6);                      \
      for (; t < n; t++) block_##SUFFIX(out, x, w, rows, cols, r, t, 1, 1);                              \
    }                                                                                                    \
  }

MM_BLOCK(f32, float)
MM_BLOCK(f16, uint16_t)
MM_BLOCK(bf16, uint16_t)
#undef MM_BLOCK

#endif
