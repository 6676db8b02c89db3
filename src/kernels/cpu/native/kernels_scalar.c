/* Portable kernels: plain C that any compiler builds (x86, arm64, ...). Reductions use eight
 * partial sums combined in a fixed order, so results do not depend on batch size or threads. */
#include <math.h>
#include <string.h>
#include "kernels.h"

static inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline float combine8(const float *s) {
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

#define SCALAR_MATMUL(NAME, WTYPE, LOAD)                                                              \
  static void NAME(float *out, const float *x, const WTYPE *w, int rows, int cols, int n, int r0, int r1) { \
    for (int r = r0; r < r1; r++) {                                                                 \
      const WTYPE *wr = w + (size_t)r * cols;                                                       \
      for (int t = 0; t < n; t++) {                                                                 \
        const float *xt = x + (size_t)t * cols;                                                     \
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                      \
        int j = 0;                                                                                  \
        for (; j + 8 <= cols; j += 8)                                                               \
          for (int k = 0; k < 8; k++) s[k] += LOAD(wr[j + k]) * xt[j + k];                          \
        float acc = combine8(s);                                                                    \
        for (; j < cols; j++) acc += LOAD(wr[j]) * xt[j];                                           \
        out[(size_t)t * rows + r] = acc;                                                            \
      }                                                                                             \
    }                                                                                               \
  }

#define ID(v) (v)
SCALAR_MATMUL(matmul_f32, float, ID)
SCALAR_MATMUL(matmul_f16, uint16_t, qs_f16_to_f32)
SCALAR_MATMUL(matmul_bf16, uint16_t, bf16_to_f32)

/* Sum over blocks of min · (d · sum q): the minimum term of Q4 x Q8, eight partial sums. */
static float min_term(const uint16_t *mins, const float *dsum, int nb) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int b = 0;
  for (; b + 8 <= nb; b += 8)
    for (int k = 0; k < 8; k++) s[k] += qs_f16_to_f32(mins[b + k]) * dsum[b + k];
  float acc = combine8(s);
  for (; b < nb; b++) acc += qs_f16_to_f32(mins[b]) * dsum[b];
  return acc;
}

static void matmul_q4(float *out, const q8_acts *x, const q4_weights *w, int rows, int n, int r0, int r1) {
  const int nb = w->nb;
  for (int r = r0; r < r1; r++) {
    for (int t = 0; t < n; t++) {
      float acc = 0;
      for (int b = 0; b < nb; b++) {
        const uint8_t *cb = w->codes + ((size_t)r * nb + b) * 16;
        const int8_t *qb = x->q + ((size_t)t * nb + b) * QK;
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) isum += (cb[j] & 15) * qb[j] + (cb[j] >> 4) * qb[j + 16];
        acc += (qs_f16_to_f32(w->scales[(size_t)r * nb + b]) * x->d[(size_t)t * nb + b]) * (float)isum;
      }
      out[(size_t)t * rows + r] = acc + min_term(w->mins + (size_t)r * nb, x->dsum + (size_t)t * nb, nb);
    }
  }
}

/* Each block's integer dot is exact; the blocks' products are summed in block order. */
static void matmul_q8(float *out, const q8_acts *x, const q8_weights *w, int rows, int n, int r0, int r1) {
  const int nb = w->nb;
  for (int r = r0; r < r1; r++) {
    for (int t = 0; t < n; t++) {
      float acc = 0;
      for (int b = 0; b < nb; b++) {
        const int8_t *cb = w->codes + ((size_t)r * nb + b) * QK;
        const int8_t *qb = x->q + ((size_t)t * nb + b) * QK;
        int32_t isum = 0;
        for (int j = 0; j < QK; j++) isum += cb[j] * qb[j];
        acc += (qs_f16_to_f32(w->scales[(size_t)r * nb + b]) * x->d[(size_t)t * nb + b]) * (float)isum;
      }
      out[(size_t)t * rows + r] = acc;
    }
  }
}

/* ---- attention ---------------------------------------------------------------------------- */

static inline int nib(const uint8_t *plane, size_t row_bytes, int t, int c) {
  uint8_t b = plane[(size_t)t * row_bytes + (c >> 1)];
  return (c & 1) ? b >> 4 : b & 15;
}

/* Dequantized key (which = 0) or value of kv head g at quantized position t into dst[d]. */
static void load_quant(float *dst, const kv_view *kv, int which, int t, int g, int d) {
  const kv_planes *p = kv->planes;
  const size_t rb = (size_t)p->kv_dim / 2;
  for (int i = 0; i < d; i++) {
    const int c = g * d + i;
    float s, m;
    int u, l;
    if (which == 0) {
      const size_t mi = (size_t)(t / p->group_k) * p->kv_dim + c;
      s = qs_f16_to_f32(p->k_scale[mi]);
      m = qs_f16_to_f32(p->k_min[mi]);
      u = nib(p->k_upper, rb, t, c);
      l = nib(p->k_lower, rb, t, c);
    } else {
      const size_t gi = (size_t)t * (p->kv_dim / p->group_v) + c / p->group_v;
      s = qs_f16_to_f32(p->v_scale[gi]);
      m = qs_f16_to_f32(p->v_min[gi]);
      u = nib(p->v_upper, rb, t, c);
      l = nib(p->v_lower, rb, t, c);
    }
    float v = m + (float)u * s;
    if (kv->bits == 8) v += (float)(l - 8) * (s / 16.0f);
    dst[i] = v;
  }
}

/* Full-precision key or value row of kv head g at position t into dst[d]. */
static void load_fp(float *dst, const kv_view *kv, int which, int t, int g, int d, int kv_dim) {
  const size_t base = (size_t)(t - kv->fp_start) * kv_dim + (size_t)g * d;
  if (kv->fp_dtype == 0) {
    const float *rows = (const float *)(which == 0 ? kv->fp_keys : kv->fp_values);
    memcpy(dst, rows + base, sizeof(float) * d);
  } else {
    const uint16_t *rows = (const uint16_t *)(which == 0 ? kv->fp_keys : kv->fp_values);
    for (int i = 0; i < d; i++) dst[i] = qs_f16_to_f32(rows[base + i]);
  }
}

static void attention_head(const attn_args *a, int query, int g, int p0, int p1, const int32_t *list, float *scratch,
                            attn_partial *part, float *outp) {
  const kv_view *kv = a->kv;
  const int d = a->head_dim, n_rep = a->n_heads / a->n_kv_heads, kv_dim = a->n_kv_heads * d;
  const int pos = a->start_pos + query;
  const int q_end = kv->planes ? quant_boundary(pos, kv->planes->group_k) : 0;
  const float scale = 1.0f / sqrtf((float)d);
  const int count = p1 - p0;
  float *row = scratch;            /* [d] */
  float *scores = scratch + d;     /* [n_rep, count] */
  for (int k = 0; k < count; k++) {
    const int t = list ? list[k] : p0 + k;
    if (kv->planes && t < q_end) load_quant(row, kv, 0, t, g, d);
    else load_fp(row, kv, 0, t, g, d, kv_dim);
    for (int r = 0; r < n_rep; r++) {
      const float *qv = a->q + ((size_t)query * a->n_heads + g * n_rep + r) * d;
      float s = 0;
      for (int i = 0; i < d; i++) s += qv[i] * row[i];
      scores[(size_t)r * count + k] = s * scale;
    }
  }
  for (int r = 0; r < n_rep; r++) {
    float m = -INFINITY;
    for (int k = 0; k < count; k++) m = fmaxf(m, scores[(size_t)r * count + k]);
    float l = 0;
    for (int k = 0; k < count; k++) {
      const float e = expf(scores[(size_t)r * count + k] - m);
      scores[(size_t)r * count + k] = e;
      l += e;
    }
    part[r].m = m;
    part[r].l = l;
    memset(outp + (size_t)r * d, 0, sizeof(float) * d);
  }
  for (int k = 0; k < count; k++) {
    const int t = list ? list[k] : p0 + k;
    if (kv->planes && t < q_end) load_quant(row, kv, 1, t, g, d);
    else load_fp(row, kv, 1, t, g, d, kv_dim);
    for (int r = 0; r < n_rep; r++) {
      const float e = scores[(size_t)r * count + k];
      float *o = outp + (size_t)r * d;
      for (int i = 0; i < d; i++) o[i] += e * row[i];
    }
  }
}

/* All queries and heads: one attention_head call per (query, KV head) over the positions that
 * query may see (the portable path keeps it simple). Results use attention_rows' pair order. */
static void attention_rows(const attn_args *a, int q0, int q1, int p0, int p1, float *scratch, attn_partial *part, float *outp) {
  const int n_rep = a->n_heads / a->n_kv_heads, nj = (q1 - q0) * n_rep, d = a->head_dim;
  for (int query = q0; query < q1; query++) {
    const int pos = a->start_pos + query;
    const int dlo = dense_lo(a, pos);
    const int lo = dlo > p0 ? dlo : p0;
    const int hi = pos + 1 < p1 ? pos + 1 : p1;
    for (int g = 0; g < a->n_kv_heads; g++) {
      const size_t gp = (size_t)g * nj + (size_t)(query - q0) * n_rep;
      if (lo < hi) attention_head(a, query, g, lo, hi, NULL, scratch, part + gp, outp + gp * d);
      else for (int r = 0; r < n_rep; r++) part[gp + r].m = -INFINITY, part[gp + r].l = 0;
    }
  }
}

const kernel_table kernels_scalar = {
  .name = "scalar",
  .matmul_f32 = matmul_f32,
  .matmul_f16 = matmul_f16,
  .matmul_bf16 = matmul_bf16,
  .matmul_q4 = matmul_q4,
  .quantize_acts = quantize_acts,
  .matmul_q8 = matmul_q8,
  .quantize_acts_q8 = quantize_acts,
  .attention_head = attention_head,
  .attention_rows = attention_rows,
  .silu_mul = silu_mul_scalar,
  .row_to_f32 = row_to_f32_scalar,
  .q4_range = q4_range_scalar,
  .q4_codes = q4_codes_scalar,
  .q8_codes = q8_codes_scalar,
  .kv_quantize = kv_quantize,
  .f32_to_f16 = f32_to_f16_scalar,
};
