/* AVX-512 (F, BW, VL, VNNI) kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni
 * -mfma -mf16c; chosen at run time where the CPU has them). 32 vector registers allow 4 rows x 6
 * tokens of accumulators; VNNI's vpdpbusd multiplies and sums 4-bit codes with int8 activations
 * in one instruction. Reductions keep a fixed order per output (batch invariant). Attention over
 * the quantized planes uses 512-bit blocks (vpdpbusd for the keys' dots, the int16 query in two
 * byte halves; vpdpwssd for the values' int16 weight pairs) inside the attention driver compiled
 * at 16 lanes (attention_avx512.c);
 * attention over sparse lists is the AVX2 head. The F32/F16/BF16 matmuls are matmul_fp.h's. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <string.h>
#include "kernels.h"
#include "attention_blocks.h"
#include "simd_avx2.h"
#include "matmul_fp.h" /* matmul_f32, matmul_f16, matmul_bf16 at 16 lanes */
#include "simd512.h"

/* quantize_acts at 16 lanes, the same codes and scales bit for bit: the block's largest |x| is
 * exact in any order, and each code is rint(x · inv) (vcvtps2dq rounds to nearest even, as rintf);
 * a short last block goes to the scalar one. */
static void quantize_acts_vec512(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t0,
                                 int t1) {
  const int whole = cols / QK;
  for (int t = t0; t < t1; t++) {
    for (int b = 0; b < whole; b++) {
      const float *xb = x + (size_t)t * cols + (size_t)b * QK;
      const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
      /* maxps(a, b) = a > b ? a : b: a NaN element leaves the running maximum, as a > amax does */
      const __m512 m = _mm512_max_ps(_mm512_abs_ps(x1), _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps()));
      const float amax = _mm512_reduce_max_ps(m);
      const float dd = amax / 127.0f;
      const float inv = dd > 0 ? 1.0f / dd : 0.0f;
      const __m512 iv = _mm512_set1_ps(inv);
      const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, iv)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, iv));
      int8_t *qb = q + ((size_t)t * nb + b) * QK;
      _mm_storeu_si128((__m128i *)qb, _mm512_cvtepi32_epi8(q0));
      _mm_storeu_si128((__m128i *)(qb + 16), _mm512_cvtepi32_epi8(q1));
      const int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
      d[(size_t)t * nb + b] = dd;
      sum[(size_t)t * nb + b] = s;
      dsum[(size_t)t * nb + b] = dd * (float)s;
    }
    if (whole < nb) quantize_acts_block(q, d, sum, dsum, x, cols, nb, t, whole);
  }
}

/* Activations for the AVX-512 4-bit kernel: 4 blocks per load in every whole group of 4 (act_halves_first). */
static void quantize_acts512(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t0, int t1) {
  quantize_acts_vec512(q, d, sum, dsum, x, cols, nb, t0, t1);
  act_halves_first(q, nb, 4, 4, t0, t1);
}

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
  /* 16 blocks at a time (activations reordered by quantize_acts512): their 16 scales times the
   * activation scales converted once per row and permuted to each block's lanes; the minimum term
   * summed in the same pass */
  const __m512i quarters = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i nib = _mm512_set1_epi8(15);
  const float *ds = x->dsum + (size_t)t * nb;
  __m512 m16[4]; /* the min term: sum over blocks of min · (d · sum q), one 16-lane accumulator per row */
  for (int i = 0; i < RB; i++) m16[i] = _mm512_setzero_ps();
  for (; b + 16 <= nb; b += 16) {
    const __m512 dx16 = _mm512_loadu_ps(dx + b), ds16 = _mm512_loadu_ps(ds + b);
    __m512 s16[4];
    for (int i = 0; i < RB; i++) {
      s16[i] = _mm512_mul_ps(vw_load_f16(w->scales + (size_t)(r + i) * nb + b), dx16);
      m16[i] = _mm512_fmadd_ps(vw_load_f16(w->mins + (size_t)(r + i) * nb + b), ds16, m16[i]);
    }
    for (int k = 0; k < 4; k++) { /* 4 blocks: 64 code bytes per row against the reordered activations */
      const int8_t *xq = x->q + ((size_t)t * nb + b + 4 * k) * QK;
      const __m512i xlo = _mm512_loadu_si512((const void *)xq), xhi = _mm512_loadu_si512((const void *)(xq + 64));
      /* int32 lane l holds block b + 4k + l / 4 */
      const __m512i idx = _mm512_add_epi32(quarters, _mm512_set1_epi32(4 * k));
      for (int i = 0; i < RB; i++) {
        const size_t wi = (size_t)(r + i) * nb + b + 4 * k;
        _mm_prefetch((const char *)(w->codes + (wi + (size_t)RB * nb) * 16), _MM_HINT_T0);
        if (k == 0 && (b & 31) == 0) { /* one line holds 32 scales (minimums) */
          _mm_prefetch((const char *)(w->scales + wi + (size_t)RB * nb), _MM_HINT_T0);
          _mm_prefetch((const char *)(w->mins + wi + (size_t)RB * nb), _MM_HINT_T0);
        }
        const __m512i c = _mm512_loadu_si512((const void *)(w->codes + wi * 16));
        const __m512i lo = _mm512_and_si512(c, nib), hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
        const __m512i isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo), hi, xhi);
        acc[i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, s16[i]), _mm512_cvtepi32_ps(isum), acc[i]);
      }
    }
  }
  /* whole groups of 4 blocks past the last 16 (reordered as well): one load of 64 code bytes per
   * row, as in the step above, with the 4 scales of the group (a row of 256 columns is 8 blocks) */
  for (; b + 4 <= nb; b += 4) {
    const int8_t *xq = x->q + ((size_t)t * nb + b) * QK;
    const __m512i xlo = _mm512_loadu_si512((const void *)xq), xhi = _mm512_loadu_si512((const void *)(xq + 64));
    const __m128 dx4 = _mm_loadu_ps(dx + b);
    for (int i = 0; i < RB; i++) {
      const size_t wi = (size_t)(r + i) * nb + b;
      _mm_prefetch((const char *)(w->codes + (wi + (size_t)RB * nb) * 16), _MM_HINT_T0);
      const __m128 s4 = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(w->scales + wi))), dx4);
      const __m512i c = _mm512_loadu_si512((const void *)(w->codes + wi * 16));
      const __m512i lo = _mm512_and_si512(c, nib), hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
      const __m512i isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo), hi, xhi);
      acc[i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(s4)), _mm512_cvtepi32_ps(isum), acc[i]);
    }
  }
  for (; b + 2 <= nb; b += 2) {
    const int8_t *xq = x->q + ((size_t)t * nb + b) * QK;
    const __m128 dxx = _mm_castpd_ps(_mm_load_sd((const double *)(dx + b)));
    for (int i = 0; i < RB; i++) {
      const size_t wi = (size_t)(r + i) * nb + b;
      /* rows are short streams that the hardware prefetchers start late: fetch the same blocks of
       * the next group of rows (and their scales and minimums) one group ahead; prefetches past
       * the end of the matrix never fault */
      _mm_prefetch((const char *)(w->codes + (wi + (size_t)RB * nb) * 16), _MM_HINT_T0);
      if ((b & 31) == 0) {
        _mm_prefetch((const char *)(w->scales + wi + (size_t)RB * nb), _MM_HINT_T0);
        _mm_prefetch((const char *)(w->mins + wi + (size_t)RB * nb), _MM_HINT_T0);
      }
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
  const int b16 = nb & ~15;
  if (b16 < nb) { /* the blocks past the last 16: their min terms in the same lanes, masked (a scalar chain cost a quarter of a row at 256 columns) */
    const __mmask16 k = (__mmask16)((1u << (nb - b16)) - 1);
    const __m512 ds16 = _mm512_maskz_loadu_ps(k, ds + b16);
    for (int i = 0; i < RB; i++)
      m16[i] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, w->mins + (size_t)(r + i) * nb + b16)), ds16, m16[i]);
  }
  if (RB == 4) /* four rows of one token are adjacent in out */
    _mm_storeu_ps(out + (size_t)t * rows + r, _mm_add_ps(_mm_add_ps(vw_hsum4(acc[0], acc[1], acc[2], acc[3]), _mm_loadu_ps(tail)),
                                                         vw_hsum4(m16[0], m16[1], m16[2], m16[3])));
  else
    for (int i = 0; i < RB; i++) out[(size_t)t * rows + r + i] = vw_hsum(acc[i]) + tail[i] + vw_hsum(m16[i]);
}

/* Tokens in blocks, rows in fours inner (kernels.h TOKEN_BLOCKED_ROWS). */
static void matmul_q4(float *out, const q8_acts *x, const q4_weights *w, int rows, int n, int r0, int r1) {
  TOKEN_BLOCKED_ROWS(q4_rows, 4, out, x, w, rows, n, r0, r1)
}

/* Two Q8 blocks (64 signed codes) against 64 int8 activations, 16 int32 lanes (lanes 0-7 block b,
 * 8-15 block b + 1), exact: vpdpbusd multiplies unsigned by signed bytes, so the codes are offset
 * to q + 128 (a flip of their top bit) and the accumulator starts at -128 · Σ x per lane (corr,
 * shared by all rows of a token). */
static inline __m512i q8_pair_dot(const int8_t *codes, __m512i xq, __m512i corr) {
  const __m512i u = _mm512_xor_si512(_mm512_loadu_si512((const void *)codes), _mm512_set1_epi8((char)0x80));
  return _mm512_dpbusd_epi32(corr, u, xq);
}

static inline __m512i q8_corr(__m512i xq) {
  return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), xq));
}

/* The 8-bit matvec streams its rows 4 at a time and prefetches 8 rows ahead (the same block): at
 * Llama-3.2-1B's head (128256 x 2048) that took it from 8.1-9.2 ms (2 rows, the next pair
 * prefetched) to 6.5-7.3 ms; 16 and 32 rows ahead were no better. */
#define Q8_PF 8
static inline __attribute__((always_inline)) void q8_rows(float *out, const q8_acts *x, const q8_weights *w, int rows,
                                                          int r, int t, const int RB) {
  const int nb = w->nb;
  const float *dx = x->d + (size_t)t * nb;
  const int8_t *xt = x->q + (size_t)t * nb * QK;
  __m512 acc[4];
  for (int i = 0; i < RB; i++) acc[i] = _mm512_setzero_ps();
  int b = 0;
  /* 16 blocks at a time: their scales times the activation scales converted once per row and
   * permuted to each pair's lanes */
  for (; b + 16 <= nb; b += 16) {
    const __m512 dx16 = _mm512_loadu_ps(dx + b);
    __m512 s16[4];
    for (int i = 0; i < RB; i++) s16[i] = _mm512_mul_ps(vw_load_f16(w->scales + (size_t)(r + i) * nb + b), dx16);
    for (int k = 0; k < 8; k++) {
      const __m512i xq = _mm512_loadu_si512((const void *)(xt + (size_t)(b + 2 * k) * QK)), corr = q8_corr(xq);
      const __m512i idx = _mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                           2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k);
      for (int i = 0; i < RB; i++) {
        const size_t wi = (size_t)(r + i) * nb + b + 2 * k;
        _mm_prefetch((const char *)(w->codes + (wi + (size_t)Q8_PF * nb) * QK), _MM_HINT_T0);
        if (k == 0 && (b & 31) == 0) _mm_prefetch((const char *)(w->scales + wi + (size_t)Q8_PF * nb), _MM_HINT_T0);
        acc[i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, s16[i]), _mm512_cvtepi32_ps(q8_pair_dot(w->codes + wi * QK, xq, corr)), acc[i]);
      }
    }
  }
  /* pairs past the last 16, and an odd last block with the lanes of its missing partner zero */
  const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  for (; b < nb; b += 2) {
    const int one = b + 1 == nb;
    const __mmask64 kx = one ? 0xffffffffull : ~0ull;
    const __m512i xq = _mm512_maskz_loadu_epi8(kx, xt + (size_t)b * QK), corr = q8_corr(xq);
    const __m128 dd = _mm_maskz_loadu_ps(one ? 1 : 3, dx + b);
    for (int i = 0; i < RB; i++) {
      const size_t wi = (size_t)(r + i) * nb + b;
      _mm_prefetch((const char *)(w->codes + (wi + (size_t)Q8_PF * nb) * QK), _MM_HINT_T0);
      const __m128 sc = _mm_mul_ps(_mm_cvtph_ps(_mm_maskz_loadu_epi16(one ? 1 : 3, w->scales + wi)), dd);
      /* masked loads: a last odd block of the last row has no bytes after it */
      const __m512i u = _mm512_maskz_xor_epi32(one ? 0x00ff : 0xffff, _mm512_maskz_loadu_epi8(kx, w->codes + wi * QK),
                                                _mm512_set1_epi8((char)0x80));
      acc[i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(halves, _mm512_castps128_ps512(sc)),
                               _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr, u, xq)), acc[i]);
    }
  }
  if (RB == 4)
    _mm_storeu_ps(out + (size_t)t * rows + r, vw_hsum4(acc[0], acc[1], acc[2], acc[3]));
  else
    for (int i = 0; i < RB; i++) out[(size_t)t * rows + r + i] = vw_hsum(acc[i]);
}

/* Tokens in blocks, rows in fours inner (kernels.h TOKEN_BLOCKED_ROWS). */
static void matmul_q8(float *out, const q8_acts *x, const q8_weights *w, int rows, int n, int r0, int r1) {
  TOKEN_BLOCKED_ROWS(q8_rows, 4, out, x, w, rows, n, r0, r1)
}

/* ---- attention over the planes -------------------------------------------------------------- */

/* Keys over the planes, vectorised across positions: the codes of up to 16 positions (one
 * 64-channel chunk of one KV head) are transposed and decoded to bytes so that a vector holds the
 * same 4 channels of 16 positions; vpdpbusd with a query's 4 channels broadcast then sums 16
 * positions' dots at once, with no horizontal sums, and the decoded codes serve every pair of the
 * KV head. The int16 query q = 256·qh + ql is taken in two signed-byte halves: Σ q·code =
 * 256·Σ qh·code + Σ (ql − 128)·code + 128·Σ code, all in int32 (wrapping exactly as the int16
 * products of the AVX2 path do), so the scores equal the AVX2 ones bit for bit. */

/* Chunk m (channels 64m..64m+63) of plane row i's codes (INT4: u; INT8: 16u + l8) as bytes: even
 * channels, then odd; a head's last chunk of 32 channels leaves bytes 16-31 and 48-63 zero. The
 * AMX value tiles decode rows with it; the key blocks take the same order from codes_transposed. */
static inline __m512i plane_codes(const uint8_t *upper, const uint8_t *lower, size_t rb, int half, int i, int m, const int BITS) {
  const int tail = half - 32 * m < 32;
  const uint8_t *up = upper + (size_t)i * rb + 32 * m;
  __m512i u = tail ? _mm512_broadcast_i64x4(_mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)up)))
                   : _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)up));
  if (BITS == 4) return _mm512_and_si512(_mm512_mask_srli_epi16(u, 0xffff0000u, u, 4), _mm512_set1_epi8(15));
  const uint8_t *lw = lower + (size_t)i * rb + 32 * m;
  __m512i l = tail ? _mm512_broadcast_i64x4(_mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)lw)))
                   : _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)lw));
  /* even channel: (u & 15) << 4 | (l & 15); odd: (u & 0xf0) | l >> 4 */
  u = _mm512_mask_slli_epi16(u, 0x0000ffffu, u, 4);
  l = _mm512_mask_srli_epi16(l, 0xffff0000u, l, 4);
  return _mm512_ternarylogic_epi32(u, l, _mm512_set1_epi8((char)0xf0), 0xe4); /* (u & 0xf0) | (l & ~0xf0) */
}

/* The int16 query of pair r, chunk m, as signed bytes qh = q >> 8 and ql − 128 = (q & 255) − 128,
 * in the order plane_codes (and codes_transposed) gives the channels. */
static inline void query_bytes(const key_args *a, int r, int m, int32_t qh[16], int32_t ql[16]) {
  const int n16 = a->half - 32 * m < 32 ? 16 : 32;
  const __mmask32 lanes = n16 == 32 ? 0xffffffffu : 0xffffu;
  const __m512i qe = _mm512_maskz_loadu_epi16(lanes, a->qlo + (size_t)r * a->half + 32 * m);
  const __m512i qo = _mm512_maskz_loadu_epi16(lanes, a->qhi + (size_t)r * a->half + 32 * m);
  const __m256i flip = _mm256_set1_epi8((char)0x80);
  const __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srai_epi16(qe, 8))),
                                        _mm512_cvtepi16_epi8(_mm512_srai_epi16(qo, 8)), 1);
  const __m512i lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_xor_si256(_mm512_cvtepi16_epi8(qe), flip)),
                                        _mm256_xor_si256(_mm512_cvtepi16_epi8(qo), flip), 1);
  _mm512_storeu_si512(qh, hi);
  _mm512_storeu_si512(ql, lo);
}

/* Pairs per pass of key_block512 (their partial dots wait on the stack between chunks). */
#define KEY_PAIRS 16

/* Dword j (j < 8) of 32-byte rows 0..15 of one plane chunk, in lanes 0..15 of r[j]: rows i and
 * i + 8 share a register (one per 256-bit half), so an 8 x 8 transpose within each half puts
 * rows 0-7 in lanes 0-7 and rows 8-15 in lanes 8-15. Rows at or past n read as zero; `tail`
 * rows hold 16 bytes (a head's last 32 channels), the rest read as zero. */
static inline __attribute__((always_inline)) void plane_dwords(const uint8_t *base, size_t rb, int n, int tail, __m512i r[8]) {
  static const uint8_t zero_row[32] __attribute__((aligned(32)));
  const __mmask8 k = tail ? 0x0f : 0xff;
  __m512i x[8], t[8];
  for (int i = 0; i < 8; i++) {
    const uint8_t *a = i < n ? base + (size_t)i * rb : zero_row, *b = i + 8 < n ? base + (size_t)(i + 8) * rb : zero_row;
    x[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi32(k, a)), _mm256_maskz_loadu_epi32(k, b), 1);
  }
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
  }
  for (int h = 0; h < 2; h++) { /* rows 4h .. 4h + 3: x[4h + j] holds dword j (and j + 4) of them, per 128-bit lane */
    x[4 * h] = _mm512_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
    x[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
    x[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
    x[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
  }
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int j = 0; j < 4; j++) {
    r[j] = _mm512_permutex2var_epi64(x[j], lo, x[4 + j]);
    r[4 + j] = _mm512_permutex2var_epi64(x[j], hi, x[4 + j]);
  }
}

/* Chunk m of up to 16 positions' codes, decoded and transposed: t[k] = channels of dword k of
 * every position (positions >= n are zero), in plane_codes' channel order (t[k], k < 8: the even
 * channels of plane dword k; t[8 + k]: its odd channels). The nibble planes are transposed as
 * they are (a 16 x 8 dword transpose per plane), then split into codes. */
static inline __attribute__((always_inline)) void codes_transposed(const key_args *a, int m, const int BITS, __m512i t[16]) {
  const size_t rb = (size_t)a->rb;
  const int tail = a->half - 32 * m < 32;
  if (m == 0) {
    for (int i = 0; i < 16 && i < a->n; i++) {
      const uint8_t *up = a->up + (size_t)(i + PF_AHEAD) * rb, *lw = a->lw + (size_t)(i + PF_AHEAD) * rb;
      _mm_prefetch((const char *)up, _MM_HINT_T0);
      if (BITS == 8) _mm_prefetch((const char *)lw, _MM_HINT_T0);
      if (a->half > 32) _mm_prefetch((const char *)(up + 32), _MM_HINT_T0);
      if (BITS == 8 && a->half > 32) _mm_prefetch((const char *)(lw + 32), _MM_HINT_T0);
    }
  }
  const __m512i nib = _mm512_set1_epi8(15);
  __m512i u[8];
  plane_dwords(a->up + 32 * m, rb, a->n, tail, u);
  if (BITS == 4) {
    for (int j = 0; j < 8; j++) t[j] = _mm512_and_si512(u[j], nib), t[8 + j] = _mm512_and_si512(_mm512_srli_epi16(u[j], 4), nib);
    return;
  }
  __m512i l[8];
  plane_dwords(a->lw + 32 * m, rb, a->n, tail, l);
  const __m512i high = _mm512_set1_epi8((char)0xf0);
  for (int j = 0; j < 8; j++) { /* 16u + l8: even channel (u & 15) << 4 | (l & 15); odd (u & 0xf0) | l >> 4 */
    t[j] = _mm512_ternarylogic_epi32(_mm512_slli_epi16(u[j], 4), l[j], high, 0xe4);
    t[8 + j] = _mm512_ternarylogic_epi32(u[j], _mm512_srli_epi16(l[j], 4), high, 0xe4);
  }
}

/* Scores of pair r at the block's positions from their integer dots, as key_scores8 computes
 * them: (dq · dot + base) · scale, INT8 dots first corrected by (dot - 8 Σ q) / 16. Returns them
 * with -inf in the lanes past the block, for a running maximum. */
static inline __m512 store_scores(const key_args *a, int r, __m512i dots, const int BITS) {
  __m512 dot;
  if (BITS == 8)
    dot = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dots, _mm512_set1_epi32(8 * a->qsum[r]))), _mm512_set1_ps(1.0f / 16.0f));
  else
    dot = _mm512_cvtepi32_ps(dots);
  const __m512 sc = _mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(a->dq[r]), dot), _mm512_set1_ps(a->base[r])),
                                  _mm512_set1_ps(a->scale));
  const __mmask16 keep = a->n >= 16 ? 0xffff : (__mmask16)((1u << a->n) - 1);
  _mm512_mask_storeu_ps(a->scores + (size_t)r * a->count, keep, sc);
  return _mm512_mask_blend_ps(keep, _mm512_set1_ps(-INFINITY), sc);
}

/* The query bytes of nr pairs in a->prep, once per key group: per pair and chunk qh then ql − 128
 * as 16 dwords each, so the dot loop broadcasts them straight from memory. */
static void vnni_prepare(const key_args *a, int nr) {
  const int chunks = (a->half + 31) / 32;
  int32_t *q = (int32_t *)a->prep;
  for (int r = 0; r < nr; r++)
    for (int m = 0; m < chunks; m++) query_bytes(a, r, m, q + ((size_t)r * chunks + m) * 32, q + ((size_t)r * chunks + m) * 32 + 16);
}

/* Σ q·code of NP (1 or 2) pairs at the 16 positions of t: the high and low query bytes each in
 * two chains over halves of the channel quads (integer sums, exact in any order), so 4 NP
 * independent vpdpbusd chains hide the instruction's latency. */
static inline __attribute__((always_inline)) void pair_dots(const __m512i t[16], const int32_t *q0, const int32_t *q1, const int NP,
                                                            __m512i hi[2], __m512i lo[2]) {
  const int32_t *qb[2] = {q0, q1};
  __m512i h[2][2], l[2][2];
  for (int p = 0; p < NP; p++) h[p][0] = h[p][1] = l[p][0] = l[p][1] = _mm512_setzero_si512();
  for (int k = 0; k < 8; k++) {
    for (int p = 0; p < NP; p++) {
      const int32_t *qh = qb[p], *ql = qb[p] + 16;
      h[p][0] = _mm512_dpbusd_epi32(h[p][0], t[k], _mm512_set1_epi32(qh[k]));
      h[p][1] = _mm512_dpbusd_epi32(h[p][1], t[k + 8], _mm512_set1_epi32(qh[k + 8]));
      l[p][0] = _mm512_dpbusd_epi32(l[p][0], t[k], _mm512_set1_epi32(ql[k]));
      l[p][1] = _mm512_dpbusd_epi32(l[p][1], t[k + 8], _mm512_set1_epi32(ql[k + 8]));
    }
  }
  for (int p = 0; p < NP; p++) hi[p] = _mm512_add_epi32(h[p][0], h[p][1]), lo[p] = _mm512_add_epi32(l[p][0], l[p][1]);
}

static inline __attribute__((always_inline)) void key_block512(const key_args *a, int nr, const int BITS) {
  const int chunks = (a->half + 31) / 32;
  const int32_t *qb = (const int32_t *)a->prep;
  const __m512i ones = _mm512_set1_epi32(0x01010101);
  for (int r0 = 0; r0 < nr; r0 += KEY_PAIRS) { /* the pairs' partial dots wait on the stack between chunks */
    const int r1 = nr - r0 < KEY_PAIRS ? nr : r0 + KEY_PAIRS;
    int32_t part[KEY_PAIRS][16] __attribute__((aligned(64)));
    for (int m = 0; m < chunks; m++) {
      __m512i t[16];
      codes_transposed(a, m, BITS, t);
      __m512i cs4[4]; /* Σ code per position, in four chains */
      for (int k = 0; k < 4; k++) cs4[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), t[k], ones);
      for (int k = 4; k < 16; k++) cs4[k & 3] = _mm512_dpbusd_epi32(cs4[k & 3], t[k], ones);
      const __m512i cs128 = _mm512_slli_epi32(_mm512_add_epi32(_mm512_add_epi32(cs4[0], cs4[1]), _mm512_add_epi32(cs4[2], cs4[3])), 7);
      for (int r = r0; r < r1;) {
        const int np = r + 1 < r1 ? 2 : 1;
        const int32_t *q0 = qb + ((size_t)r * chunks + m) * 32, *q1 = qb + ((size_t)(r + np - 1) * chunks + m) * 32;
        __m512i h[2], l[2];
        if (np == 2) pair_dots(t, q0, q1, 2, h, l);
        else pair_dots(t, q0, q1, 1, h, l);
        for (int p = 0; p < np; p++, r++) {
          __m512i dot = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(h[p], 8), l[p]), cs128);
          if (m > 0) dot = _mm512_add_epi32(dot, _mm512_load_si512(part[r - r0]));
          _mm512_store_si512(part[r - r0], dot);
        }
      }
    }
    for (int r = r0; r < r1; r++) store_scores(a, r, _mm512_load_si512(part[r - r0]), BITS);
  }
}

/* vpdpwssd on registers, written as an instruction: GCC 12 compiles the intrinsic in these loops
 * with a copy of the accumulator before and after every multiply-add and spills beside them. */
static inline __attribute__((always_inline)) __m512i dpwssd_reg(__m512i acc, __m512i c, __m512i w) {
  __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(c), "v"(w));
  return acc;
}

/* The centred codes of value channels c0 .. c0 + C - 1 (C = 32 or 64) at positions i and i + 1 (an
 * odd last position pairs with itself, under a zero weight) as int16 pairs (code_i, code_i+1), C / 16
 * vectors: per 128-bit lane, pr[0] / pr[2] hold the even / odd channels of k = 0-7 and 16-23, pr[1] /
 * pr[3] those of k = 8-15 and 24-31 (C = 64); pr[0] / pr[1] the even / odd channels of k = 0-15 in
 * order (C = 32); as int32 sums, lane i of pr[0] / pr[2] is channel 2k / 2k + 1 with k = i for i < 8
 * and i + 8 from 8 on, pr[1] / pr[3] k + 8 (C = 64), and for C = 32 lane i of pr[0] / pr[1] channel
 * 2i / 2i + 1 (value_store puts them in channel order). */
static inline __attribute__((always_inline)) void value_pairs(const value_args *a, int i, int c0, const int C, const int BITS,
                                                              __m512i pr[4]) {
  const __m256i mask = _mm256_set1_epi8(15);
  const size_t rb = a->rb, next = i + 1 < a->n ? rb : 0;
  const uint8_t *u0 = a->up + c0 / 2 + (size_t)i * rb, *u1 = u0 + next;
  const uint8_t *l0 = a->lw + c0 / 2 + (size_t)i * rb, *l1 = l0 + next;
  __m256i raw[2], lraw[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
  if (C == 64) {
    raw[0] = _mm256_loadu_si256((const __m256i *)u0), raw[1] = _mm256_loadu_si256((const __m256i *)u1);
    if (BITS == 8) lraw[0] = _mm256_loadu_si256((const __m256i *)l0), lraw[1] = _mm256_loadu_si256((const __m256i *)l1);
  } else {
    raw[0] = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)u0));
    raw[1] = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)u1));
    if (BITS == 8) {
      lraw[0] = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)l0));
      lraw[1] = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)l1));
    }
  }
  __m256i ce[2], co[2];
  const __m256i high = _mm256_set1_epi8((char)0xf0);
  for (int p = 0; p < 2; p++) {
    if (BITS == 8) {
      /* the INT8 code 16u + l8 per channel (its weight is e·s/16): even channel (u & 15) << 4 | (l & 15),
       * odd (u & 0xf0) | l >> 4, each one bit select (u' & 0xf0) | (l' & ~0xf0) */
      ce[p] = _mm256_ternarylogic_epi32(_mm256_slli_epi16(raw[p], 4), lraw[p], high, 0xe4);
      co[p] = _mm256_ternarylogic_epi32(raw[p], _mm256_srli_epi16(lraw[p], 4), high, 0xe4);
    } else {
      ce[p] = _mm256_and_si256(raw[p], mask), co[p] = _mm256_and_si256(_mm256_srli_epi16(raw[p], 4), mask);
    }
  }
  /* centred codes (code - 8, INT8: code - 128) as int16 pairs (see value_args) */
  const __m256i center = _mm256_set1_epi8(BITS == 8 ? (char)128 : 8);
  for (int p = 0; p < 2; p++) ce[p] = _mm256_sub_epi8(ce[p], center), co[p] = _mm256_sub_epi8(co[p], center);
  if (C == 64) {
    pr[0] = _mm512_cvtepi8_epi16(_mm256_unpacklo_epi8(ce[0], ce[1]));
    pr[1] = _mm512_cvtepi8_epi16(_mm256_unpackhi_epi8(ce[0], ce[1]));
    pr[2] = _mm512_cvtepi8_epi16(_mm256_unpacklo_epi8(co[0], co[1]));
    pr[3] = _mm512_cvtepi8_epi16(_mm256_unpackhi_epi8(co[0], co[1]));
  } else {
    const __m128i e0 = _mm256_castsi256_si128(ce[0]), e1 = _mm256_castsi256_si128(ce[1]);
    const __m128i o0 = _mm256_castsi256_si128(co[0]), o1 = _mm256_castsi256_si128(co[1]);
    pr[0] = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(e0, e1), _mm_unpacklo_epi8(e0, e1)));
    pr[1] = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(o0, o1), _mm_unpacklo_epi8(o0, o1)));
  }
}

/* out[r, c0 ..] += dw[r] · acc in channel order, or the running sums to a->acc (a row block that does not
 * finish its value block). The lanes are put in channel order by permutes (value_pairs: for C = 64,
 * channels 0-15 interleave lanes 0-7 of acc[0] and acc[2], 16-31 those of acc[1] and acc[3], 32-47
 * and 48-63 their lanes 8-15; for C = 32 acc[0] and acc[1] interleave), then each channel gets
 * value_finish's multiply and add. */
static inline __attribute__((always_inline)) void value_store(const value_args *a, int r, int c0, const int C, const __m512i *acc,
                                                              int finish) {
  if (!finish) {
    for (int k = 0; k < C / 16; k++) _mm512_storeu_si512(a->acc + (size_t)r * a->d + c0 + 16 * k, acc[k]);
    return;
  }
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  __m512i ch[4];
  if (C == 64) {
    ch[0] = _mm512_permutex2var_epi32(acc[0], lo, acc[2]), ch[1] = _mm512_permutex2var_epi32(acc[1], lo, acc[3]);
    ch[2] = _mm512_permutex2var_epi32(acc[0], hi, acc[2]), ch[3] = _mm512_permutex2var_epi32(acc[1], hi, acc[3]);
  } else {
    ch[0] = _mm512_permutex2var_epi32(acc[0], lo, acc[1]), ch[1] = _mm512_permutex2var_epi32(acc[0], hi, acc[1]);
  }
  float *o = a->out + (size_t)r * a->d + c0;
  const __m512 dw = _mm512_set1_ps(a->dw[r]);
  for (int k = 0; k < C / 16; k++)
    _mm512_storeu_ps(o + 16 * k, _mm512_add_ps(_mm512_loadu_ps(o + 16 * k), _mm512_mul_ps(_mm512_cvtepi32_ps(ch[k]), dw)));
}

/* C (32 or 64) value channels of NR pairs over n positions, two positions per step: the codes of
 * channel c at positions i and i + 1 become one int16 pair, dotted with (W_i, W_i+1) by vpdpwssd. */
static inline __attribute__((always_inline)) void value_block512(const value_args *a, int c0, const int C, const int NR,
                                                                 const int BITS) {
  __m512i acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int k = 0; k < C / 16; k++) acc[r][k] = _mm512_loadu_si512(a->acc + (size_t)r * a->d + c0 + 16 * k);
  for (int i = 0; i < a->n; i += 2) {
    if (c0 == 0) value_prefetch(a, i, BITS); /* later passes over the same rows find them in the cache */
    __m512i pr[4];
    value_pairs(a, i, c0, C, BITS, pr);
    for (int r = 0; r < NR; r++) {
      const __m512i wv = _mm512_set1_epi32(a->w[(size_t)r * a->npw + i / 2]);
      for (int k = 0; k < C / 16; k++) acc[r][k] = dpwssd_reg(acc[r][k], pr[k], wv);
    }
  }
  for (int r = 0; r < NR; r++) value_store(a, r, c0, C, acc[r], a->finish);
}

#define VALUE_NR(C, BITS)                                                                               \
  do {                                                                                                  \
    if (nr == 4) value_block512(a, c0, C, 4, BITS); else if (nr == 3) value_block512(a, c0, C, 3, BITS); \
    else if (nr == 2) value_block512(a, c0, C, 2, BITS); else value_block512(a, c0, C, 1, BITS);         \
  } while (0)

static void values_avx512(const value_args *a, int nr, int bits) {
  int c0 = 0;
  for (; c0 + 64 <= a->d; c0 += 64) {
    if (bits == 8) VALUE_NR(64, 8); else VALUE_NR(64, 4);
  }
  if (c0 < a->d) { /* head_dim is a multiple of 32 */
    if (bits == 8) VALUE_NR(32, 8); else VALUE_NR(32, 4);
  }
}
#undef VALUE_NR

/* Σ W·code of pairs r0 .. r0 + NR - 1, channels c0 .. c0 + C - 1, over the decoded codes of a
 * value block ([position pair, d / 16 vectors], see value_whole512), finished into out. */
static inline __attribute__((always_inline)) void value_stream512(const value_args *a, const __m512i *codes, int r0, int c0,
                                                                  const int C, const int NR) {
  const int nv = a->d / 16, steps = (a->n + 1) / 2;
  __m512i acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int k = 0; k < C / 16; k++) acc[r][k] = _mm512_setzero_si512();
  const int32_t *w = a->w + (size_t)r0 * a->npw;
  for (int s = 0; s < steps; s++) {
    const __m512i *src = codes + (size_t)s * nv + c0 / 16;
    __m512i p[4];
    for (int k = 0; k < C / 16; k++) p[k] = _mm512_load_si512(src + k);
    for (int r = 0; r < NR; r++) {
      const __m512i wv = _mm512_set1_epi32(w[(size_t)r * a->npw + s]);
      for (int k = 0; k < C / 16; k++) acc[r][k] = dpwssd_reg(acc[r][k], p[k], wv);
    }
  }
  const value_args at = {a->up, a->lw, a->rb, a->n, a->w, a->npw, a->dw + r0, NULL, 1, a->out + (size_t)r0 * a->d, a->d};
  for (int r = 0; r < NR; r++) value_store(&at, r, c0, C, acc[r], 1);
}

/* A whole value block of one KV head for all nr pairs (attn_blocks.value_block): the codes are
 * decoded once into int16 pairs in a->acc (VALUE_PAIR_BYTES(d) of scratch), [position pair,
 * channel vector], then every group of up to 4 pairs streams them from L1/L2 with its sums in
 * registers, so the decode does not repeat per group of pairs. */
static inline __attribute__((always_inline)) void value_whole512(const value_args *a, int nr, const int BITS) {
  const int d = a->d, nv = d / 16;
  __m512i *codes = (__m512i *)a->acc;
  for (int i = 0; i < a->n; i += 2) {
    value_prefetch(a, i, BITS);
    __m512i *dst = codes + (size_t)(i / 2) * nv;
    int c0 = 0;
    for (; c0 + 64 <= d; c0 += 64) value_pairs(a, i, c0, 64, BITS, dst + c0 / 16);
    if (c0 < d) value_pairs(a, i, c0, 32, BITS, dst + c0 / 16);
  }
  for (int r0 = 0; r0 < nr; r0 += 4) {
    const int n_r = nr - r0 < 4 ? nr - r0 : 4;
    int c0 = 0;
    for (; c0 + 64 <= d; c0 += 64) {
      if (n_r == 4) value_stream512(a, codes, r0, c0, 64, 4); else if (n_r == 3) value_stream512(a, codes, r0, c0, 64, 3);
      else if (n_r == 2) value_stream512(a, codes, r0, c0, 64, 2); else value_stream512(a, codes, r0, c0, 64, 1);
    }
    if (c0 < d) {
      if (n_r == 4) value_stream512(a, codes, r0, c0, 32, 4); else if (n_r == 3) value_stream512(a, codes, r0, c0, 32, 3);
      else if (n_r == 2) value_stream512(a, codes, r0, c0, 32, 2); else value_stream512(a, codes, r0, c0, 32, 1);
    }
  }
}

/* KV heads with fewer pairs than this (a decode step) decode the codes in registers for each group
 * of up to 4 pairs (values_avx512): storing and reloading them costs more than it saves there. */
#define VALUE_WHOLE_MIN_PAIRS 5

static void value_whole_avx512(const value_args *a, int nr, int bits) {
  if (bits == 8) value_whole512(a, nr, 8);
  else value_whole512(a, nr, 4);
}

/* Scores of all nr pairs of one KV head (see key_block512). */
static void keys_avx512(const key_args *a, int nr, int bits) {
  if (a->fresh) vnni_prepare(a, nr);
  if (bits == 8) key_block512(a, nr, 8);
  else key_block512(a, nr, 4);
}

/* ---- peak probe (simdw.h vw_peak_fma) ------------------------------------------------------- */

static double peak_avx512(int kind, long iters) { return kind == 0 ? vw_peak_fma(iters) : 0; }

#ifdef QUANTSPEC_AMX
/* ---- AMX: the key scores as tile products ----------------------------------------------------- */
/* Tile 0 and 1 accumulate the high and low dot products C [16 pairs, 16 positions] (int32) of
 * A [16 pairs, 64 bytes] = the queries' high bytes + 128 (tile 2) and low bytes (tile 3) with
 * B [16 channel quads, 16 positions x 4 bytes] = the transposed codes (tile 4), all unsigned
 * (tdpbuud). With q = 256 qh + ql (qh signed, ql unsigned), over the channel slots:
 *   Σ q·code = 256 C0 + C1 − 2^15 Σ code,
 * exact in wrapping int32 (the tiles accumulate with wraparound, the shift and sums wrap) like
 * the other paths' int32 sums, so the scores are theirs bit for bit. */
#include "amx.h"

/* a->prep, once per key group: per chunk m the A rows of every pair (rounded up to 16, padded
 * with zeros) as [m][high, low][row][64 bytes]. Where the last tile of pairs has room, its last
 * high row is all ones instead, so its products are Σ code per position: amx_block_narrow takes
 * them from there; amx_block_wide sums the codes itself (it scores every block of a call before
 * the last tile of pairs is multiplied). */
static void amx_prepare(const key_args *a, int nr) {
  const int chunks = (a->half + 31) / 32, rows = (nr + 15) & ~15;
  uint8_t *prep = a->prep;
  const __m512i flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
  for (int r = 0; r < rows; r++) {
    for (int m = 0; m < chunks; m++) {
      uint8_t *hi = prep + ((size_t)(2 * m) * rows + r) * 64, *lo = prep + ((size_t)(2 * m + 1) * rows + r) * 64;
      if (r >= nr) {
        _mm512_store_si512(hi, r == rows - 1 ? _mm512_set1_epi8(1) : zero);
        _mm512_store_si512(lo, zero);
        continue;
      }
      int32_t qh[16], ql[16];
      query_bytes(a, r, m, qh, ql); /* qh signed, ql − 128 */
      _mm512_store_si512(hi, _mm512_xor_si512(_mm512_loadu_si512(qh), flip));
      _mm512_store_si512(lo, _mm512_xor_si512(_mm512_loadu_si512(ql), flip));
    }
  }
}

/* KEY_ROWS positions (one block of 16) for fewer than AMX_WIDE_KEY_PAIRS pairs (a verify pass).
 * Written out rather than as one block of amx_block_wide's helpers (amx_codes, AMX_PRODUCTS,
 * amx_scores): built that way a 5-query pass at pdlm's shapes took 709-716 µs against 673-677. */
static inline __attribute__((always_inline)) void amx_block_narrow(const key_args *a, int nr, const int BITS) {
  const int chunks = (a->half + 31) / 32, rows = (nr + 15) & ~15;
  const uint8_t *prep = a->prep;
  uint8_t codes[MAX_D / 64][16][64] __attribute__((aligned(64)));
  const int ones = nr < rows; /* amx_prepare's last A row of ones: the last tile of pairs gives Σ code too */
  __m512i cs = _mm512_setzero_si512(); /* Σ code per position */
  for (int m = 0; m < chunks; m++) {
    __m512i t[16];
    codes_transposed(a, m, BITS, t);
    for (int k = 0; k < 16; k++) {
      if (!ones) cs = _mm512_dpbusd_epi32(cs, t[k], _mm512_set1_epi32(0x01010101));
      _mm512_store_si512(codes[m][k], t[k]);
    }
  }
  __m512i cs15 = _mm512_slli_epi32(cs, 15);
  int32_t c0[16][16] __attribute__((aligned(64))), c1[16][16] __attribute__((aligned(64)));
  for (int r0 = rows - 16; r0 >= 0; r0 -= 16) { /* the last tile first: it holds the row of ones */
    _tile_zero(0);
    _tile_zero(1);
    for (int m = 0; m < chunks; m++) {
      _tile_loadd(2, prep + ((size_t)(2 * m) * rows + r0) * 64, 64);
      _tile_loadd(3, prep + ((size_t)(2 * m + 1) * rows + r0) * 64, 64);
      _tile_loadd(4, codes[m], 64);
      _tile_dpbuud(0, 2, 4);
      _tile_dpbuud(1, 3, 4);
    }
    _tile_stored(0, c0, 64);
    _tile_stored(1, c1, 64);
    if (ones && r0 == rows - 16) cs15 = _mm512_slli_epi32(_mm512_load_si512(c0[15]), 15); /* row rows - 1: Σ code */
    const int r1 = nr - r0 < 16 ? nr : r0 + 16;
    for (int r = r0; r < r1; r++) {
      const __m512i hi = _mm512_slli_epi32(_mm512_load_si512(c0[r - r0]), 8);
      const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(hi, _mm512_load_si512(c1[r - r0])), cs15);
      store_scores(a, r, dot, BITS);
    }
  }
}

/* A call takes up to WIDE_KEY_ROWS positions, in blocks of 16: first every block's codes are
 * transposed and stored for tile B (a tile load of bytes just stored waits for them to reach the
 * cache); then, per tile of 16 pairs (its query tiles loaded once), the blocks' products go to two
 * sets of tiles in turn (C: 0, 1 or 5, 6; B: 4 or 7), and a block's scores are read from its
 * products' stores while the next block's products run. (One block a call, each product stored
 * and read back at once, left the scores waiting on the tile unit: a 128-query chunk at 32K with
 * 32/8 heads of 64 took 112.6-114.8 ms before and 102.3-103.5 after, runs in turn.) */
#define AMX_KEY_BLOCKS (WIDE_KEY_ROWS / 16)

typedef struct {
  uint8_t codes[MAX_D / 64][16][64]; /* B: [chunk][channel quad][position x 4 bytes] */
  __m512i cs15;                      /* 2^15 Σ code per position */
} amx_key_codes;

/* The codes of positions [16b, 16b + 16) of the call as tile B rows. */
static inline __attribute__((always_inline)) void amx_codes(const key_args *a, int b, amx_key_codes *out, const int BITS) {
  const int chunks = (a->half + 31) / 32;
  key_args kb = *a;
  kb.up = a->up + (size_t)16 * b * a->rb, kb.lw = a->lw + (size_t)16 * b * a->rb, kb.n = a->n - 16 * b < 16 ? a->n - 16 * b : 16;
  __m512i cs = _mm512_setzero_si512(); /* Σ code per position */
  for (int m = 0; m < chunks; m++) {
    __m512i t[16];
    codes_transposed(&kb, m, BITS, t);
    for (int k = 0; k < 16; k++) {
      cs = _mm512_dpbusd_epi32(cs, t[k], _mm512_set1_epi32(0x01010101));
      _mm512_store_si512(out->codes[m][k], t[k]);
    }
  }
  out->cs15 = _mm512_slli_epi32(cs, 15);
}

/* C0 (high query bytes) and C1 (low) of the query tiles' pairs against one block's codes in tiles
 * T0, T1 (C) and TB (B), stored to c0 and c1; with one chunk the caller loads the query tiles (2,
 * 3), with more they are loaded per chunk from pair row r0. */
#define AMX_PRODUCTS(T0, T1, TB, a, r0, rows, k, c0, c1)                                 \
  do {                                                                                  \
    const int chunks_ = ((a)->half + 31) / 32;                                          \
    _tile_zero(T0);                                                                     \
    _tile_zero(T1);                                                                     \
    for (int m_ = 0; m_ < chunks_; m_++) {                                              \
      if (chunks_ > 1) {                                                                \
        _tile_loadd(2, (a)->prep + ((size_t)(2 * m_) * (rows) + (r0)) * 64, 64);        \
        _tile_loadd(3, (a)->prep + ((size_t)(2 * m_ + 1) * (rows) + (r0)) * 64, 64);    \
      }                                                                                 \
      _tile_loadd(TB, (k)->codes[m_], 64);                                              \
      _tile_dpbuud(T0, 2, TB);                                                          \
      _tile_dpbuud(T1, 3, TB);                                                          \
    }                                                                                   \
    _tile_stored(T0, (c0), 64);                                                         \
    _tile_stored(T1, (c1), 64);                                                         \
  } while (0)

/* Scores of pairs r0 .. r0 + n_r - 1 (n_r <= 16) at block b's positions from its products, with
 * their running maximum in mx[i] for pair r0 + i. The rows are unrolled so that mx stays in
 * registers. */
static inline __attribute__((always_inline)) void amx_scores(const key_args *a, int b, int r0, int n_r, const amx_key_codes *k,
                                                             int32_t c0[16][16], int32_t c1[16][16], __m512 mx[16], const int BITS) {
  key_args kb = *a;
  kb.scores = a->scores + 16 * b, kb.n = a->n - 16 * b < 16 ? a->n - 16 * b : 16;
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++) {
    if (i >= n_r) break;
    const __m512i hi = _mm512_slli_epi32(_mm512_load_si512(c0[i]), 8);
    const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(hi, _mm512_load_si512(c1[i])), k->cs15);
    mx[i] = _mm512_max_ps(mx[i], store_scores(&kb, r0 + i, dot, BITS));
  }
}

static inline __attribute__((always_inline)) void amx_block_wide(const key_args *a, int nr, const int BITS) {
  const int chunks = (a->half + 31) / 32, rows = (nr + 15) & ~15, nblk = (a->n + 15) / 16;
  amx_key_codes k[AMX_KEY_BLOCKS] __attribute__((aligned(64)));
  int32_t c0[2][16][16] __attribute__((aligned(64))), c1[2][16][16] __attribute__((aligned(64)));
  for (int b = 0; b < nblk; b++) amx_codes(a, b, &k[b], BITS);
  for (int r0 = 0; r0 < nr; r0 += 16) {
    if (chunks == 1) {
      _tile_loadd(2, a->prep + (size_t)r0 * 64, 64);
      _tile_loadd(3, a->prep + ((size_t)rows + r0) * 64, 64);
    }
    const int n_r = nr - r0 < 16 ? nr - r0 : 16;
    __m512 mx[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) mx[i] = _mm512_set1_ps(-INFINITY);
    for (int b = 0; b < nblk; b++) {
      if (b & 1) AMX_PRODUCTS(5, 6, 7, a, r0, rows, &k[b], c0[1], c1[1]);
      else AMX_PRODUCTS(0, 1, 4, a, r0, rows, &k[b], c0[0], c1[0]);
      if (b > 0) amx_scores(a, b - 1, r0, n_r, &k[b - 1], c0[(b - 1) & 1], c1[(b - 1) & 1], mx, BITS);
    }
    amx_scores(a, nblk - 1, r0, n_r, &k[nblk - 1], c0[(nblk - 1) & 1], c1[(nblk - 1) & 1], mx, BITS);
    if (a->smax) {
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) {
        if (i >= n_r) break;
        float *m = a->smax + (size_t)(r0 + i) * 16;
        _mm512_store_ps(m, _mm512_max_ps(_mm512_load_ps(m), mx[i]));
      }
    }
  }
}
#undef AMX_PRODUCTS

/* KV heads with at least this many pairs (a prompt chunk) take keys WIDE_KEY_ROWS positions a call.
 * With fewer (a verify pass: one tile of pairs) the wide calls were slower, 725-738 against
 * 678-681 µs for pdlm's shapes at 32K (bench: a throwaway script, runs in turn), the tile unit
 * idling while four blocks are transposed. */
#define AMX_WIDE_KEY_PAIRS 32

/* Values as tile products, one whole value block of one KV head for all pairs: C [16 pairs, 16
 * channels] accumulates A [16 pairs, 64 positions] = the int16 weights' high and low bytes
 * (unsigned: W >= 0) times B [16 position quads, 16 channels x 4] = the centred codes, so
 * Σ W·code = 256 C0 + C1 exactly, as the other paths sum it. The codes of 4 positions become B
 * rows by two rounds of byte and word interleaving, which leaves channel byte 16L + 4j + i of a
 * decoded 64-channel row in lane 4L + i of group j. */
static inline __attribute__((always_inline)) void value_tiles_build(const value_args *a, uint8_t *tiles, int fetch, const int BITS) {
  const int chunks = (a->d + 63) / 64, groups = 4 * chunks, steps = (a->n + 63) / 64;
  const __m512i center = _mm512_set1_epi8(BITS == 8 ? (char)0x80 : 8);
  for (int s = 0; s < steps; s++) {
    for (int q = 0; q < 16; q++) { /* positions 64s + 4q .. + 3: row q of the step's B tiles */
      if (fetch) { /* their rows PF_AHEAD positions on (into the next call's block) */
        value_prefetch(a, 64 * s + 4 * q, BITS);
        value_prefetch(a, 64 * s + 4 * q + 2, BITS);
      }
      for (int m = 0; m < chunks; m++) {
        __m512i r[4];
        for (int p = 0; p < 4; p++) {
          const int i = 64 * s + 4 * q + p;
          if (i >= a->n) {
            r[p] = _mm512_setzero_si512();
            continue;
          }
          const __m512i codes = plane_codes(a->up, a->lw, (size_t)a->rb, a->d / 2, i, m, BITS);
          r[p] = BITS == 8 ? _mm512_xor_si512(codes, center) : _mm512_sub_epi8(codes, center);
        }
        const __m512i x0 = _mm512_unpacklo_epi8(r[0], r[1]), x1 = _mm512_unpackhi_epi8(r[0], r[1]);
        const __m512i y0 = _mm512_unpacklo_epi8(r[2], r[3]), y1 = _mm512_unpackhi_epi8(r[2], r[3]);
        const __m512i z[4] = {_mm512_unpacklo_epi16(x0, y0), _mm512_unpackhi_epi16(x0, y0), _mm512_unpacklo_epi16(x1, y1),
                              _mm512_unpackhi_epi16(x1, y1)};
        for (int j = 0; j < 4; j++) _mm512_store_si512(tiles + (((size_t)s * groups + 4 * m + j) * 16 + q) * 64, z[j]);
      }
    }
  }
}

/* Channel of lane n of value group j (see value_tiles_build), or -1 for a padding lane. */
static inline int value_lane_channel(int j, int n, int d) {
  const int m = j / 4, b = 16 * (n >> 2) + 4 * (j & 3) + (n & 3);
  const int c = 64 * m + (b < 32 ? 2 * b : 2 * (b - 32) + 1);
  const int tail = d - 64 * m < 64;
  return tail && (b & 31) >= 16 ? -1 : c;
}

static inline __attribute__((always_inline)) void amx_value_block(const value_args *a, int nr, const int BITS) {
  const int d = a->d, groups = 4 * ((d + 63) / 64), steps = (a->n + 63) / 64;
  uint8_t *tiles = (uint8_t *)a->acc;
  /* a verify pass's rows are prefetched; a prompt chunk's tile products hide their loads */
  value_tiles_build(a, tiles, nr < AMX_WIDE_KEY_PAIRS, BITS);
  uint8_t wt[VALUE_BLOCK / 64][2][16][64] __attribute__((aligned(64))); /* A: weight bytes [step][high, low][pair][position] */
  int32_t c0[16][16] __attribute__((aligned(64))), c1[16][16] __attribute__((aligned(64)));
  int32_t sums[16][MAX_D] __attribute__((aligned(64))); /* Σ W·code of each pair of the tile, in lane order (group j, lane n at 16j + n) */
  int32_t lane_of[MAX_D] __attribute__((aligned(64)));  /* lane_of[channel]: where its sum is in sums[r] */
  for (int j = 0; j < groups; j++)
    for (int n = 0; n < 16; n++) {
      const int ch = value_lane_channel(j, n, d);
      if (ch >= 0) lane_of[ch] = 16 * j + n;
    }
  for (int r0 = 0; r0 < nr; r0 += 16) {
    const int r1 = nr - r0 < 16 ? nr : r0 + 16;
    for (int r = r0; r < r0 + 16; r++) {
      const int16_t *w = (const int16_t *)(a->w + (size_t)r * a->npw);
      for (int s = 0; s < steps; s++) {
        __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
        if (r < r1) {
          const int left = a->n - 64 * s;
          const __mmask32 k0 = left >= 32 ? 0xffffffffu : (__mmask32)((1ull << left) - 1);
          const __mmask32 k1 = left >= 64 ? 0xffffffffu : left <= 32 ? 0 : (__mmask32)((1ull << (left - 32)) - 1);
          const __m512i w0 = _mm512_maskz_loadu_epi16(k0, w + 64 * s), w1 = _mm512_maskz_loadu_epi16(k1, w + 64 * s + 32);
          hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(w0, 8))), _mm512_cvtepi16_epi8(_mm512_srli_epi16(w1, 8)), 1);
          lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(w0)), _mm512_cvtepi16_epi8(w1), 1);
        }
        _mm512_store_si512(wt[s][0][r - r0], hi);
        _mm512_store_si512(wt[s][1][r - r0], lo);
      }
    }
    for (int j = 0; j < groups; j++) {
      _tile_zero(0);
      _tile_zero(1);
      for (int s = 0; s < steps; s++) {
        _tile_loadd(2, wt[s][0], 64);
        _tile_loadd(3, wt[s][1], 64);
        _tile_loadd(4, tiles + ((size_t)s * groups + j) * 16 * 64, 64);
        _tile_dpbusd(0, 2, 4);
        _tile_dpbusd(1, 3, 4);
      }
      _tile_stored(0, c0, 64);
      _tile_stored(1, c1, 64);
      for (int r = r0; r < r1; r++) /* 256 C0 + C1, wrapping like the int32 sums of the other paths */
        _mm512_store_si512(sums[r - r0] + 16 * j, _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(c0[r - r0]), 8), _mm512_load_si512(c1[r - r0])));
    }
    /* out[c] += dw · Σ[c] in channel order, 16 channels at a time: value_finish's multiply and add */
    for (int r = r0; r < r1; r++) {
      float *o = a->out + (size_t)r * d;
      const __m512 dw = _mm512_set1_ps(a->dw[r]);
      for (int c = 0; c < d; c += 16) {
        const __m512 s = _mm512_cvtepi32_ps(_mm512_i32gather_epi32(_mm512_load_si512(lane_of + c), sums[r - r0], 4));
        _mm512_storeu_ps(o + c, _mm512_add_ps(_mm512_loadu_ps(o + c), _mm512_mul_ps(s, dw)));
      }
    }
  }
}

static void value_block_amx(const value_args *a, int nr, int bits) {
  amx_tiles();
  if (bits == 8) amx_value_block(a, nr, 8);
  else amx_value_block(a, nr, 4);
}

/* KV heads with fewer pairs than this (a decode step) take the VNNI blocks: the tiles' fixed cost
 * (building A and B, 16-row products) only pays for many pairs. Measured with bench/kernels. */
#define AMX_MIN_PAIRS 8

static void keys_amx(const key_args *a, int nr, int bits) {
  if (nr < AMX_MIN_PAIRS) { /* KEY_ROWS positions a call (AMX_WIDE_KEY_PAIRS > AMX_MIN_PAIRS) */
    keys_avx512(a, nr, bits);
    return;
  }
  amx_tiles();
  if (a->fresh) amx_prepare(a, nr);
  if (nr >= AMX_WIDE_KEY_PAIRS) {
    if (bits == 8) amx_block_wide(a, nr, 8);
    else amx_block_wide(a, nr, 4);
  } else {
    if (bits == 8) amx_block_narrow(a, nr, 8);
    else amx_block_narrow(a, nr, 4);
  }
}

static double peak_amx(int kind, long iters) { return kind == 1 ? amx_peak_tiles(iters) : vw_peak_fma(iters); }

static const attn_blocks amx_blocks = {keys_amx, values_avx512, value_block_amx, AMX_MIN_PAIRS, AMX_WIDE_KEY_PAIRS};

static void attention_rows_amx(const attn_args *a, int q0, int q1, int p0, int p1, float *scratch, attn_partial *part,
                               float *outp) {
  attention_rows_with512(&amx_blocks, a, q0, q1, p0, p1, scratch, part, outp);
}
#endif

static const attn_blocks avx512_blocks = {keys_avx512, values_avx512, value_whole_avx512, VALUE_WHOLE_MIN_PAIRS};

static void attention_rows(const attn_args *a, int q0, int q1, int p0, int p1, float *scratch, attn_partial *part,
                           float *outp) {
  attention_rows_with512(&avx512_blocks, a, q0, q1, p0, p1, scratch, part, outp);
}

/* The entries every AVX-512 table shares. Sparse-selection attention and SiLU-gate are not bound
 * by the vector width: the AVX2 ones serve. */
#define AVX512_SHARED                 \
  .matmul_f32 = matmul_f32,           \
  .matmul_f16 = matmul_f16,           \
  .matmul_bf16 = matmul_bf16,         \
  .matmul_q4 = matmul_q4,             \
  .quantize_acts = quantize_acts512,  \
  .matmul_q8 = matmul_q8,             \
  .quantize_acts_q8 = quantize_acts_vec512, \
  .attention_head = avx2_attention_head, \
  .silu_mul = avx2_silu_mul,          \
  .row_to_f32 = avx2_row_to_f32,      \
  .q4_range = avx2_q4_range,          \
  .q4_codes = avx2_q4_codes,          \
  .q8_codes = avx2_q8_codes,          \
  .kv_quantize = avx2_kv_quantize,    \
  .f32_to_f16 = avx2_f32_to_f16

const kernel_table kernels_avx512 = {
  .name = "avx512",
  AVX512_SHARED,
  .attention_rows = attention_rows,
  .peak_flops = peak_avx512,
};
#ifdef QUANTSPEC_AVX512BF16
static double peak_avx512_bf16(int kind, long iters) { return kind == 1 ? dp_peak_bf16(iters) : vw_peak_fma(iters); }

/* The AVX-512 table, with the prompt matmuls of BF16 weights as vdpbf16ps dot products where the
 * CPU has AVX512_BF16 (and no AMX). Its name stays avx512: the attention and decode kernels are
 * the same. */
const kernel_table kernels_avx512_bf16 = {
  .name = "avx512",
  AVX512_SHARED,
  .attention_rows = attention_rows,
  .gemm_acts_bf16 = gemm_acts_pairs,
  .gemm_dtypes = 1 << 2, /* BF16 weights; F16 ones take the exact matmul (faster here, measured) */
  .gemm_bf16 = dp_gemm_bf16,
  .peak_flops = peak_avx512_bf16,
};
#endif
#ifdef QUANTSPEC_AMX
/* The AVX-512 table with the key scores over the planes and the BF16 prompt matmuls as tile products. */
const kernel_table kernels_amx = {
  .name = "amx",
  AVX512_SHARED,
  .attention_rows = attention_rows_amx,
  .gemm_acts_bf16 = gemm_acts_pairs,
  .gemm_dtypes = 1 << 1 | 1 << 2,
  .gemm_bf16 = amx_gemm_bf16,
  .peak_flops = peak_amx,
};
#endif
#endif
