/* AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; chosen at run time).
 *
 * matmul (matmul_fp.h, shared with AVX-512): one 8-lane accumulator per (row, token) dot, so
 * results are batch invariant.
 * Q4: activations are int8 per 32-block; maddubs/madd give exact integer block sums.
 * Attention over the planes folds the per-channel key scales into the query, quantizes it to int16
 * per key group and takes integer dot products with the nibbles (upper, and lower for INT8). */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "kernels.h"
#include "attention_blocks.h"
#include "simd_avx2.h"

#include "matmul_fp.h" /* matmul_f32, matmul_f16, matmul_bf16 at 8 lanes */

/* Activations for the AVX2 4-bit kernel: 2 blocks per load in whole groups of 8 (act_halves_first). */
static void quantize_acts2(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t0, int t1) {
  quantize_acts(q, d, sum, dsum, x, cols, nb, t0, t1);
  act_halves_first(q, nb, 2, 8, t0, t1);
}

static inline __attribute__((always_inline)) void q4_rows(float *out, const q8_acts *x, const q4_weights *w, int rows,
                                                          int r, int t, const int RB) {
  const int nb = w->nb;
  const float *dx = x->d + (size_t)t * nb, *ds = x->dsum + (size_t)t * nb;
  __m256 acc[4], m8[4]; /* m8: the minimum term, Σ over blocks of min · (d · Σ q) */
  for (int i = 0; i < RB; i++) acc[i] = m8[i] = _mm256_setzero_ps();
  const __m128i mask = _mm_set1_epi8(15);
  const __m256i nib = _mm256_set1_epi8(15);
  int b = 0;
  /* 8 blocks at a time (activations reordered by quantize_acts2): 8 scales times the activation
   * scales converted once per row and permuted to each block's lanes, 2 blocks per step */
  for (; b + 8 <= nb; b += 8) {
    const __m256 dx8 = _mm256_loadu_ps(dx + b), ds8 = _mm256_loadu_ps(ds + b);
    __m256 s8[4];
    for (int i = 0; i < RB; i++) {
      s8[i] = _mm256_mul_ps(load8_f16(w->scales + (size_t)(r + i) * nb + b), dx8);
      m8[i] = _mm256_fmadd_ps(load8_f16(w->mins + (size_t)(r + i) * nb + b), ds8, m8[i]);
    }
    for (int k = 0; k < 4; k++) {
      const int8_t *xq = x->q + ((size_t)t * nb + b + 2 * k) * QK;
      const __m256i xlo = _mm256_loadu_si256((const __m256i *)xq), xhi = _mm256_loadu_si256((const __m256i *)(xq + 32));
      /* int32 lane l holds block b + 2k + l / 4 */
      const __m256i idx = _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1);
      for (int i = 0; i < RB; i++) {
        const size_t wi = (size_t)(r + i) * nb + b + 2 * k;
        if ((k & 1) == 0) _mm_prefetch((const char *)(w->codes + (wi + (size_t)RB * nb) * 16), _MM_HINT_T0);
        if (k == 0 && (b & 31) == 0) {
          _mm_prefetch((const char *)(w->scales + wi + (size_t)RB * nb), _MM_HINT_T0);
          _mm_prefetch((const char *)(w->mins + wi + (size_t)RB * nb), _MM_HINT_T0);
        }
        const __m256i c = _mm256_loadu_si256((const __m256i *)(w->codes + wi * 16));
        const __m256i lo = _mm256_and_si256(c, nib), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib);
        /* int16 pair sums stay far from saturation: |15 · 127 · 2 · 2| < 2^15 */
        const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
        const __m256i isum = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        acc[i] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s8[i], idx), _mm256_cvtepi32_ps(isum), acc[i]);
      }
    }
  }
  for (; b < nb; b++) {
    const __m256i xq = _mm256_loadu_si256((const __m256i *)(x->q + ((size_t)t * nb + b) * QK));
    const __m256 dxb = _mm256_set1_ps(dx[b]);
    for (int i = 0; i < RB; i++) {
      const size_t wi = (size_t)(r + i) * nb + b;
      /* the same blocks of the next group of rows, one group ahead (see kernels_avx512.c) */
      if ((b & 3) == 0) _mm_prefetch((const char *)(w->codes + (wi + (size_t)RB * nb) * 16), _MM_HINT_T0);
      if ((b & 31) == 0) {
        _mm_prefetch((const char *)(w->scales + wi + (size_t)RB * nb), _MM_HINT_T0);
        _mm_prefetch((const char *)(w->mins + wi + (size_t)RB * nb), _MM_HINT_T0);
      }
      const __m128i packed = _mm_loadu_si128((const __m128i *)(w->codes + wi * 16));
      const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), mask), _mm_and_si128(packed, mask));
      const __m256i isum = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xq), _mm256_set1_epi16(1));
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(w->scales[wi])), dxb), _mm256_cvtepi32_ps(isum), acc[i]);
    }
  }
  for (int i = 0; i < RB; i++) {
    const uint16_t *mins = w->mins + (size_t)(r + i) * nb;
    float mt = hsum(m8[i]);
    for (int bb = nb & ~7; bb < nb; bb++) mt += _cvtsh_ss(mins[bb]) * ds[bb];
    out[(size_t)t * rows + r + i] = hsum(acc[i]) + mt;
  }
}

/* Tokens in blocks, row pairs inner (kernels.h TOKEN_BLOCKED_ROWS). */
static void matmul_q4(float *out, const q8_acts *x, const q4_weights *w, int rows, int n, int r0, int r1) {
  TOKEN_BLOCKED_ROWS(q4_rows, 2, out, x, w, rows, n, r0, r1)
}

/* ---- attention ---------------------------------------------------------------------------- */

/* s[0 .. count) = exp(s - max s) in place, vectorised; p gets the max and the sum. */
static void softmax_in_place(float *s, int count, attn_partial *p) {
  __m256 mv = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= count; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + i));
  float m = -INFINITY;
  {
    float tmp[8];
    _mm256_storeu_ps(tmp, mv);
    for (int j = 0; j < 8; j++) m = fmaxf(m, tmp[j]);
  }
  for (; i < count; i++) m = fmaxf(m, s[i]);
  const __m256 mb = _mm256_set1_ps(m);
  __m256 lv = _mm256_setzero_ps();
  for (i = 0; i + 8 <= count; i += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), mb));
    _mm256_storeu_ps(s + i, e);
    lv = _mm256_add_ps(lv, e);
  }
  float l = hsum(lv);
  for (; i < count; i++) {
    s[i] = expf(s[i] - m);
    l += s[i];
  }
  p->m = m;
  p->l = l;
}

/* Attention of one query's n_rep heads (KV head g) over full-precision rows: a sparse selection's
 * positions list[0 .. p1 - p0), or [p0, p1) when list is NULL. Dense positions, and any view with
 * planes, take attention_rows or the scalar kernel (attention.c calls this for sparse items only). */
void avx2_attention_head(const attn_args *a, int query, int g, int p0, int p1, const int32_t *list, float *scratch,
                         attn_partial *part, float *outp) {
  const kv_view *kv = a->kv;
  const int d = a->head_dim, n_rep = a->n_heads / a->n_kv_heads, kv_dim = a->n_kv_heads * d;
  if (d % 32 != 0 || n_rep > MAX_REP || kv->planes) {
    kernels_scalar.attention_head(a, query, g, p0, p1, list, scratch, part, outp);
    return;
  }
  const float scale = 1.0f / sqrtf((float)d);
  const int count = p1 - p0;
  float *scores = scratch; /* [n_rep, count] */
  const float *qh[MAX_REP];
  for (int r = 0; r < n_rep; r++) qh[r] = a->q + ((size_t)query * a->n_heads + g * n_rep + r) * d;
  for (int k = 0; k < count; k++) {
    const int t = list ? list[k] : p0 + k;
    const size_t basei = (size_t)(t - kv->fp_start) * kv_dim + (size_t)g * d;
    for (int r = 0; r < n_rep; r++) scores[(size_t)r * count + k] = dot_fp(kv, basei, qh[r], d) * scale;
  }
  for (int r = 0; r < n_rep; r++) {
    softmax_in_place(scores + (size_t)r * count, count, &part[r]);
    memset(outp + (size_t)r * d, 0, sizeof(float) * d);
  }
  for (int k = 0; k < count; k++) {
    const int t = list ? list[k] : p0 + k;
    const size_t basei = (size_t)(t - kv->fp_start) * kv_dim + (size_t)g * d;
    for (int r = 0; r < n_rep; r++) axpy_fp(outp + (size_t)r * d, scores[(size_t)r * count + k], kv, basei, d);
  }
}

/* Scores of NR query heads (sharing one KV head) against n quantized positions. NR and BITS are
 * literal constants at every call, so the accumulators stay in registers; eight positions' dots
 * are reduced together. */
static inline __attribute__((always_inline)) void key_block(const key_args *a, const int NR, const int BITS) {
  const __m128i mask = _mm_set1_epi8(15), himask = _mm_set1_epi8((char)0xf0);
  for (int i0 = 0; i0 < a->n; i0 += 8) {
    const int m = a->n - i0 < 8 ? a->n - i0 : 8;
    __m256i dots[4][8];
    for (int ii = 0; ii < 8; ii++) {
      __m256i acc[4];
      for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_si256();
      if (ii >= m) {
        for (int r = 0; r < NR; r++) dots[r][ii] = acc[r];
        continue;
      }
      const uint8_t *up = a->up + (size_t)(i0 + ii) * a->rb, *lw = a->lw + (size_t)(i0 + ii) * a->rb;
      _mm_prefetch((const char *)(up + (size_t)PF_AHEAD * a->rb), _MM_HINT_T0);
      if (BITS == 8) _mm_prefetch((const char *)(lw + (size_t)PF_AHEAD * a->rb), _MM_HINT_T0);
      for (int b = 0; b < a->half; b += 16) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)(up + b));
        __m128i ce = _mm_and_si128(raw, mask), co = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
        if (BITS == 8) {
          /* the INT8 code 16u + l8 of each channel, from both planes: one dot instead of two */
          const __m128i rl = _mm_loadu_si128((const __m128i *)(lw + b));
          ce = _mm_or_si128(_mm_slli_epi16(ce, 4), _mm_and_si128(rl, mask));
          co = _mm_or_si128(_mm_and_si128(raw, himask), _mm_and_si128(_mm_srli_epi16(rl, 4), mask));
        }
        const __m256i ue = _mm256_cvtepu8_epi16(ce), uo = _mm256_cvtepu8_epi16(co);
        for (int r = 0; r < NR; r++) {
          const __m256i qe = _mm256_loadu_si256((const __m256i *)(a->qlo + (size_t)r * a->half + b));
          const __m256i qo = _mm256_loadu_si256((const __m256i *)(a->qhi + (size_t)r * a->half + b));
          acc[r] = _mm256_add_epi32(acc[r], _mm256_add_epi32(_mm256_madd_epi16(ue, qe), _mm256_madd_epi16(uo, qo)));
        }
      }
      for (int r = 0; r < NR; r++) dots[r][ii] = acc[r];
    }
    for (int r = 0; r < NR; r++) key_scores8(a, r, hsum8x8_i32(dots[r]), i0, m, BITS);
  }
}


/* The centred codes of value channels c0 .. c0 + 15 at positions i and i + 1 (an odd last position
 * pairs with itself, under a zero weight) as int16 pairs (code_i, code_i+1): *pe the even channels
 * 0, 2, .., 14, *po the odd ones (see value_args). */
static inline __attribute__((always_inline)) void value_codes16(const value_args *a, int i, int c0, const int BITS, __m256i *pe,
                                                                __m256i *po) {
  const __m128i mask = _mm_set1_epi8(15);
  const size_t rb = a->rb, next = i + 1 < a->n ? rb : 0;
  const uint8_t *u0 = a->up + c0 / 2 + (size_t)i * rb, *u1 = u0 + next, *l0 = a->lw + c0 / 2 + (size_t)i * rb, *l1 = l0 + next;
  const __m128i r0 = _mm_loadl_epi64((const __m128i *)u0), r1 = _mm_loadl_epi64((const __m128i *)u1);
  __m128i e0 = _mm_and_si128(r0, mask), o0 = _mm_and_si128(_mm_srli_epi16(r0, 4), mask);
  __m128i e1 = _mm_and_si128(r1, mask), o1 = _mm_and_si128(_mm_srli_epi16(r1, 4), mask);
  if (BITS == 8) {
    /* the INT8 code 16u + l8 per channel; its weight is e·s/16 */
    const __m128i m0 = _mm_loadl_epi64((const __m128i *)l0), m1 = _mm_loadl_epi64((const __m128i *)l1);
    e0 = _mm_or_si128(_mm_slli_epi16(e0, 4), _mm_and_si128(m0, mask));
    o0 = _mm_or_si128(_mm_slli_epi16(o0, 4), _mm_and_si128(_mm_srli_epi16(m0, 4), mask));
    e1 = _mm_or_si128(_mm_slli_epi16(e1, 4), _mm_and_si128(m1, mask));
    o1 = _mm_or_si128(_mm_slli_epi16(o1, 4), _mm_and_si128(_mm_srli_epi16(m1, 4), mask));
  }
  /* centred codes (code - 8, INT8: code - 128) as int16 pairs (see value_args) */
  const __m128i center = _mm_set1_epi8(BITS == 8 ? (char)128 : 8);
  e0 = _mm_sub_epi8(e0, center), e1 = _mm_sub_epi8(e1, center), o0 = _mm_sub_epi8(o0, center), o1 = _mm_sub_epi8(o1, center);
  *pe = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(e0, e1)), *po = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(o0, o1));
}

/* out[r, c0 ..] += dw[r] · Σ for 16 channels whose sums are in even (channels 0, 2, .., 14) and odd. */
static inline void value_finish16(const value_args *a, int r, int c0, __m256i even, __m256i odd) {
  int32_t t[16];
  _mm256_storeu_si256((__m256i *)t, _mm256_unpacklo_epi32(even, odd));
  _mm256_storeu_si256((__m256i *)(t + 8), _mm256_unpackhi_epi32(even, odd));
  /* unpack works per 128-bit lane: t = channels 0-3, 8-11, 4-7, 12-15 */
  int32_t c[16];
  memcpy(c, t, 16), memcpy(c + 8, t + 4, 16), memcpy(c + 4, t + 8, 16), memcpy(c + 12, t + 12, 16);
  value_finish(a->out + (size_t)r * a->d + c0, c, 16, a->dw[r]);
}

/* 16 channels of NR pairs over n positions, two positions per step: the codes of channel c at
 * positions i and i + 1 become one int16 pair, multiplied with the pair (W_i, W_i+1) by vpmaddwd. */
static inline __attribute__((always_inline)) void value_block(const value_args *a, const int NR, const int BITS) {
  __m256i acc[4][2]; /* [r][0]: even channels 0, 2, .., 14; [r][1]: odd channels */
  for (int r = 0; r < NR; r++) {
    acc[r][0] = _mm256_loadu_si256((const __m256i *)(a->acc + (size_t)r * a->d));
    acc[r][1] = _mm256_loadu_si256((const __m256i *)(a->acc + (size_t)r * a->d + 8));
  }
  for (int i = 0; i < a->n; i += 2) {
    value_prefetch(a, i, BITS);
    __m256i pe, po;
    value_codes16(a, i, 0, BITS, &pe, &po);
    for (int r = 0; r < NR; r++) {
      const __m256i wv = _mm256_set1_epi32(a->w[(size_t)r * a->npw + i / 2]);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(pe, wv));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(po, wv));
    }
  }
  for (int r = 0; r < NR; r++) {
    if (!a->finish) {
      _mm256_storeu_si256((__m256i *)(a->acc + (size_t)r * a->d), acc[r][0]);
      _mm256_storeu_si256((__m256i *)(a->acc + (size_t)r * a->d + 8), acc[r][1]);
      continue;
    }
    value_finish16(a, r, 0, acc[r][0], acc[r][1]);
  }
}

/* Σ W·code of pairs r0 .. r0 + NR - 1, channels 16k .. 16k + 15, over the decoded codes of a value
 * block (see value_whole2), finished into out: value_block's integer sums and finish. */
static inline __attribute__((always_inline)) void value_stream2(const value_args *a, const __m256i *codes, int r0, int k, const int NR) {
  const int nc = a->d / 16, steps = (a->n + 1) / 2;
  __m256i acc[4][2];
  for (int r = 0; r < NR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const int32_t *w = a->w + (size_t)r0 * a->npw;
  for (int s = 0; s < steps; s++) {
    const __m256i pe = _mm256_load_si256(codes + ((size_t)s * nc + k) * 2), po = _mm256_load_si256(codes + ((size_t)s * nc + k) * 2 + 1);
    for (int r = 0; r < NR; r++) {
      const __m256i wv = _mm256_set1_epi32(w[(size_t)r * a->npw + s]);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(pe, wv));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(po, wv));
    }
  }
  for (int r = 0; r < NR; r++) value_finish16(a, r0 + r, 16 * k, acc[r][0], acc[r][1]);
}

/* A whole value block of one KV head for all nr pairs (attn_blocks.value_block): the codes are
 * decoded once into int16 pairs in a->acc ([position pair, 16-channel chunk, even | odd], 2 bytes a
 * code), then every group of up to 4 pairs streams them with its sums in registers, instead of
 * decoding them again for each group (values_avx2). */
static inline __attribute__((always_inline)) void value_whole2(const value_args *a, int nr, const int BITS) {
  const int nc = a->d / 16;
  __m256i *codes = (__m256i *)a->acc;
  for (int i = 0; i < a->n; i += 2) {
    value_prefetch(a, i, BITS);
    for (int k = 0; k < nc; k++) value_codes16(a, i, 16 * k, BITS, codes + ((size_t)(i / 2) * nc + k) * 2, codes + ((size_t)(i / 2) * nc + k) * 2 + 1);
  }
  for (int r0 = 0; r0 < nr; r0 += 4) {
    const int m = nr - r0 < 4 ? nr - r0 : 4;
    for (int k = 0; k < nc; k++) {
      if (m == 4) value_stream2(a, codes, r0, k, 4); else if (m == 3) value_stream2(a, codes, r0, k, 3);
      else if (m == 2) value_stream2(a, codes, r0, k, 2); else value_stream2(a, codes, r0, k, 1);
    }
  }
}

static void value_whole_avx2(const value_args *a, int nr, int bits) {
  if (bits == 8) value_whole2(a, nr, 8);
  else value_whole2(a, nr, 4);
}

/* KV heads with at least this many pairs (a verify pass, a prompt chunk) decode each value block
 * once (value_whole_avx2); fewer decode in registers per group of pairs (values_avx2). */
#define VALUE_WHOLE_MIN_PAIRS_AVX2 5

/* Scores of all nr pairs of one KV head, four at a time (the accumulators stay in registers). */
static void keys_avx2(const key_args *a, int nr, int bits) {
  for (int r0 = 0; r0 < nr; r0 += 4) {
    const int m = nr - r0 < 4 ? nr - r0 : 4;
    const key_args s = {a->up, a->lw, a->rb, a->half, a->qlo + (size_t)r0 * a->half, a->qhi + (size_t)r0 * a->half,
                        a->dq + r0, a->base + r0, a->qsum + r0, a->scores + (size_t)r0 * a->count, a->count, a->scale, a->n};
    if (bits == 8) {
      if (m == 4) key_block(&s, 4, 8); else if (m == 3) key_block(&s, 3, 8); else if (m == 2) key_block(&s, 2, 8); else key_block(&s, 1, 8);
    } else {
      if (m == 4) key_block(&s, 4, 4); else if (m == 3) key_block(&s, 3, 4); else if (m == 2) key_block(&s, 2, 4); else key_block(&s, 1, 4);
    }
  }
}

static void values_avx2(const value_args *args, int nr, int bits) {
  for (int c0 = 0; c0 < args->d; c0 += 16) { /* 16 channels per pass */
    value_args v = *args;
    v.up += c0 / 2, v.lw += c0 / 2, v.out += c0, v.acc += c0;
    const value_args *a = &v;
    if (bits == 8) {
      if (nr == 4) value_block(a, 4, 8); else if (nr == 3) value_block(a, 3, 8); else if (nr == 2) value_block(a, 2, 8); else value_block(a, 1, 8);
    } else {
      if (nr == 4) value_block(a, 4, 4); else if (nr == 3) value_block(a, 3, 4); else if (nr == 2) value_block(a, 2, 4); else value_block(a, 1, 4);
    }
  }
}

/* Attention of queries [q0, q1) over positions [p0, p1) (see kernel_table.attention_rows), with
 * the plane blocks of one instruction set. */
static const attn_blocks avx2_blocks = {keys_avx2, values_avx2, value_whole_avx2, VALUE_WHOLE_MIN_PAIRS_AVX2};

static void attention_rows(const attn_args *a, int q0, int q1, int p0, int p1, float *scratch, attn_partial *part,
                           float *outp) {
  attention_rows_with(&avx2_blocks, a, q0, q1, p0, p1, scratch, part, outp);
}

/* ---- peak probe (simdw.h vw_peak_fma) ------------------------------------------------------- */

static double peak_avx2(int kind, long iters) { return kind == 0 ? vw_peak_fma(iters) : 0; }

/* ---- SiLU-gate ------------------------------------------------------------------------------ */

/* gate = silu(gate) · up over 8 lanes: sigmoid(g) from e = exp(-|g|) <= 1 (exp256 takes x <= 0),
 * 1 / (1 + e) for g >= 0 and e / (1 + e) below, so it neither overflows nor cancels. */
static inline __m256 silu_mul8(__m256 g, __m256 u) {
  const __m256 e = exp256(_mm256_or_ps(g, _mm256_set1_ps(-0.0f)));
  const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, inv), inv, _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GE_OQ));
  return _mm256_mul_ps(_mm256_mul_ps(g, sig), u);
}

void avx2_silu_mul(float *gate, const float *up, int i0, int i1) {
  int i = i0;
  for (; i + 8 <= i1; i += 8) _mm256_storeu_ps(gate + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < i1) { /* the tail through the same lanes, so every element gets the same arithmetic */
    float g[8] = {0}, u[8] = {0};
    memcpy(g, gate + i, sizeof(float) * (i1 - i));
    memcpy(u, up + i, sizeof(float) * (i1 - i));
    _mm256_storeu_ps(g, silu_mul8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
    memcpy(gate + i, g, sizeof(float) * (i1 - i));
  }
}

/* ---- the 4-bit draft quantizer's leaves ------------------------------------------------------ */

void avx2_row_to_f32(float *dst, const uint16_t *src, int n, int dtype) {
  int j = 0;
  if (dtype == 1)
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, load8_f16(src + j));
  else
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, load8_bf16(src + j));
  row_to_f32_scalar(dst + j, src + j, n - j, dtype);
}

/* Eight lanes of plain comparisons: minps / maxps return their second operand when either is
 * NaN or both are equal, which is `x < m ? x : m`; NaNs are flagged on their own. */
void avx2_q4_range(const float *row, int lo, int hi, float *mn, float *mx, int *nan) {
  __m256 vlo = _mm256_set1_ps(INFINITY), vhi = _mm256_set1_ps(-INFINITY), bad = _mm256_setzero_ps();
  int j = lo;
  for (; j + 8 <= hi; j += 8) {
    const __m256 x = _mm256_loadu_ps(row + j);
    vlo = _mm256_min_ps(x, vlo);
    vhi = _mm256_max_ps(x, vhi);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  }
  float l8[8], h8[8];
  _mm256_storeu_ps(l8, vlo);
  _mm256_storeu_ps(h8, vhi);
  float tl, th;
  int tn;
  q4_range_scalar(row, j, hi, &tl, &th, &tn);
  for (int k = 0; k < 8; k++) tl = l8[k] < tl ? l8[k] : tl, th = h8[k] > th ? h8[k] : th;
  *mn = tl;
  *mx = th;
  *nan = tn | (_mm256_movemask_ps(bad) != 0);
}

/* Four codes in doubles, as q4_codes_scalar: rounding to nearest even is _mm256_round_pd's, and
 * max(q, 0) gives 0 for NaN (maxpd returns its second operand when either is NaN). */
static inline __m128i q4_codes4(__m128 x, __m256d off, __m256d inv, __m256d add) {
  __m256d q = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(x), off), inv);
  q = _mm256_add_pd(_mm256_round_pd(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), add);
  q = _mm256_min_pd(_mm256_max_pd(q, _mm256_setzero_pd()), _mm256_set1_pd(15.0));
  return _mm256_cvtpd_epi32(q);
}

void avx2_q4_codes(uint8_t *codes, const float *row, int j0, int j1, double off, double inv, double add) {
  const __m256d vo = _mm256_set1_pd(off), vi = _mm256_set1_pd(inv), va = _mm256_set1_pd(add);
  int j = j0;
  for (; j + 32 <= j1; j += 32) {
    __m128i q[8]; /* q[k]: the codes of positions j + 4k .. j + 4k + 3 */
    for (int k = 0; k < 8; k++) q[k] = q4_codes4(_mm_loadu_ps(row + j + 4 * k), vo, vi, va);
    /* byte i of the block: code i (low nibble) | code i + 16 (high nibble) */
    __m128i b[4];
    for (int k = 0; k < 4; k++) b[k] = _mm_or_si128(q[k], _mm_slli_epi32(q[k + 4], 4));
    const __m128i w = _mm_packus_epi16(_mm_packs_epi32(b[0], b[1]), _mm_packs_epi32(b[2], b[3]));
    uint8_t *dst = codes + (j >> 5) * 16;
    _mm_storeu_si128((__m128i *)dst, _mm_or_si128(_mm_loadu_si128((const __m128i *)dst), w));
  }
  q4_codes_scalar(codes, row, j, j1, off, inv, add);
}

/* Four 8-bit codes in doubles, as q8_codes_scalar: NaN lanes are zeroed before the clamp (maxpd
 * would turn them into its second operand). */
static inline __m128i q8_codes4(__m128 x, __m256d inv) {
  __m256d q = _mm256_round_pd(_mm256_mul_pd(_mm256_cvtps_pd(x), inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  q = _mm256_and_pd(q, _mm256_cmp_pd(q, q, _CMP_ORD_Q));
  q = _mm256_min_pd(_mm256_max_pd(q, _mm256_set1_pd(-127.0)), _mm256_set1_pd(127.0));
  return _mm256_cvtpd_epi32(q);
}

void avx2_q8_codes(int8_t *codes, const float *row, int j0, int j1, double inv) {
  const __m256d vi = _mm256_set1_pd(inv);
  int j = j0;
  for (; j + 16 <= j1; j += 16) {
    __m128i q[4];
    for (int k = 0; k < 4; k++) q[k] = q8_codes4(_mm_loadu_ps(row + j + 4 * k), vi);
    _mm_storeu_si128((__m128i *)(codes + j), _mm_packs_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3])));
  }
  q8_codes_scalar(codes, row, j, j1, inv);
}

/* One Q8 block (32 signed codes) against 32 int8 activations: 8 int32 lanes. maddubs multiplies
 * unsigned by signed bytes, so the codes' signs move onto the activations (|q| · sign(q)·x); the
 * int16 pair sums stay below saturation (2 · 128 · 127 < 2^15) and the block sum is exact. */
static inline __m256i q8_block_dot(const int8_t *codes, __m256i xq) {
  const __m256i c = _mm256_loadu_si256((const __m256i *)codes);
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(xq, c));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static inline __attribute__((always_inline)) void q8_rows(float *out, const q8_acts *x, const q8_weights *w, int rows,
                                                          int r, int t, const int RB) {
  const int nb = w->nb;
  const float *dx = x->d + (size_t)t * nb;
  __m256 acc[4];
  for (int i = 0; i < RB; i++) acc[i] = _mm256_setzero_ps();
  int b = 0;
  /* 8 blocks at a time: their scales times the activation scales converted once per row and
   * broadcast to each block's lanes */
  for (; b + 8 <= nb; b += 8) {
    const __m256 dx8 = _mm256_loadu_ps(dx + b);
    __m256 s8[4];
    for (int i = 0; i < RB; i++) s8[i] = _mm256_mul_ps(load8_f16(w->scales + (size_t)(r + i) * nb + b), dx8);
    for (int k = 0; k < 8; k++) {
      const __m256i xq = _mm256_loadu_si256((const __m256i *)(x->q + ((size_t)t * nb + b + k) * QK));
      const __m256i idx = _mm256_set1_epi32(k);
      for (int i = 0; i < RB; i++) {
        const size_t wi = (size_t)(r + i) * nb + b + k;
        _mm_prefetch((const char *)(w->codes + (wi + (size_t)RB * nb) * QK), _MM_HINT_T0);
        if (k == 0 && (b & 31) == 0) _mm_prefetch((const char *)(w->scales + wi + (size_t)RB * nb), _MM_HINT_T0);
        acc[i] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s8[i], idx), _mm256_cvtepi32_ps(q8_block_dot(w->codes + wi * QK, xq)), acc[i]);
      }
    }
  }
  for (; b < nb; b++) {
    const __m256i xq = _mm256_loadu_si256((const __m256i *)(x->q + ((size_t)t * nb + b) * QK));
    const __m256 dxb = _mm256_set1_ps(dx[b]);
    for (int i = 0; i < RB; i++) {
      const size_t wi = (size_t)(r + i) * nb + b;
      _mm_prefetch((const char *)(w->codes + (wi + (size_t)RB * nb) * QK), _MM_HINT_T0);
      acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(w->scales[wi])), dxb),
                               _mm256_cvtepi32_ps(q8_block_dot(w->codes + wi * QK, xq)), acc[i]);
    }
  }
  for (int i = 0; i < RB; i++) out[(size_t)t * rows + r + i] = hsum(acc[i]);
}

/* Tokens in blocks, row pairs inner (kernels.h TOKEN_BLOCKED_ROWS). */
static void matmul_q8(float *out, const q8_acts *x, const q8_weights *w, int rows, int n, int r0, int r1) {
  TOKEN_BLOCKED_ROWS(q8_rows, 2, out, x, w, rows, n, r0, r1)
}

const kernel_table kernels_avx2 = {
  .name = "avx2",
  .matmul_f32 = matmul_f32,
  .matmul_f16 = matmul_f16,
  .matmul_bf16 = matmul_bf16,
  .matmul_q4 = matmul_q4,
  .quantize_acts = quantize_acts2,
  .matmul_q8 = matmul_q8,
  .quantize_acts_q8 = quantize_acts,
  .attention_head = avx2_attention_head,
  .attention_rows = attention_rows,
  .silu_mul = avx2_silu_mul,
  .row_to_f32 = avx2_row_to_f32,
  .q4_range = avx2_q4_range,
  .q4_codes = avx2_q4_codes,
  .q8_codes = avx2_q8_codes,
  .kv_quantize = avx2_kv_quantize,
  .f32_to_f16 = avx2_f32_to_f16,
  .peak_flops = peak_avx2,
};
#endif
