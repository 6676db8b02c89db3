/* Kernels split over the thread pool (jobs.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "isa.h"
#include "jobs.h"
#include "pool.h"

static void *acts_q, *acts_d, *acts_sum, *acts_dsum;
static size_t acts_q_cap, acts_d_cap, acts_sum_cap, acts_dsum_cap;

/* Weight bytes a take of the row-split matmuls reads at least (row_takes). */
#define TAKE_MIN_BYTES 32768

/* Rows of `row_bytes` each per take: at least TAKE_MIN_BYTES of them. */
static int take_min_rows(size_t row_bytes) { return (int)((TAKE_MIN_BYTES + row_bytes - 1) / row_bytes); }

typedef struct {
  float *out;
  const float *x;
  const void *w;
  int dtype, rows, cols, n;
  row_takes takes;
} mm_ctx;

static void mm_job(void *p, int part, int n_parts) {
  mm_ctx *c = (mm_ctx *)p;
  (void)part, (void)n_parts;
  for (int r0, r1; take_rows(&c->takes, &r0, &r1);) {
    if (c->dtype == 0) K->matmul_f32(c->out, c->x, (const float *)c->w, c->rows, c->cols, c->n, r0, r1);
    else if (c->dtype == 1) K->matmul_f16(c->out, c->x, (const uint16_t *)c->w, c->rows, c->cols, c->n, r0, r1);
    else K->matmul_bf16(c->out, c->x, (const uint16_t *)c->w, c->rows, c->cols, c->n, r0, r1);
  }
}

void matmul_run(float *out, const float *x, const void *w, int dtype, int rows, int cols, int n) {
  const size_t row_bytes = (size_t)cols * (dtype == 0 ? 4 : 2);
  mm_ctx c = {out, x, w, dtype, rows, cols, n};
  takes_init(&c.takes, rows, 4, take_min_rows(row_bytes));
  pool_run_sized(mm_job, &c, row_bytes * rows * n);
}

/* The int8 activations of n tokens of nb blocks each, in the shared scratch; 0, or -1 when out of memory. */
static int acts_alloc(q8_acts *a, int n, int nb) {
  a->q = grow(&acts_q, &acts_q_cap, (size_t)n * nb * QK);
  a->d = grow(&acts_d, &acts_d_cap, (size_t)n * nb * sizeof(float));
  a->sum = grow(&acts_sum, &acts_sum_cap, (size_t)n * nb * sizeof(int32_t));
  a->dsum = grow(&acts_dsum, &acts_dsum_cap, (size_t)n * nb * sizeof(float));
  a->nb = nb;
  return a->q && a->d && a->sum && a->dsum ? 0 : -1;
}

typedef struct {
  float *out;
  const float *x;
  q4_weights w;
  q8_acts a;
  int rows, cols, n;
  row_takes takes;
} q4_ctx;

static void q4_quant_job(void *p, int part, int n_parts) {
  q4_ctx *c = (q4_ctx *)p;
  int t0, t1;
  share(c->n, part, n_parts, 1, &t0, &t1);
  if (t0 < t1) K->quantize_acts((int8_t *)c->a.q, (float *)c->a.d, (int32_t *)c->a.sum, (float *)c->a.dsum, c->x, c->cols, c->a.nb, t0, t1);
}

static void q4_job(void *p, int part, int n_parts) {
  q4_ctx *c = (q4_ctx *)p;
  (void)part, (void)n_parts;
  for (int r0, r1; take_rows(&c->takes, &r0, &r1);) K->matmul_q4(c->out, &c->a, &c->w, c->rows, c->n, r0, r1);
}

int matmul_q4_run(float *out, const float *x, const uint8_t *codes, const uint16_t *scales, const uint16_t *mins, int rows,
                  int cols, int n) {
  const int nb = (cols + QK - 1) / QK;
  q4_ctx c;
  c.out = out;
  c.x = x;
  c.w.codes = codes;
  c.w.scales = scales;
  c.w.mins = mins;
  c.w.nb = nb;
  c.rows = rows;
  c.cols = cols;
  c.n = n;
  if (acts_alloc(&c.a, n, nb) != 0) return -1;
  pool_run_sized(q4_quant_job, &c, (size_t)n * cols * sizeof(float));
  /* a block is 16 code bytes, an F16 scale and an F16 minimum */
  takes_init(&c.takes, rows, 4, take_min_rows((size_t)nb * 20));
  pool_run_sized(q4_job, &c, (size_t)rows * nb * 20 * n);
  return 0;
}

typedef struct {
  float *out;
  const float *x;
  q8_weights w;
  q8_acts a;
  int rows, cols, n;
  row_takes takes;
} q8_ctx;

static void q8_quant_job(void *p, int part, int n_parts) {
  q8_ctx *c = (q8_ctx *)p;
  int t0, t1;
  share(c->n, part, n_parts, 1, &t0, &t1);
  if (t0 < t1) K->quantize_acts_q8((int8_t *)c->a.q, (float *)c->a.d, (int32_t *)c->a.sum, (float *)c->a.dsum, c->x, c->cols, c->a.nb, t0, t1);
}

static void q8_job(void *p, int part, int n_parts) {
  q8_ctx *c = (q8_ctx *)p;
  (void)part, (void)n_parts;
  for (int r0, r1; take_rows(&c->takes, &r0, &r1);) K->matmul_q8(c->out, &c->a, &c->w, c->rows, c->n, r0, r1);
}

int matmul_q8_run(float *out, const float *x, const int8_t *codes, const uint16_t *scales, int rows, int cols, int n) {
  const int nb = (cols + QK - 1) / QK;
  q8_ctx c;
  c.out = out;
  c.x = x;
  c.w.codes = codes;
  c.w.scales = scales;
  c.w.nb = nb;
  c.rows = rows;
  c.cols = cols;
  c.n = n;
  if (acts_alloc(&c.a, n, nb) != 0) return -1;
  pool_run_sized(q8_quant_job, &c, (size_t)n * cols * sizeof(float));
  /* a block is 32 code bytes and an F16 scale */
  takes_init(&c.takes, rows, 4, take_min_rows((size_t)nb * 34));
  pool_run_sized(q8_job, &c, (size_t)rows * nb * 34 * n);
  return 0;
}

static void *gemm_acts, *gemm_panels;
static size_t gemm_acts_cap, gemm_panels_cap;

typedef struct {
  float *out;
  const float *x;
  const uint16_t *w;
  uint16_t *xb, *panels;
  int dtype, rows, cols, n, kp;
  row_takes takes; /* whole panels, at least 2 a take (a take's later panels are fetched during the one before: gemm_bf16) */
  size_t scratch;  /* 16-bit elements of one thread's scratch (gemm_scratch_elems) */
} gemm_ctx;

/* xb: the activations in the kernel path's BF16 layout, by blocks of 16 tokens. */
static void gemm_acts_job(void *p, int part, int n_parts) {
  const gemm_ctx *c = (const gemm_ctx *)p;
  int b0, b1;
  share((c->n + 15) / 16, part, n_parts, 1, &b0, &b1);
  if (b0 < b1) K->gemm_acts_bf16(c->xb, c->x, c->n, c->cols, c->kp, b0, b1);
}

static void gemm_job(void *p, int part, int n_parts) {
  gemm_ctx *c = (gemm_ctx *)p;
  (void)n_parts;
  for (int r0, r1; take_rows(&c->takes, &r0, &r1);)
    K->gemm_bf16(c->out, c->xb, c->kp, c->w, c->dtype, c->rows, c->cols, c->n, r0, r1, c->panels + (size_t)part * c->scratch);
}

int gemm_bf16_run(float *out, const float *x, const uint16_t *w, int dtype, int rows, int cols, int n) {
  if (!K->gemm_bf16 || (dtype != 1 && dtype != 2) || !(K->gemm_dtypes & (1 << dtype))) return 1;
  const int kp = (cols + 31) & ~31;
  gemm_ctx c = {out, x, w, NULL, NULL, dtype, rows, cols, n, kp};
  takes_init(&c.takes, rows, GEMM_PANEL, 2 * GEMM_PANEL);
  c.xb = grow(&gemm_acts, &gemm_acts_cap, gemm_acts_elems(n, kp) * sizeof(uint16_t));
  c.scratch = (gemm_scratch_elems(kp, n, c.takes.size) + 31) & ~(size_t)31; /* each thread's part 64-byte aligned */
  c.panels = grow(&gemm_panels, &gemm_panels_cap, c.scratch * pool_threads() * sizeof(uint16_t));
  if (!c.xb || !c.panels) return -1;
  pool_run(gemm_acts_job, &c);
  pool_run(gemm_job, &c);
  return 0;
}

/* Below this many elements the calling thread does the work alone: waking the pool costs more. */
#define EW_PARALLEL_MIN (1 << 15)

static void ew_job(void *p, int part, int n_parts) {
  const ew_ctx *c = (const ew_ctx *)p;
  int a, b;
  share(c->rows, part, n_parts, c->op == EW_SILU ? 64 : 1, &a, &b);
  if (a >= b) return;
  switch (c->op) {
    case EW_RMSNORM: rmsnorm_rows(c->out, c->x, c->w, c->dim, c->eps, a, b); break;
    case EW_ROPE: rope_rows(c->out, c->n_heads, c->head_dim, c->start_pos, c->x, c->w, c->layout, a, b); break;
    case EW_EMBED: embed_rows(c->out, c->table, c->dtype, c->dim, c->tokens, a, b); break;
    case EW_ADD: add_rows(c->out, c->x, c->w, c->dim, a, b); break;
    default: K->silu_mul(c->out, c->x, a, b); break;
  }
}

void ew_run(ew_ctx *c, size_t elements) {
  if (elements < EW_PARALLEL_MIN) ew_job(c, 0, 1);
  else pool_run(ew_job, c);
}

typedef struct {
  const float *data;
  size_t n;
  double partial[MAX_THREADS];
} sum_ctx;

#define SUM_LANES 32

static void sum_job(void *p, int part, int n_parts) {
  sum_ctx *c = (sum_ctx *)p;
  const size_t per = (c->n / n_parts) & ~(size_t)63;
  const size_t a = per * part, b = part == n_parts - 1 ? c->n : a + per;
  /* 32 independent accumulators (eight 4-lane vector chains at the baseline ISA, so the adds
     never wait on each other's latency): a streaming read, as fast as the memory allows */
  float acc[SUM_LANES] = {0};
  size_t i = a;
  for (; i + SUM_LANES <= b; i += SUM_LANES)
    for (int k = 0; k < SUM_LANES; k++) acc[k] += c->data[i + k];
  double s = 0;
  for (int k = 0; k < SUM_LANES; k++) s += acc[k];
  for (; i < b; i++) s += c->data[i];
  c->partial[part] = s;
}

double read_sum(const float *data, size_t n) {
  sum_ctx c;
  c.data = data;
  c.n = n;
  pool_run(sum_job, &c);
  double s = 0;
  for (int i = 0; i < pool_threads(); i++) s += c.partial[i];
  return s;
}

typedef struct {
  int kind;
  long iters;
  double flops[MAX_THREADS];
} peak_ctx;

static void peak_job(void *p, int part, int n_parts) {
  peak_ctx *c = (peak_ctx *)p;
  (void)n_parts;
  c->flops[part] = K->peak_flops ? K->peak_flops(c->kind, c->iters) : 0;
}

double peak_flops_run(int kind, long iters) {
  peak_ctx c;
  c.kind = kind;
  c.iters = iters;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pool_run(peak_job, &c);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double flops = 0;
  for (int i = 0; i < pool_threads(); i++) flops += c.flops[i];
  const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  return flops > 0 && s > 0 ? flops / s : 0;
}

/* ---- the 4-bit draft's quantizer ----------------------------------------------------------- */

typedef struct {
  const void *src;
  int dtype, rows, cols, group, symmetric;
  uint8_t *codes;
  uint16_t *scales, *mins;
} q4q_ctx;

/* Row r of a source matrix [?, cols] (dtype 0 f32, 1 f16, 2 bf16) as F32 (the conversions are exact). */
static void source_row(const void *src, int dtype, int cols, int r, float *row) {
  const size_t base = (size_t)r * cols;
  if (dtype == 0) memcpy(row, (const float *)src + base, sizeof(float) * (size_t)cols);
  else K->row_to_f32(row, (const uint16_t *)src + base, cols, dtype);
}

/* Math.min and Math.max of JavaScript: NaN if either is NaN; -0 below +0. */
static inline float js_min(float a, float b) {
  if (a != a || b != b) return NAN;
  return a < b ? a : b < a ? b : signbit(a) ? a : b;
}
static inline float js_max(float a, float b) {
  if (a != a || b != b) return NAN;
  return a > b ? a : b > a ? b : signbit(a) ? b : a;
}

/* Rows [r0, r1) of quantize_q4_run, in the reference quantizer's arithmetic (quant/weights.ts
 * quantizeQ4 in doubles, then repackQ4Blocks32), so the codes and metadata are its bit for bit. */
static void q4q_job(void *p, int part, int n_parts) {
  const q4q_ctx *c = (const q4q_ctx *)p;
  int r0, r1;
  share(c->rows, part, n_parts, 1, &r0, &r1);
  const int cols = c->cols, G = c->group, n_groups = (cols + G - 1) / G, nb = (cols + 31) / 32;
  float *row = malloc(sizeof(float) * (size_t)cols);
  if (!row) return;
  for (int r = r0; r < r1; r++) {
    source_row(c->src, c->dtype, cols, r, row);
    uint8_t *codes = c->codes + (size_t)r * nb * 16;
    memset(codes, 0, (size_t)nb * 16);
    for (int g = 0; g < n_groups; g++) {
      const int lo = g * G, hi = lo + G < cols ? lo + G : cols;
      float scale, mn = 0;
      if (c->symmetric) {
        float v = 0;
        for (int j = lo; j < hi; j++)
          if (fabsf(row[j]) > fabsf(v)) v = row[j];
        scale = (float)((double)v / -8.0);
      } else {
        /* where plain comparisons cannot tell what JavaScript's Math.min / Math.max give (a NaN,
         * or a zero extreme whose sign they pick by order), the group is scanned again with
         * those exact semantics */
        float mx;
        int nan;
        K->q4_range(row, lo, hi, &mn, &mx, &nan);
        if (nan || mn == 0 || mx == 0) {
          mn = INFINITY, mx = -INFINITY;
          for (int j = lo; j < hi; j++) mn = js_min(mn, row[j]), mx = js_max(mx, row[j]);
        }
        scale = (float)(((double)mx - (double)mn) / 15.0);
      }
      const double inv = scale == 0 ? 0.0 : 1.0 / (double)scale, off = c->symmetric ? 0.0 : (double)mn, add = c->symmetric ? 8.0 : 0.0;
      K->q4_codes(codes, row, lo, hi, off, inv, add);
      /* the blocks of 32 this group covers share its scale and minimum, in F16 */
      for (int b = lo / 32; b < nb && b * 32 < hi; b++) {
        if ((b * 32) / G != g) continue;
        c->scales[(size_t)r * nb + b] = qs_f32_to_f16(scale);
        c->mins[(size_t)r * nb + b] = qs_f32_to_f16(c->symmetric ? -8.0f * scale : mn);
      }
    }
  }
  free(row);
}

void quantize_q4_run(const void *src, int dtype, int rows, int cols, int group, int symmetric, uint8_t *codes, uint16_t *scales,
                     uint16_t *mins) {
  q4q_ctx c = {src, dtype, rows, cols, group, symmetric, codes, scales, mins};
  pool_run(q4q_job, &c);
}

/* ---- the 8-bit quantizer (the draft's output head) ------------------------------------------ */

typedef struct {
  const void *src;
  int dtype, rows, cols, group;
  int8_t *codes;
  uint16_t *scales;
} q8q_ctx;

/* Rows [r0, r1) of quantize_q8_run in the reference's arithmetic (quant/weights.ts quantizeQ8 in
 * doubles, then repackQ8Blocks32): the same codes and F16 scales bit for bit, NaN included (a NaN
 * largest magnitude makes every code of its group 0, as the reference's Int8Array store does). */
static void q8q_job(void *p, int part, int n_parts) {
  const q8q_ctx *c = (const q8q_ctx *)p;
  int r0, r1;
  share(c->rows, part, n_parts, 1, &r0, &r1);
  const int cols = c->cols, G = c->group, n_groups = (cols + G - 1) / G, nb = (cols + 31) / 32;
  float *row = malloc(sizeof(float) * (size_t)cols);
  if (!row) return;
  for (int r = r0; r < r1; r++) {
    source_row(c->src, c->dtype, cols, r, row);
    int8_t *codes = c->codes + (size_t)r * nb * 32;
    memset(codes, 0, (size_t)nb * 32);
    for (int g = 0; g < n_groups; g++) {
      const int lo = g * G, hi = lo + G < cols ? lo + G : cols;
      /* the largest magnitude is that of the least or the greatest value; NaN if any is */
      float mn, mx;
      int nan;
      K->q4_range(row, lo, hi, &mn, &mx, &nan);
      const float amax = nan ? NAN : fmaxf(fmaxf(fabsf(mn), fabsf(mx)), 0.0f);
      const float scale = (float)((double)amax / 127.0);
      const double inv = scale == 0 ? 0.0 : 1.0 / (double)scale;
      K->q8_codes(codes, row, lo, hi, inv);
      for (int b = lo / 32; b < nb && b * 32 < hi; b++) c->scales[(size_t)r * nb + b] = qs_f32_to_f16(scale);
    }
  }
  free(row);
}

void quantize_q8_run(const void *src, int dtype, int rows, int cols, int group, int8_t *codes, uint16_t *scales) {
  q8q_ctx c = {src, dtype, rows, cols, group, codes, scales};
  pool_run(q8q_job, &c);
}
