/* The AVX attention driver shared by the AVX2 and AVX-512 tables (compiled with -mavx2 -mfma
 * -mf16c): for the queries of one quantization boundary and every head over one chunk of
 * positions, it folds the key scales into int16 queries, masks, takes softmax pieces, turns the
 * weights into int16 units for the value planes and handles the full-precision rows. The
 * per-ISA blocks (attention_blocks.h) take the integer dot products over the planes. */
#if defined(__x86_64__) || defined(_M_X64)
#include "attention_blocks.h"
/* attention_avx512.c compiles this file again with AVX-512 enabled (32 vector registers, EVEX
 * encodings) under another name; the float operations are the same IEEE operations, so both
 * drivers give the same results bit for bit. */
#ifndef ATTENTION_DRIVER
#define ATTENTION_DRIVER attention_rows_with
#endif
#include "simd_avx2.h"
#include "simd16.h"

/* One call's shapes and scratch. Pairs (query, head) are grouped by KV head:
 * gp = g * nj + j, j = (query - q0) * n_rep + r for query head g * n_rep + r. */
typedef struct {
  const attn_blocks *blocks;
  const attn_args *a;
  const kv_view *kv;
  const kv_planes *pl;
  int q0, p0, count, qa_end; /* positions [p0, qa_end) come from the planes, the rest of [p0, p0 + count) from rows */
  int ss;             /* floats from one pair's scores to the next (attn_score_stride) */
  int wide;           /* the key blocks take wide calls (attn_blocks.wide_keys_min_pairs) and keep smax */
  int d, half, n_heads, n_kv, n_rep, kv_dim, nj, n_pairs;
  float scale;
  float *scores;      /* [n_pairs, ss], count used */
  int16_t *qlo, *qhi; /* [n_pairs, d / 2]: even and odd channels of the folded queries */
  float *dq, *base;   /* [n_pairs] */
  float *smax;        /* [n_pairs, 16]: each pair's largest plane score, where the key blocks keep it (key_args.smax), else NULL */
  int32_t *qsum;      /* [n_pairs] */
  uint8_t *prep;      /* [n_kv, prep_bytes]: the key blocks' prepared queries (key_args.prep) */
  size_t prep_bytes;
  int32_t *values;    /* the value weights' scratch */
  attn_partial *part;
  float *outp;        /* [n_pairs, d] */
  float *fp_conv;     /* [FP_CONV_ROWS, d]: F16 rows of one KV head converted to F32 */
} rows_ctx;

static inline const float *pair_query(const rows_ctx *c, int g, int j) {
  return c->a->q + ((size_t)(c->q0 + j / c->n_rep) * c->n_heads + (size_t)g * c->n_rep + j % c->n_rep) * c->d;
}

/* Pairs folded together by fold_pairs: their scale divisions run side by side in one vector. */
#define FOLD_BATCH 8

/* The queries of pairs j0 .. j0 + n - 1 (n <= FOLD_BATCH) of KV head g folded with key group blk's
 * per-channel scales (qs = q · s), quantized to int16 (even channels to qlo, odd to qhi); per pair
 * base = Σ q · mn, dq = max |qs| / 32767 and qsum = Σ of the int16 codes. Each pair's operations
 * are those of folding it alone (the same products, lane sums and divisions in the same order),
 * so a pair's codes do not depend on the batch; the batch only lets the divisions, which wait on
 * each pair's largest |qs|, overlap instead of forming one chain per pair. */
static void fold_pairs(const rows_ctx *c, int blk, int g, int j0, int n) {
  const kv_planes *pl = c->pl;
  const int d = c->d, half = c->half;
  const uint16_t *ks = pl->k_scale + (size_t)blk * pl->kv_dim + g * d;
  const uint16_t *km = pl->k_min + (size_t)blk * pl->kv_dim + g * d;
  float qs[FOLD_BATCH][MAX_D], amax[FOLD_BATCH] = {0}, inv[FOLD_BATCH], dd[FOLD_BATCH];
#ifdef __AVX512F__
  /* two pairs a register, pair b in lanes 0-7 and b + 1 in lanes 8-15, each lane the operations
   * of the eight-lane loop below; the scales and minimums converted once, in both halves */
  float s16[2 * MAX_D] __attribute__((aligned(64))), m16[2 * MAX_D] __attribute__((aligned(64)));
  for (int ch = 0; ch < d; ch += 8) {
    const __m256 s8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ks + ch)));
    const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(km + ch)));
    _mm512_store_ps(s16 + 2 * ch, _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(s8))));
    _mm512_store_ps(m16 + 2 * ch, _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(m8))));
  }
  for (int b = 0; b < n; b += 2) {
    const int b1 = b + 1 < n ? b + 1 : b; /* an odd last pair fills both halves */
    const float *qa = pair_query(c, g, j0 + b), *qb = pair_query(c, g, j0 + b1);
    __m512 bv = _mm512_setzero_ps(), av = _mm512_setzero_ps();
    for (int ch = 0; ch < d; ch += 8) {
      const __m512 q16 = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(qa + ch))),
                                                             _mm256_castps_pd(_mm256_loadu_ps(qb + ch)), 1));
      const __m512 qs16 = _mm512_mul_ps(q16, _mm512_load_ps(s16 + 2 * ch));
      _mm256_storeu_ps(qs[b] + ch, _mm512_castps512_ps256(qs16));
      _mm256_storeu_ps(qs[b1] + ch, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(qs16), 1)));
      av = _mm512_max_ps(av, _mm512_abs_ps(qs16)); /* the sign bit cleared, as abs_mask does */
      bv = _mm512_add_ps(bv, _mm512_mul_ps(q16, _mm512_load_ps(m16 + 2 * ch)));
    }
    const __m256 bv_hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(bv), 1));
    const __m256 av_hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(av), 1));
    c->base[(size_t)g * c->nj + j0 + b] = hsum(_mm512_castps512_ps256(bv));
    amax[b] = hmax(_mm512_castps512_ps256(av));
    c->base[(size_t)g * c->nj + j0 + b1] = hsum(bv_hi);
    amax[b1] = hmax(av_hi);
  }
#else
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int b = 0; b < n; b++) {
    const size_t gp = (size_t)g * c->nj + j0 + b;
    const float *qv = pair_query(c, g, j0 + b);
    __m256 bv = _mm256_setzero_ps(), av = _mm256_setzero_ps();
    for (int ch = 0; ch < d; ch += 8) {
      const __m256 s8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ks + ch)));
      const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(km + ch)));
      const __m256 q8 = _mm256_loadu_ps(qv + ch), qs8 = _mm256_mul_ps(q8, s8);
      _mm256_storeu_ps(qs[b] + ch, qs8);
      av = _mm256_max_ps(av, _mm256_and_ps(qs8, abs_mask));
      bv = _mm256_add_ps(bv, _mm256_mul_ps(q8, m8));
    }
    c->base[gp] = hsum(bv);
    amax[b] = hmax(av);
  }
#endif
  /* dd = amax / 32767 and its inverse (0 where dd is 0), as the scalar divisions would give */
  const __m256 dv = _mm256_div_ps(_mm256_loadu_ps(amax), _mm256_set1_ps(32767.0f));
  const __m256 iv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), dv), _mm256_cmp_ps(dv, _mm256_setzero_ps(), _CMP_GT_OQ));
  _mm256_storeu_ps(dd, dv);
  _mm256_storeu_ps(inv, iv);
#ifdef __AVX512F__
  const __m512i evens_odds16 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
#else
  const __m256i evens_odds = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
#endif
  for (int b = 0; b < n; b++) {
    const size_t gp = (size_t)g * c->nj + j0 + b;
    int16_t *lo = c->qlo + gp * half, *hi = c->qhi + gp * half;
    /* int16 codes (round to nearest even, as rintf), even channels to lo, odd to hi */
#ifdef __AVX512F__ /* 16 channels a step: the same roundings, the same saturating packs */
    const __m512 invv = _mm512_set1_ps(inv[b]);
    __m512i sv = _mm512_setzero_si512();
    for (int ch = 0; ch < d; ch += 16) {
      const __m512i i16 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(qs[b] + ch), invv));
      sv = _mm512_add_epi32(sv, i16);
      const __m256i w = _mm512_cvtsepi32_epi16(_mm512_permutexvar_epi32(evens_odds16, i16)); /* evens, then odds */
      _mm_storeu_si128((__m128i *)(lo + ch / 2), _mm256_castsi256_si128(w));
      _mm_storeu_si128((__m128i *)(hi + ch / 2), _mm256_extracti128_si256(w, 1));
    }
    c->qsum[gp] = _mm512_reduce_add_epi32(sv);
#else
    const __m256 invv = _mm256_set1_ps(inv[b]);
    __m256i sv = _mm256_setzero_si256();
    for (int ch = 0; ch < d; ch += 16) {
      const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(qs[b] + ch), invv));
      const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(qs[b] + ch + 8), invv));
      sv = _mm256_add_epi32(sv, _mm256_add_epi32(i0, i1));
      const __m256i e0 = _mm256_permutevar8x32_epi32(i0, evens_odds), e1 = _mm256_permutevar8x32_epi32(i1, evens_odds);
      _mm_storeu_si128((__m128i *)(lo + ch / 2), _mm_packs_epi32(_mm256_castsi256_si128(e0), _mm256_castsi256_si128(e1)));
      _mm_storeu_si128((__m128i *)(hi + ch / 2), _mm_packs_epi32(_mm256_extracti128_si256(e0, 1), _mm256_extracti128_si256(e1, 1)));
    }
    c->qsum[gp] = hsum_i32(sv);
#endif
    c->dq[gp] = dd[b];
  }
}

/* Scores of every pair over the plane positions [p0, qa_end): per key group the folded queries,
 * then KEY_ROWS (or WIDE_KEY_ROWS) positions at a time with every KV head within them (rows read
 * nearly in order). */
static void keys_from_planes(const rows_ctx *c) {
  const kv_planes *pl = c->pl;
  const int G = pl->group_k, rb = pl->kv_dim / 2, half = c->half;
  const int rows = c->wide ? WIDE_KEY_ROWS : KEY_ROWS;
  if (c->smax)
    for (size_t i = 0; i < (size_t)c->n_pairs * 16; i++) c->smax[i] = -INFINITY;
  for (int t = c->p0; t < c->qa_end;) {
    const int blk = t / G, t_end = ((blk + 1) * G < c->qa_end) ? (blk + 1) * G : c->qa_end;
    for (int g = 0; g < c->n_kv; g++)
      for (int j = 0; j < c->nj; j += FOLD_BATCH) fold_pairs(c, blk, g, j, c->nj - j < FOLD_BATCH ? c->nj - j : FOLD_BATCH);
    for (int tb = t; tb < t_end; tb += rows) {
      const int nb = t_end - tb < rows ? t_end - tb : rows, kb = tb - c->p0;
      for (int g = 0; g < c->n_kv; g++) { /* every pair of the KV head in one call: they share its codes */
        const size_t gp0 = (size_t)g * c->nj;
        const key_args ka = {pl->k_upper + (size_t)tb * rb + g * half, pl->k_lower + (size_t)tb * rb + g * half, rb, half,
                             c->qlo + gp0 * half, c->qhi + gp0 * half, c->dq + gp0, c->base + gp0, c->qsum + gp0,
                             c->scores + gp0 * c->ss + kb, c->ss, c->scale, nb, c->prep + (size_t)g * c->prep_bytes, tb == t,
                             c->smax ? c->smax + gp0 * 16 : NULL};
        c->blocks->keys(&ka, c->nj, c->kv->bits);
      }
    }
    t = t_end;
  }
}

/* Eight 8-lane accumulators to their eight horizontal sums, in order, each summed in hsum()'s
 * order (lo + hi, then lanes (0 + 1) + (2 + 3)): the same result as eight hsum() calls. */
static inline __m256 hsum8x8(const __m256 v[8]) {
  const __m256 a = _mm256_add_ps(_mm256_permute2f128_ps(v[0], v[4], 0x20), _mm256_permute2f128_ps(v[0], v[4], 0x31));
  const __m256 b = _mm256_add_ps(_mm256_permute2f128_ps(v[1], v[5], 0x20), _mm256_permute2f128_ps(v[1], v[5], 0x31));
  const __m256 cc = _mm256_add_ps(_mm256_permute2f128_ps(v[2], v[6], 0x20), _mm256_permute2f128_ps(v[2], v[6], 0x31));
  const __m256 dd = _mm256_add_ps(_mm256_permute2f128_ps(v[3], v[7], 0x20), _mm256_permute2f128_ps(v[3], v[7], 0x31));
  return _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(cc, dd));
}

/* F32 copies of F16 rows: one KV head's segment of `n` rows from chunk index k, to dst [n, d]
 * (converted once, then read by every pair of the head). */
static void f16_rows_to_f32(const rows_ctx *c, const uint16_t *rows, int g, int k, int n, float *dst) {
  const size_t row = (size_t)(c->p0 + k - c->kv->fp_start) * c->kv_dim + (size_t)g * c->d;
  for (int p = 0; p < n; p++)
    for (int i = 0; i < c->d; i += 8) _mm256_storeu_ps(dst + (size_t)p * c->d + i, load8_f16(rows + row + (size_t)p * c->kv_dim + i));
}

/* Where KV head g's F32 rows from chunk index k are: in the cache (F32 rows, stride kv_dim) or
 * converted into conv (F16 rows, stride d). */
static const float *f32_rows(const rows_ctx *c, const void *rows, int g, int k, int n, float *conv, size_t *stride) {
  if (c->kv->fp_dtype == 0) {
    *stride = (size_t)c->kv_dim;
    return (const float *)rows + (size_t)(c->p0 + k - c->kv->fp_start) * c->kv_dim + (size_t)g * c->d;
  }
  f16_rows_to_f32(c, (const uint16_t *)rows, g, k, n, conv);
  *stride = (size_t)c->d;
  return conv;
}

/* The first pair whose query sees chunk index k (queries come in order, n_rep pairs each): the
 * pairs before it have k past their causal end, where mask_pair sets every score, so their dots
 * need not be taken. */
static inline int first_seeing(const rows_ctx *c, int k) {
  const int q = k - (c->a->start_pos + c->q0 - c->p0); /* the first query at or past position p0 + k */
  return q <= 0 ? 0 : q >= c->nj / c->n_rep ? c->nj : q * c->n_rep;
}

/* Pair query q's dots with 8 rows of d floats (row p at k + p * stride), each the same operations
 * as dot_fp(). Inlined with constant stride and d, every row is a fixed offset from one pointer;
 * with run-time ones GCC kept the eight row pointers in vector registers, moving each back per load. */
static inline __attribute__((always_inline)) __m256 dots8(const float *q, const float *k, size_t stride, int d) {
  __m256 acc[8];
  for (int p = 0; p < 8; p++) acc[p] = _mm256_setzero_ps();
  for (int i = 0; i < d; i += 8) {
    const __m256 q8 = _mm256_loadu_ps(q + i);
    for (int p = 0; p < 8; p++) acc[p] = _mm256_fmadd_ps(q8, _mm256_loadu_ps(k + (size_t)p * stride + i), acc[p]);
  }
  return hsum8x8(acc);
}

/* Scores of KV head g's pairs over n (a multiple of 8, at most FP_CONV_ROWS) rows of d floats,
 * stride apart, from chunk index k (dst at its scores for k): each pair walks the 8-row blocks its
 * query sees with its query in L1. (Two pairs at a time sharing each row load, 16 chains in the
 * registers of AVX-512, made a decode step slower: 584 against 537 µs at 4K, 32/8 heads.) */
static inline __attribute__((always_inline)) void keys_walk(const rows_ctx *c, int g, int k, int n, const float *keys, float *dst,
                                                            size_t stride, int d) {
  const __m256 scale = _mm256_set1_ps(c->scale);
  const int nb = n / 8;
  int first[FP_CONV_ROWS / 8]; /* the first pair that sees block b */
  for (int b = 0; b < nb; b++) first[b] = first_seeing(c, k + 8 * b);
  for (int j = first[0]; j < c->nj; j++)
    for (int b = 0; b < nb && first[b] <= j; b++)
      _mm256_storeu_ps(dst + (size_t)j * c->ss + 8 * b, _mm256_mul_ps(dots8(pair_query(c, g, j), keys + 8 * b * stride, stride, d), scale));
}

/* Pairs per KV head from which the keys take FP_CONV_ROWS rows a call: with fewer (a decode
 * step) 8 rows a call (16 for AVX-512's paired F16 rows) keep the reads of every KV head's row
 * nearly in order, which the prefetchers follow (64 rows of one head are a strided walk); with
 * more, each pair's query stays in L1 while it walks the head's 64 rows (with AVX-512, two rows
 * per register: keys_walk16). */
#define KEYS_WIDE_PAIRS 16

#ifdef __AVX512F__
/* KV head g's n rows from chunk index k (n even, at most FP_CONV_ROWS) as F32 in dst with rows 2b
 * and 2b + 1 side by side: [row pair b][channel block i of 8][row 2b: 8 floats, row 2b + 1: 8]. */
static void rows_paired(const rows_ctx *c, const void *rows, int g, int k, int n, float *dst) {
  const int d = c->d;
  const size_t row0 = (size_t)(c->p0 + k - c->kv->fp_start) * c->kv_dim + (size_t)g * d;
  for (int p = 0; p < n; p++) {
    const size_t src = row0 + (size_t)p * c->kv_dim;
    float *o = dst + (size_t)(p >> 1) * 2 * d + 8 * (p & 1);
    if (c->kv->fp_dtype == 0)
      for (int i = 0; i < d; i += 8) _mm256_storeu_ps(o + 2 * i, _mm256_loadu_ps((const float *)rows + src + i));
    else
      for (int i = 0; i < d; i += 8) _mm256_storeu_ps(o + 2 * i, load8_f16((const uint16_t *)rows + src + i));
  }
}

/* dots8()'s sums of NA row pairs (rows_paired layout, NA = 8: 16 rows, 4: 8 rows) with query q:
 * lanes 0-7 of acc[p] take row 2p's chain and lanes 8-15 row 2p + 1's, the same fused
 * multiply-adds lane by lane as dots8's eight-lane accumulators; then each row's eight lanes are
 * summed in hsum()'s order, t_l = v_l + v_l+4, then (t0 + t1) + (t2 + t3), for all rows at once.
 * The 16 sums come back in row order (before the last permute, row q + 4m is in lane 4q + m). */
static inline __attribute__((always_inline)) __m512 dots16(const float *q, const float *rows, int d, const int NA) {
  __m512 acc[8];
  for (int p = 0; p < NA; p++) acc[p] = _mm512_setzero_ps();
  for (int i = 0; i < d; i += 8) {
    const __m512 q16 = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(q + i))));
    for (int p = 0; p < NA; p++) acc[p] = _mm512_fmadd_ps(q16, _mm512_loadu_ps(rows + (size_t)p * 2 * d + 2 * i), acc[p]);
  }
  __m512 t[4];
  for (int p = 0; p < NA / 2; p++) /* quarters: rows 4p .. 4p + 3, each t_l = v_l + v_l+4 */
    t[p] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * p], acc[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(acc[2 * p], acc[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  /* quarter q: [t0 + t1, t2 + t3] of row q of the first, then of row q of the second */
  const __m512 sa = _mm512_add_ps(_mm512_shuffle_ps(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 sb = NA == 8 ? _mm512_add_ps(_mm512_shuffle_ps(t[2], t[3], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(t[2], t[3], _MM_SHUFFLE(3, 1, 3, 1)))
                            : sa;
  /* quarter q, lane m: row q + 4m */
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(sa, sb, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(sa, sb, _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

/* keys_walk over rows_paired rows: 16 rows per call of dots16 (a last 8 with half the registers),
 * twice the lanes of dots8 for the same sums. A 16-row block is taken whole for a pair that sees
 * its first 8 rows; mask_pair sets the scores it may not see. */
static inline __attribute__((always_inline)) void keys_walk16(const rows_ctx *c, int g, int k, int n, const float *rows, float *dst,
                                                              int d) {
  const __m512 scale = _mm512_set1_ps(c->scale);
  const int nb = n / 8;
  int first[FP_CONV_ROWS / 8];
  for (int b = 0; b < nb; b++) first[b] = first_seeing(c, k + 8 * b);
  for (int j = first[0]; j < c->nj; j++) {
    const float *q = pair_query(c, g, j);
    float *o = dst + (size_t)j * c->ss;
    int b = 0;
    for (; b + 2 <= nb && first[b] <= j; b += 2) _mm512_storeu_ps(o + 8 * b, _mm512_mul_ps(dots16(q, rows + (size_t)b * 8 * d, d, 8), scale));
    if (b < nb && first[b] <= j) _mm512_mask_storeu_ps(o + 8 * b, 0xff, _mm512_mul_ps(dots16(q, rows + (size_t)b * 8 * d, d, 4), scale));
  }
}

/* keys_rows with each KV head's rows laid out by rows_paired: for KEYS_WIDE_PAIRS pairs or more,
 * and for F16 rows at any count (they are converted for every call anyway, so the layout costs
 * nothing). */
static void keys_rows_paired(const rows_ctx *c, int k, int n) {
  for (int g = 0; g < c->n_kv; g++) {
    rows_paired(c, c->kv->fp_keys, g, k, n, c->fp_conv);
    float *dst = c->scores + (size_t)g * c->nj * c->ss + k;
    if (c->d == 64) keys_walk16(c, g, k, n, c->fp_conv, dst, 64);
    else if (c->d == 128) keys_walk16(c, g, k, n, c->fp_conv, dst, 128);
    else keys_walk16(c, g, k, n, c->fp_conv, dst, c->d);
  }
}
#endif

/* Scores of the pairs over n (a multiple of 8, at most FP_CONV_ROWS) full-precision rows from
 * chunk index k, one KV head's rows converted at a time. Blocks of 8 past a query's causal end
 * are skipped: mask_pair sets their scores. */
static void keys_rows(const rows_ctx *c, int k, int n) {
  for (int g = 0; g < c->n_kv; g++) {
    size_t stride;
    const float *keys = f32_rows(c, c->kv->fp_keys, g, k, n, c->fp_conv, &stride);
    float *dst = c->scores + (size_t)g * c->nj * c->ss + k;
    if (stride == 64 && c->d == 64) keys_walk(c, g, k, n, keys, dst, 64, 64); /* rows converted from F16 lie end to end */
    else if (stride == 128 && c->d == 128) keys_walk(c, g, k, n, keys, dst, 128, 128);
    else keys_walk(c, g, k, n, keys, dst, stride, c->d);
  }
}

/* Scores of every pair over the full-precision positions, chunk index k onward. */
static void keys_from_rows(const rows_ctx *c, int k) {
#ifdef __AVX512F__
  const int paired = c->nj >= KEYS_WIDE_PAIRS || c->kv->fp_dtype != 0; /* keys_rows_paired */
  const int rows = c->nj >= KEYS_WIDE_PAIRS ? FP_CONV_ROWS : paired ? 16 : 8;
#else
  const int rows = c->nj >= KEYS_WIDE_PAIRS ? FP_CONV_ROWS : 8;
#endif
  while (k + 8 <= c->count) {
    const int n = (c->count - k) / 8 * 8 < rows ? (c->count - k) / 8 * 8 : rows;
#ifdef __AVX512F__
    if (paired) keys_rows_paired(c, k, n);
    else
#endif
      keys_rows(c, k, n);
    k += n;
  }
  for (; k < c->count; k++) {
    const size_t row = (size_t)(c->p0 + k - c->kv->fp_start) * c->kv_dim;
    for (int g = 0; g < c->n_kv; g++)
      for (int j = 0; j < c->nj; j++)
        c->scores[((size_t)g * c->nj + j) * c->ss + k] = dot_fp(c->kv, row + (size_t)g * c->d, pair_query(c, g, j), c->d) * c->scale;
  }
}

/* The chunk indices [*b, *e) pair j's query may see (not later positions, not outside its
 * window); *e <= *b where it sees none. */
static inline void pair_visible(const rows_ctx *c, int j, int *b, int *e) {
  const int pos = c->a->start_pos + c->q0 + j / c->n_rep;
  const int lo = dense_lo(c->a, pos) - c->p0, hi = pos - c->p0 + 1;
  *b = lo > 0 ? lo : 0;
  *e = hi < c->count ? hi : c->count;
}

/* Mask the scores s of a pair outside its visible range [b, e) (pair_visible): later positions,
 * positions before its window. */
static void mask_pair(const rows_ctx *c, int b, int e, float *s) {
  for (int i = 0; i < c->count && i < b; i++) s[i] = -INFINITY;
  for (int i = e > b ? e : b; i < c->count; i++) s[i] = -INFINITY;
}

/* Scratch of the value weights over n plane positions (see value_args). */
typedef struct {
  int n, npw, nblk;
  int32_t *w;  /* [n_pairs, npw]: int16 weight pairs */
  float *dw;   /* [nblk, n_pairs]: what one weight unit is worth */
  int32_t *acc; /* [n_pairs, d]: Σ W·code of one value block */
  float *ms, *mm; /* [n_kv, n + 16]: the chunk's value scales and minimums by KV head, converted to F32, zero from n on */
  float *emax; /* [nblk]: one pair's largest e·s per value block */
  uint8_t *tiles; /* [2 * VALUE_BLOCK * d] bytes, 64-aligned: a whole-block value kernel's scratch */
} value_scratch;

/* What pair_softmax fills for the value planes at a chunk's plane positions [0, n). */
typedef struct {
  int n;
  const float *vs, *vm; /* [n + 16]: the KV head's value scales and minimums, zero from n on */
  float *emax;          /* [blocks of VALUE_BLOCK]: the largest e·s of each */
  float offset;         /* the centring term of the codes (values_whole_groups) */
} plane_weights;

/* Softmax pieces of pair gp over the chunk in one pass after its max, 16 positions at a time
 * (simd16.h: the same bits on AVX2 and AVX-512): e = exp(s - max), exactly 0 where masked, summed
 * into l with position i in lane i % 16 (the tail padded with masked positions, which add exact
 * zeros, so a longer row with more masked positions gives the same sum). Where pw is given, its
 * plane positions [0, n) get e·s in place of e, the output's every channel the bias
 * Σ e·mn + offset · Σ e·s, and each value block its largest e·s; the other positions keep e.
 * pmax, where given, is the largest of the plane scores [0, n) (none of them masked): the
 * maximum then reads only the positions from n on. */
static void pair_softmax(const rows_ctx *c, size_t gp, const plane_weights *pw, const float *pmax) {
  float *s = c->scores + gp * c->ss;
  const int count = c->count, n = pw ? pw->n : 0;
  v16f mv[2] = {pmax ? v16_load(pmax) : v16_set1(-INFINITY), v16_set1(-INFINITY)};
  int i = pmax ? n : 0;
  for (; i + 32 <= count; i += 32) mv[0] = v16_max(mv[0], v16_load(s + i)), mv[1] = v16_max(mv[1], v16_load(s + i + 16));
  for (; i + 16 <= count; i += 16) mv[0] = v16_max(mv[0], v16_load(s + i));
  float m = v16_hmax(v16_max(mv[0], mv[1]));
  for (; i < count; i++) m = s[i] > m ? s[i] : m;
  c->part[gp].m = m;
  if (m == -INFINITY) { /* nothing visible in this chunk */
    memset(s, 0, sizeof(float) * count);
    c->part[gp].l = 0;
    if (pw) {
      for (int b = 0; b * VALUE_BLOCK < n; b++) pw->emax[b] = 0;
      for (int ch = 0; ch < c->d; ch++) c->outp[gp * c->d + ch] = 0;
    }
    return;
  }
  const v16f mb = v16_set1(m);
  v16f lv = v16_zero(), bv = v16_zero(), sv = v16_zero(), ev = v16_zero();
  for (i = 0; i < count; i += 16) {
    const int cnt = count - i < 16 ? count - i : 16;
    float tail[16];
    float *p = s + i;
    if (cnt < 16) {
      for (int k = 0; k < 16; k++) tail[k] = k < cnt ? s[i + k] : -INFINITY;
      p = tail;
    }
    const v16f x = v16_load(p);
    const v16f e = v16_zero_where_neg_inf(v16_exp(v16_sub(x, mb)), x);
    lv = v16_add(lv, e);
    if (i < n) {
      const v16f es = v16_mul(e, v16_load(pw->vs + i)); /* 0 from n on */
      bv = v16_fmadd(e, v16_load(pw->vm + i), bv);
      sv = v16_add(sv, es);
      ev = v16_max(ev, es); /* e·s >= 0 */
      v16_store(p, n - i >= 16 ? es : v16_blend(e, es, v16_first(n - i)));
      if (i + 16 >= n || (i + 16) % VALUE_BLOCK == 0) { /* the end of a value block */
        pw->emax[i / VALUE_BLOCK] = v16_hmax(ev);
        ev = v16_zero();
      }
    } else {
      v16_store(p, e);
    }
    if (cnt < 16) memcpy(s + i, tail, sizeof(float) * cnt);
  }
  c->part[gp].l = v16_hsum(lv);
  if (pw) {
    const float bias = v16_hsum(bv) + pw->offset * v16_hsum(sv);
    for (int ch = 0; ch < c->d; ch++) c->outp[gp * c->d + ch] = bias;
  }
}

/* Masks, then softmax pieces, of every pair (chunks whose values are not taken by
 * values_whole_groups). */
static void mask_and_softmax(const rows_ctx *c) {
  for (int g = 0; g < c->n_kv; g++) {
    for (int j = 0; j < c->nj; j++) {
      const size_t gp = (size_t)g * c->nj + j;
      int b, e;
      pair_visible(c, j, &b, &e);
      mask_pair(c, b, e, c->scores + gp * c->ss);
      pair_softmax(c, gp, NULL, NULL);
    }
  }
}

/* Pair gp's weights W = e·s (in place of its plane scores) in units of a 32767th of each value
 * block's largest (round to nearest even), and the worth of one unit per block. */
static void pair_weights(const rows_ctx *c, const value_scratch *v, const plane_weights *pw, size_t gp) {
  const float *es = c->scores + gp * c->ss;
  int16_t *wg = (int16_t *)(v->w + gp * v->npw);
  for (int blk = 0; blk < v->nblk; blk++) {
    const int b0 = blk * VALUE_BLOCK, bn = v->n - b0 < VALUE_BLOCK ? v->n - b0 : VALUE_BLOCK;
    const float emax = pw->emax[blk];
    const float unit = emax / 32767.0f, inv = unit > 0 ? 32767.0f / emax : 0.0f;
    const v16f invv = v16_set1(inv);
    int i = b0;
    for (; i + 16 <= b0 + bn; i += 16) v16_store_i16(wg + i, v16_mul(v16_load(es + i), invv));
    if (i < b0 + bn) {
      float te[16] = {0};
      int16_t t16[16];
      memcpy(te, es + i, sizeof(float) * (size_t)(b0 + bn - i));
      v16_store_i16(t16, v16_mul(v16_load(te), invv));
      memcpy(wg + i, t16, sizeof(int16_t) * (size_t)(b0 + bn - i));
    }
    v->dw[(size_t)blk * c->n_pairs + gp] = c->kv->bits == 8 ? unit * (1.0f / 16.0f) : unit;
  }
  if (v->n & 1) wg[v->n] = 0; /* the odd last position's partner */
}

/* Σ W·code per value block, in row blocks of VALUE_ROWS positions with every KV head inside (rows
 * read nearly in order); the int32 sums wait in acc between row blocks (exact, so the row block
 * size does not change the result) and are finished into out after the last. */
static void values_accumulate(const rows_ctx *c, const value_scratch *v) {
  const kv_planes *pl = c->pl;
  const int rb = pl->kv_dim / 2, half = c->half;
  if (c->blocks->value_block && c->nj >= c->blocks->value_block_min_pairs) { /* a whole value block of a KV head for all its pairs */
    for (int blk = 0; blk < v->nblk; blk++) {
      const int b0 = blk * VALUE_BLOCK, bn = v->n - b0 < VALUE_BLOCK ? v->n - b0 : VALUE_BLOCK;
      for (int g = 0; g < c->n_kv; g++) {
        const size_t gp0 = (size_t)g * c->nj;
        const value_args va = {pl->v_upper + (size_t)(c->p0 + b0) * rb + g * half, pl->v_lower + (size_t)(c->p0 + b0) * rb + g * half,
                               rb, bn, v->w + gp0 * v->npw + b0 / 2, v->npw, v->dw + (size_t)blk * c->n_pairs + gp0,
                               (int32_t *)v->tiles, 1, c->outp + gp0 * c->d, c->d};
        c->blocks->value_block(&va, c->nj, c->kv->bits);
      }
    }
    return;
  }
  for (int blk = 0; blk < v->nblk; blk++) {
    const int b0 = blk * VALUE_BLOCK, b1 = b0 + (v->n - b0 < VALUE_BLOCK ? v->n - b0 : VALUE_BLOCK);
    memset(v->acc, 0, sizeof(int32_t) * (size_t)c->n_pairs * c->d);
    for (int rbk = b0; rbk < b1; rbk += VALUE_ROWS) {
      const int nr_rows = b1 - rbk < VALUE_ROWS ? b1 - rbk : VALUE_ROWS;
      for (int g = 0; g < c->n_kv; g++) {
        for (int j0 = 0; j0 < c->nj; j0 += 4) {
          const int nr = c->nj - j0 < 4 ? c->nj - j0 : 4;
          const size_t gp0 = (size_t)g * c->nj + j0;
          const value_args va = {pl->v_upper + (size_t)(c->p0 + rbk) * rb + g * half, pl->v_lower + (size_t)(c->p0 + rbk) * rb + g * half,
                                 rb, nr_rows, v->w + gp0 * v->npw + rbk / 2, v->npw, v->dw + (size_t)blk * c->n_pairs + gp0,
                                 v->acc + gp0 * c->d, rbk + VALUE_ROWS >= b1, c->outp + gp0 * c->d, c->d};
          c->blocks->values(&va, nr, c->kv->bits);
        }
      }
    }
  }
}

/* dst[g * ld + i] = src[i, g] as F32 for n positions of `groups` KV heads (ld >= n + 16), and
 * zero from n to n + 16: F16 metadata stored by position, read by head. Shuffles, not gathers
 * (which are slow on some CPUs); only data moves, so every path sees the same floats. */
static void meta_by_head(float *dst, const uint16_t *src, int n, int groups, size_t ld) {
  int i = 0;
  if (groups == 1) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_f16(src + i));
  } else if (groups == 2) { /* 8 positions: [p0h0 p0h1 .. p3h1], [p4h0 .. p7h1] */
    for (; i + 8 <= n; i += 8) {
      const __m256 a = load8_f16(src + 2 * i), b = load8_f16(src + 2 * i + 8);
      /* positions 0 1 4 5 | 2 3 6 7 of one head, then the 64-bit quarters put in order */
      const __m256 h0 = _mm256_shuffle_ps(a, b, 0x88), h1 = _mm256_shuffle_ps(a, b, 0xdd);
      _mm256_storeu_ps(dst + i, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h0), 0xd8)));
      _mm256_storeu_ps(dst + ld + i, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h1), 0xd8)));
    }
  } else if (groups == 8) { /* an 8 x 8 transpose per 8 positions */
    for (; i + 8 <= n; i += 8) {
      __m256 r[8], t[8];
      for (int k = 0; k < 8; k++) r[k] = load8_f16(src + (size_t)(i + k) * 8);
      for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
      }
      for (int k = 0; k < 2; k++) {
        r[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        r[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xee);
        r[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        r[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xee);
      }
      for (int k = 0; k < 4; k++) { /* r[k]: head k of positions 0-3 | head k + 4 of them; r[4 + k]: the same of 4-7 */
        _mm256_storeu_ps(dst + (size_t)k * ld + i, _mm256_permute2f128_ps(r[k], r[4 + k], 0x20));
        _mm256_storeu_ps(dst + (size_t)(k + 4) * ld + i, _mm256_permute2f128_ps(r[k], r[4 + k], 0x31));
      }
    }
  }
  for (; i < n; i++)
    for (int g = 0; g < groups; g++) dst[(size_t)g * ld + i] = _cvtsh_ss(src[(size_t)i * groups + g]);
  for (int g = 0; g < groups; g++)
    for (int k = n; k < n + 16; k++) dst[(size_t)g * ld + k] = 0;
}

/* Values over the planes when one value group spans a head (the usual case): the softmax pieces
 * fused with the value weights (pair_softmax), then integer blocks. */
static void values_whole_groups(const rows_ctx *c) {
  const kv_planes *pl = c->pl;
  const int groups = c->n_kv, n = c->qa_end - c->p0; /* one value group per KV head */
  value_scratch v;
  v.n = n;
  v.npw = (n + 1) / 2;
  v.nblk = (n + VALUE_BLOCK - 1) / VALUE_BLOCK;
  v.w = c->values;
  v.dw = (float *)(v.w + (size_t)c->n_pairs * v.npw);
  v.acc = (int32_t *)(v.dw + (size_t)v.nblk * c->n_pairs);
  const size_t ld = (size_t)n + 16; /* a KV head's metadata and its zero tail */
  v.ms = (float *)(v.acc + (size_t)c->n_pairs * c->d);
  v.mm = v.ms + ld * groups;
  v.emax = v.mm + ld * groups;
  v.tiles = (uint8_t *)(((uintptr_t)(v.emax + v.nblk) + 63) & ~(uintptr_t)63);
  /* the chunk's value metadata [position, KV head] to F32 [KV head, position] */
  meta_by_head(v.ms, pl->v_scale + (size_t)c->p0 * groups, n, groups, ld);
  meta_by_head(v.mm, pl->v_min + (size_t)c->p0 * groups, n, groups, ld);
  for (int g = 0; g < c->n_kv; g++) {
    /* the value blocks see centred codes: x4 = mn + 8s + s·(u - 8), x8 = mn + 7.5s + s/16·(code - 128) */
    const plane_weights pw = {n, v.ms + (size_t)g * ld, v.mm + (size_t)g * ld, v.emax, c->kv->bits == 8 ? 7.5f : 8.0f};
    for (int j = 0; j < c->nj; j++) {
      const size_t gp = (size_t)g * c->nj + j;
      int b, e;
      pair_visible(c, j, &b, &e);
      mask_pair(c, b, e, c->scores + gp * c->ss);
      pair_softmax(c, gp, &pw, c->smax && b == 0 && e >= n ? c->smax + gp * 16 : NULL); /* planes unmasked: their maximum is known */
      pair_weights(c, &v, &pw, gp);
    }
  }
  values_accumulate(c, &v);
}

/* Values over the planes with several value groups per head: decoded per position in floats. */
static void values_split_groups(const rows_ctx *c) {
  const kv_planes *pl = c->pl;
  const int rb = pl->kv_dim / 2, Gv = pl->group_v, groups = pl->kv_dim / Gv, d = c->d, half = c->half;
  const int bits = c->kv->bits;
  for (int t = c->p0, k = 0; t < c->qa_end; t++, k++) {
    for (int g = 0; g < c->n_kv; g++) {
      const uint8_t *up = pl->v_upper + (size_t)t * rb + g * half;
      const uint8_t *lw = pl->v_lower + (size_t)t * rb + g * half;
      for (int c0 = 0; c0 < d; c0 += 32) {
        __m256 u[4], l8[4];
        nibbles_to_f32(up + c0 / 2, u);
        if (bits == 8) nibbles_to_f32(lw + c0 / 2, l8);
        for (int jj = 0; jj < 4; jj++) {
          const size_t gi = (size_t)t * groups + (size_t)(g * d + c0 + jj * 8) / Gv;
          const float s = _cvtsh_ss(pl->v_scale[gi]), mn = _cvtsh_ss(pl->v_min[gi]);
          for (int j = 0; j < c->nj; j++) {
            const size_t gp = (size_t)g * c->nj + j;
            const float e = c->scores[gp * c->ss + k];
            float *o = c->outp + gp * d + c0 + jj * 8;
            const float es = e * s;
            __m256 acc = _mm256_fmadd_ps(_mm256_set1_ps(es), u[jj], _mm256_loadu_ps(o));
            float add = e * mn;
            if (bits == 8) {
              acc = _mm256_fmadd_ps(_mm256_set1_ps(es * (1.0f / 16.0f)), l8[jj], acc);
              add -= es * 0.5f;
            }
            _mm256_storeu_ps(o, _mm256_add_ps(acc, _mm256_set1_ps(add)));
          }
        }
      }
    }
  }
}

/* Values of rows [0, n) (chunk indices k0..) for pair gp, NV · 8 channels from ch with their sums
 * in registers: the same fused multiply-adds in the same order as axpy_fp() position by
 * position, so the result does not depend on the blocking. */
static inline __attribute__((always_inline)) void values_rows_pair(const rows_ctx *c, size_t gp, const float *rows, size_t stride,
                                                                   int ch, int k0, int kb, int n, const int NV) {
  const float *e = c->scores + gp * c->ss + k0;
  float *o = c->outp + gp * c->d + ch;
#ifdef __AVX512F__ /* the same multiply-add per channel, 16 channels a register */
  __m512 acc[4];
  for (int v = 0; v < NV / 2; v++) acc[v] = _mm512_loadu_ps(o + 16 * v);
  int k = kb;
  /* runs of 16 weights none of which is zero take no masks; [kb, n) is the pair's visible range,
   * so a zero inside it is an exp that underflowed (rare), and from the first run holding one the
   * rest goes by mask */
  for (; k + 16 <= n; k += 16) {
    if (_mm512_cmp_ps_mask(_mm512_loadu_ps(e + k), _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0xffff) break;
    for (int i = k; i < k + 16; i++) {
      const __m512 ev = _mm512_set1_ps(e[i]);
      const float *r = rows + (size_t)i * stride + ch;
      for (int v = 0; v < NV / 2; v++) acc[v] = _mm512_fmadd_ps(ev, _mm512_loadu_ps(r + 16 * v), acc[v]);
    }
  }
  for (; k < n; k++) { /* a zero weight leaves the sums as they are, by mask rather than a branch that mispredicts */
    const __mmask16 live = (__mmask16)-(e[k] != 0.0f);
    const __m512 ev = _mm512_set1_ps(e[k]);
    const float *r = rows + (size_t)k * stride + ch;
    for (int v = 0; v < NV / 2; v++) acc[v] = _mm512_mask3_fmadd_ps(ev, _mm512_loadu_ps(r + 16 * v), acc[v], live);
  }
  for (int v = 0; v < NV / 2; v++) _mm512_storeu_ps(o + 16 * v, acc[v]);
#else
  __m256 acc[8];
  for (int v = 0; v < NV; v++) acc[v] = _mm256_loadu_ps(o + 8 * v);
  for (int k = kb; k < n; k++) {
    if (e[k] == 0.0f) continue;
    const __m256 ev = _mm256_set1_ps(e[k]);
    const float *r = rows + (size_t)k * stride + ch;
    for (int v = 0; v < NV; v++) acc[v] = _mm256_fmadd_ps(ev, _mm256_loadu_ps(r + 8 * v), acc[v]);
  }
  for (int v = 0; v < NV; v++) _mm256_storeu_ps(o + 8 * v, acc[v]);
#endif
}

#ifdef __AVX512F__
/* values_rows_pair for two pairs gp and gp + 1 with the same visible range [kb, n) (two query heads
 * of one query): each pair's multiply-adds are values_rows_pair's, in the same order; side by side
 * their two chains of sums overlap (one pair's chain waits on the multiply-add's latency, using
 * about half the FMA units) and each row vector is loaded once for both. Written out beside
 * values_rows_pair: one kernel for one or two pairs (arrays of pairs, constant counts) compiled
 * slower, a decode query over an F16 cache at 8K 135-145 µs against 121-139 with pdlm's heads. */
static inline __attribute__((always_inline)) void values_rows_pair2(const rows_ctx *c, size_t gp, const float *rows, size_t stride,
                                                                    int ch, int k0, int kb, int n, const int NV) {
  const float *e0 = c->scores + gp * c->ss + k0, *e1 = e0 + c->ss;
  float *o0 = c->outp + gp * c->d + ch, *o1 = o0 + c->d;
  __m512 a0[4], a1[4];
  for (int v = 0; v < NV / 2; v++) a0[v] = _mm512_loadu_ps(o0 + 16 * v), a1[v] = _mm512_loadu_ps(o1 + 16 * v);
  int k = kb;
  for (; k + 16 <= n; k += 16) { /* runs of 16 weights of both pairs none of which is zero: no masks */
    if ((_mm512_cmp_ps_mask(_mm512_loadu_ps(e0 + k), _mm512_setzero_ps(), _CMP_NEQ_UQ) &
         _mm512_cmp_ps_mask(_mm512_loadu_ps(e1 + k), _mm512_setzero_ps(), _CMP_NEQ_UQ)) != 0xffff)
      break;
    for (int i = k; i < k + 16; i++) {
      const __m512 w0 = _mm512_set1_ps(e0[i]), w1 = _mm512_set1_ps(e1[i]);
      const float *r = rows + (size_t)i * stride + ch;
      for (int v = 0; v < NV / 2; v++) {
        const __m512 x = _mm512_loadu_ps(r + 16 * v);
        a0[v] = _mm512_fmadd_ps(w0, x, a0[v]);
        a1[v] = _mm512_fmadd_ps(w1, x, a1[v]);
      }
    }
  }
  for (; k < n; k++) { /* a zero weight leaves that pair's sums as they are */
    const __mmask16 l0 = (__mmask16)-(e0[k] != 0.0f), l1 = (__mmask16)-(e1[k] != 0.0f);
    const __m512 w0 = _mm512_set1_ps(e0[k]), w1 = _mm512_set1_ps(e1[k]);
    const float *r = rows + (size_t)k * stride + ch;
    for (int v = 0; v < NV / 2; v++) {
      const __m512 x = _mm512_loadu_ps(r + 16 * v);
      a0[v] = _mm512_mask3_fmadd_ps(w0, x, a0[v], l0);
      a1[v] = _mm512_mask3_fmadd_ps(w1, x, a1[v], l1);
    }
  }
  for (int v = 0; v < NV / 2; v++) _mm512_storeu_ps(o0 + 16 * v, a0[v]), _mm512_storeu_ps(o1 + 16 * v, a1[v]);
}
#endif

/* Values in full precision, chunk index k onward, in blocks of FP_CONV_ROWS positions (one KV
 * head's rows of a block stay in L1 while each pair of the head walks them); weights are 0 where
 * masked. */
static void values_from_rows(const rows_ctx *c, int k) {
  for (int k0 = k; k0 < c->count; k0 += FP_CONV_ROWS) {
    const int n = c->count - k0 < FP_CONV_ROWS ? c->count - k0 : FP_CONV_ROWS;
    for (int g = 0; g < c->n_kv; g++) {
      size_t stride;
      const float *rows = f32_rows(c, c->kv->fp_values, g, k0, n, c->fp_conv, &stride);
      for (int j = 0; j < c->nj; j++) {
        const size_t gp = (size_t)g * c->nj + j;
        int b, e; /* the positions of the block it sees: the others have weight 0 */
        pair_visible(c, j, &b, &e);
        b = b > k0 ? b - k0 : 0, e = e < k0 + n ? e - k0 : n;
        if (e <= b) continue;
        int ch = 0;
#ifdef __AVX512F__
        if ((j + 1) % c->n_rep != 0) { /* pair j + 1 is another head of the same query: it sees [b, e) too */
          for (; ch + 64 <= c->d; ch += 64) values_rows_pair2(c, gp, rows, stride, ch, k0, b, e, 8);
          if (ch < c->d) values_rows_pair2(c, gp, rows, stride, ch, k0, b, e, 4);
          j++;
          continue;
        }
#endif
        for (; ch + 64 <= c->d; ch += 64) values_rows_pair(c, gp, rows, stride, ch, k0, b, e, 8);
        if (ch < c->d) values_rows_pair(c, gp, rows, stride, ch, k0, b, e, 4); /* d is a multiple of 32 */
      }
    }
  }
}

void ATTENTION_DRIVER(const attn_blocks *blocks, const attn_args *a, int q0, int q1, int p0, int p1, float *scratch,
                         attn_partial *part, float *outp) {
  const kv_view *kv = a->kv;
  const kv_planes *pl = kv->planes;
  const int d = a->head_dim;
  if (d % 32 != 0 || d > MAX_D || (pl && pl->group_v % 8 != 0)) {
    kernels_scalar.attention_rows(a, q0, q1, p0, p1, scratch, part, outp);
    return;
  }
  rows_ctx c;
  c.blocks = blocks, c.a = a, c.kv = kv, c.pl = pl;
  c.q0 = q0, c.p0 = p0, c.count = p1 - p0, c.ss = attn_score_stride(p1 - p0);
  c.d = d, c.half = d / 2, c.n_heads = a->n_heads, c.n_kv = a->n_kv_heads, c.n_rep = a->n_heads / a->n_kv_heads;
  c.kv_dim = c.n_kv * d, c.nj = (q1 - q0) * c.n_rep, c.n_pairs = c.nj * c.n_kv;
  const int q_end = pl ? quant_boundary(a->start_pos + q0, pl->group_k) : 0; /* shared by these queries */
  c.qa_end = q_end < p1 ? q_end : p1;
  c.scale = 1.0f / sqrtf((float)d);
  c.scores = scratch;
  c.qlo = (int16_t *)(scratch + (((size_t)c.n_pairs * c.ss + 15) & ~(size_t)15));
  c.qhi = c.qlo + (size_t)c.n_pairs * c.half;
  c.dq = (float *)(c.qhi + (size_t)c.n_pairs * c.half);
  c.base = c.dq + c.n_pairs;
  c.smax = (float *)(((uintptr_t)(c.base + c.n_pairs) + 63) & ~(uintptr_t)63);
  c.qsum = (int32_t *)(c.smax + (size_t)c.n_pairs * 16);
  c.wide = blocks->wide_keys_min_pairs > 0 && c.nj >= blocks->wide_keys_min_pairs;
  if (!c.wide) c.smax = NULL;
  c.prep = (uint8_t *)(((uintptr_t)(c.qsum + c.n_pairs) + 63) & ~(uintptr_t)63);
  c.prep_bytes = attn_key_prep_floats(c.n_pairs, c.n_kv, d) / c.n_kv * 4;
  c.values = (int32_t *)(c.prep + c.prep_bytes * c.n_kv);
  c.part = part, c.outp = outp;
  c.fp_conv = scratch + attn_rows_scratch(c.n_pairs, c.n_kv, d, c.count) - attn_fp_conv_floats(d);
  const int planes = p0 < c.qa_end;
  /* values_whole_groups sets every pair's outputs first (pair_softmax); the other paths add to zeros */
  if (!(planes && pl->group_v == d)) memset(outp, 0, sizeof(float) * (size_t)c.n_pairs * d);
  if (planes) keys_from_planes(&c);
  keys_from_rows(&c, planes ? c.qa_end - p0 : 0);
  if (planes && pl->group_v == d) {
    values_whole_groups(&c); /* its softmax is fused with the value weights */
  } else {
    mask_and_softmax(&c);
    if (planes) values_split_groups(&c);
  }
  values_from_rows(&c, planes ? c.qa_end - p0 : 0);
}
#endif
