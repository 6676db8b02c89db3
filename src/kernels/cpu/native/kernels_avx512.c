/* AVX-512 (F, BW, VL, VNNI) kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni
 * -mfma -mf16c; chosen at run time where the CPU has them). 32 vector registers allow 4 rows x 6
 * tokens of accumulators; VNNI's vpdpbusd multiplies and sums 4-bit codes with int8 activations
 * in one instruction. Reductions keep a fixed order per output (batch invariant). Attention uses
 * the AVX2 kernels. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>
#include "kernels.h"

static inline float hsum16(__m512 v) {
  __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

static inline __m512 load16_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline __m512 load16_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline __m512 load16_bf16(const uint16_t *p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
static inline float one_f32(const float *p) { return *p; }
static inline float one_f16(const uint16_t *p) { return _cvtsh_ss(*p); }
static inline float one_bf16(const uint16_t *p) {
  uint32_t b = (uint32_t)*p << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

#define MM_BLOCK(SUFFIX, WT)                                                                             \
  static inline __attribute__((always_inline)) void block_##SUFFIX(float *out, const float *x, const WT *w, \
                                                                    int rows, int cols, int r, int t,     \
                                                                    const int RB, const int TB) {         \
    __m512 acc[4][6];                                                                                    \
    for (int i = 0; i < RB; i++)                                                                         \
      for (int k = 0; k < TB; k++) acc[i][k] = _mm512_setzero_ps();                                      \
    int j = 0;                                                                                           \
    for (; j + 16 <= cols; j += 16) {                                                                    \
      __m512 wv[4];                                                                                      \
      for (int i = 0; i < RB; i++) wv[i] = load16_##SUFFIX(w + (size_t)(r + i) * cols + j);              \
      for (int k = 0; k < TB; k++) {                                                                     \
        const __m512 xv = _mm512_loadu_ps(x + (size_t)(t + k) * cols + j);                              \
        for (int i = 0; i < RB; i++) acc[i][k] = _mm512_fmadd_ps(wv[i], xv, acc[i][k]);                  \
      }                                                                                                  \
    }                                                                                                    \
    for (int i = 0; i < RB; i++)                                                                         \
      for (int k = 0; k < TB; k++) {                                                                     \
        float s = hsum16(acc[i][k]);                                                                     \
        for (int jj = j; jj < cols; jj++)                                                                \
          s += one_##SUFFIX(w + (size_t)(r + i) * cols + jj) * x[(size_t)(t + k) * cols + jj];           \
        out[(size_t)(t + k) * rows + r + i] = s;                                                         \
      }                                                                                                  \
  }                                                                                                      \
  static void matmul_##SUFFIX(float *out, const float *x, const WT *w, int rows, int cols, int n, int r0, int r1) { \
    int r = r0;                                                                                          \
    if (n == 1) {                                                                                        \
      for (; r + 4 <= r1; r += 4) block_##SUFFIX(out, x, w, rows, cols, r, 0, 4, 1);                     \
      for (; r < r1; r++) block_##SUFFIX(out, x, w, rows, cols, r, 0, 1, 1);                             \
      return;                                                                                            \
    }                                                                                                    \
    for (; r + 4 <= r1; r += 4) {                                                                        \
      int t = 0;                                                                                         \
      for (; t + 6 <= n; t += 6) block_##SUFFIX(out, x, w, rows, cols, r, t, 4, 6);                      \
      switch (n - t) {                                                                                   \
        case 5: block_##SUFFIX(out, x, w, rows, cols, r, t, 4, 5); break;                                \
        case 4: block_##SUFFIX(out, x, w, rows, cols, r, t, 4, 4); break;                                \
        case 3: block_##SUFFIX(out, x, w, rows, cols, r, t, 4, 3); break;                                \
        case 2: block_##SUFFIX(out, x, w, rows, cols, r, t, 4, 2); break;                                \
        case 1: block_##SUFFIX(out, x, w, rows, cols, r, t, 4, 1); break;                                \
        default: break;                                                                                  \
      }                                                                                                  \
    }                                                                                                    \
    for (; r < r1; r++) {                                                                                \
      int t = 0;                                                                                         \
      for (; t + 6 <= n; t += 6) block_##SUFFIX(out, x, w, rows, cols, r, t, 1, 6);                      \
      for (; t < n; t++) block_##SUFFIX(out, x, w, rows, cols, r, t, 1, 1);                              \
    }                                                                                                    \
  }

MM_BLOCK(f32, float)
MM_BLOCK(f16, uint16_t)
MM_BLOCK(bf16, uint16_t)

/* Two Q4 blocks (64 nibbles) against 64 int8 activations: 16 int32 lanes, lanes 0-7 block b,
 * lanes 8-15 block b + 1. */
static inline __m512i q4_pair_dot(const uint8_t *codes, const int8_t *xq) {
  const __m256i c = _mm256_loadu_si256((const __m256i *)codes);
  const __m256i mask = _mm256_set1_epi8(15);
  const __m256i lo = _mm256_and_si256(c, mask), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), mask);
  const __m256i b0 = _mm256_permute2x128_si256(lo, hi, 0x20), b1 = _mm256_permute2x128_si256(lo, hi, 0x31);
  const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(b0), b1, 1);
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, _mm512_loadu_si512((const void *)xq));
}

static inline __attribute__((always_inline)) void q4_rows(float *out, const q8_acts *x, const q4_weights *w, int rows,
                                                          int r, int t, const int RB) {
  const int nb = w->nb;
  const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const float *dx = x->d + (size_t)t * nb;
  __m512 acc[4];
  for (int i = 0; i < RB; i++) acc[i] = _mm512_setzero_ps();
  int b = 0;
  for (; b + 2 <= nb; b += 2) {
    const int8_t *xq = x->q + ((size_t)t * nb + b) * QK;
    const __m128 dxx = _mm_castpd_ps(_mm_load_sd((const double *)(dx + b)));
    for (int i = 0; i < RB; i++) {
      const size_t wi = (size_t)(r + i) * nb + b;
      const __m512i isum = q4_pair_dot(w->codes + wi * 16, xq);
      const __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(*(const int32_t *)(w->scales + wi))), dxx);
      const __m512 sc = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(dd));
      acc[i] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(isum), acc[i]);
    }
  }
  float tail[4] = {0, 0, 0, 0};
  if (b < nb) { /* an odd last block */
    const int8_t *xq = x->q + ((size_t)t * nb + b) * QK;
    for (int i = 0; i < RB; i++) {
      const size_t wi = (size_t)(r + i) * nb + b;
      const uint8_t *cb = w->codes + wi * 16;
      int32_t isum = 0;
      for (int j = 0; j < 16; j++) isum += (cb[j] & 15) * xq[j] + (cb[j] >> 4) * xq[j + 16];
      tail[i] = (_cvtsh_ss(w->scales[wi]) * dx[b]) * (float)isum;
    }
  }
  for (int i = 0; i < RB; i++) {
    /* the min term: sum over blocks of min · (d · sum q), one 16-lane accumulator */
    const uint16_t *mins = w->mins + (size_t)(r + i) * nb;
    const float *ds = x->dsum + (size_t)t * nb;
    __m512 m16 = _mm512_setzero_ps();
    int bb = 0;
    for (; bb + 16 <= nb; bb += 16) m16 = _mm512_fmadd_ps(load16_f16(mins + bb), _mm512_loadu_ps(ds + bb), m16);
    float m = hsum16(m16);
    for (; bb < nb; bb++) m += _cvtsh_ss(mins[bb]) * ds[bb];
    out[(size_t)t * rows + r + i] = hsum16(acc[i]) + tail[i] + m;
  }
}

static void matmul_q4(float *out, const q8_acts *x, const q4_weights *w, int rows, int n, int r0, int r1) {
  for (int t = 0; t < n; t++) {
    int r = r0;
    for (; r + 4 <= r1; r += 4) q4_rows(out, x, w, rows, r, t, 4);
    for (; r < r1; r++) q4_rows(out, x, w, rows, r, t, 1);
  }
}

const kernel_table kernels_avx512 = {
  "avx512", matmul_f32, matmul_f16, matmul_bf16, matmul_q4, quantize_acts, NULL, NULL,
};
#endif
