/* quantspec native CPU backend: Node-API bindings, the kernel table chosen at load time, and a
 * persistent thread pool (workers spin briefly, then sleep on a futex) that splits work by rows
 * or attention work items. Built by scripts/build-native.mjs; see src/kernels/cpu/index.ts. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif
#include "kernels.h"

static const kernel_table *K = &kernels_scalar;

/* ---- thread pool --------------------------------------------------------------------------- */

#define MAX_THREADS 64
#define SPIN_ITERS 20000

typedef void (*job_fn)(void *ctx, int part, int n_parts);

static struct {
  int n_threads;
  pthread_t threads[MAX_THREADS];
  _Atomic uint32_t generation;
  _Atomic int pending;
  _Atomic int sleepers;
  job_fn fn;
  void *ctx;
  int started;
} pool;

static void futex_wait(_Atomic uint32_t *addr, uint32_t value) {
#ifdef __linux__
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
  (void)addr; (void)value;
  usleep(50);
#endif
}

static void futex_wake_all(_Atomic uint32_t *addr) {
#ifdef __linux__
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, MAX_THREADS, NULL, NULL, 0);
#else
  (void)addr;
#endif
}

static void *worker_main(void *arg) {
  const int part = (int)(intptr_t)arg;
  /* The generation when the pool was created: a job published before this thread first runs
   * must still be seen as new. */
  uint32_t seen = 0;
  for (;;) {
    uint32_t g;
    int spins = 0;
    while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
      if (++spins < SPIN_ITERS) {
        CPU_RELAX();
        continue;
      }
      atomic_fetch_add(&pool.sleepers, 1);
      if (atomic_load(&pool.generation) == seen) futex_wait(&pool.generation, seen);
      atomic_fetch_sub(&pool.sleepers, 1);
      spins = 0;
    }
    seen = g;
    pool.fn(pool.ctx, part, pool.n_threads);
    atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
  }
  return NULL;
}

static void pool_start(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  if (pool.started) return; /* the thread count is fixed once workers exist */
  pool.n_threads = n;
  atomic_store(&pool.generation, 0);
  for (int i = 1; i < n; i++) pthread_create(&pool.threads[i], NULL, worker_main, (void *)(intptr_t)i);
  pool.started = 1;
}

/* Run fn(ctx, part, n_parts) for every part, the calling thread taking part 0. */
static void pool_run(job_fn fn, void *ctx) {
  if (pool.n_threads <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  pool.fn = fn;
  pool.ctx = ctx;
  atomic_store(&pool.pending, pool.n_threads - 1);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  if (atomic_load(&pool.sleepers) > 0) futex_wake_all(&pool.generation);
  fn(ctx, 0, pool.n_threads);
  while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) CPU_RELAX();
}

/* Contiguous share [*a, *b) of n items for one part, aligned to `align`. */
static void share(int n, int part, int n_parts, int align, int *a, int *b) {
  int units = (n + align - 1) / align;
  int per = units / n_parts, extra = units % n_parts;
  int u0 = part * per + (part < extra ? part : extra);
  int u1 = u0 + per + (part < extra ? 1 : 0);
  *a = u0 * align < n ? u0 * align : n;
  *b = u1 * align < n ? u1 * align : n;
}

/* ---- scratch (grown once to the largest size seen) ------------------------------------------ */

static void *grow(void **buf, size_t *cap, size_t need) {
  if (need > *cap) {
    free(*buf);
    *buf = aligned_alloc(64, (need + 63) & ~(size_t)63);
    *cap = *buf ? need : 0;
  }
  return *buf;
}

static void *acts_q, *acts_d, *acts_sum, *acts_dsum, *attn_scratch, *attn_parts, *attn_outs;
static size_t acts_q_cap, acts_d_cap, acts_sum_cap, acts_dsum_cap, attn_scratch_cap, attn_parts_cap, attn_outs_cap;

/* ---- argument helpers ----------------------------------------------------------------------- */

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != napi_ok) {                                                 \
      napi_throw_error(env, NULL, "quantspec native: bad argument");        \
      return NULL;                                                           \
    }                                                                        \
  } while (0)

static int ta(napi_env env, napi_value v, void **data, size_t *bytes) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) {
    *data = NULL;
    if (bytes) *bytes = 0;
    return 1;
  }
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, data, &ab, &offset) != napi_ok) return 0;
  if (bytes) {
    size_t el = 1;
    if (type == napi_float32_array || type == napi_int32_array || type == napi_uint32_array) el = 4;
    else if (type == napi_uint16_array || type == napi_int16_array) el = 2;
    *bytes = length * el;
  }
  return 1;
}

static int i32(napi_env env, napi_value v, int *out) {
  int32_t x;
  if (napi_get_value_int32(env, v, &x) != napi_ok) return 0;
  *out = x;
  return 1;
}

#define ARGS(N)                                                              \
  size_t argc = N;                                                           \
  napi_value argv[N];                                                        \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));               \
  if (argc < N) {                                                            \
    napi_throw_error(env, NULL, "quantspec native: too few arguments");     \
    return NULL;                                                             \
  }

#define PTR(i, var) void *var; CHECK(ta(env, argv[i], &var, NULL) ? napi_ok : napi_invalid_arg)
#define INT(i, var) int var; CHECK(i32(env, argv[i], &var) ? napi_ok : napi_invalid_arg)

/* ---- matmul ------------------------------------------------------------------------------- */

typedef struct {
  float *out;
  const float *x;
  const void *w;
  int dtype, rows, cols, n;
} mm_ctx;

static void mm_job(void *p, int part, int n_parts) {
  mm_ctx *c = (mm_ctx *)p;
  int r0, r1;
  share(c->rows, part, n_parts, 4, &r0, &r1);
  if (r0 >= r1) return;
  if (c->dtype == 0) K->matmul_f32(c->out, c->x, (const float *)c->w, c->rows, c->cols, c->n, r0, r1);
  else if (c->dtype == 1) K->matmul_f16(c->out, c->x, (const uint16_t *)c->w, c->rows, c->cols, c->n, r0, r1);
  else K->matmul_bf16(c->out, c->x, (const uint16_t *)c->w, c->rows, c->cols, c->n, r0, r1);
}

/* matmul(out, x, w, dtype 0=f32|1=f16|2=bf16, rows, cols, n) */
static napi_value js_matmul(napi_env env, napi_callback_info info) {
  ARGS(7);
  PTR(0, out); PTR(1, x); PTR(2, w);
  INT(3, dtype); INT(4, rows); INT(5, cols); INT(6, n);
  mm_ctx c = {out, x, w, dtype, rows, cols, n};
  pool_run(mm_job, &c);
  return NULL;
}

typedef struct {
  float *out;
  const float *x;
  q4_weights w;
  q8_acts a;
  int rows, cols, n;
} q4_ctx;

static void q4_quant_job(void *p, int part, int n_parts) {
  q4_ctx *c = (q4_ctx *)p;
  int t0, t1;
  share(c->n, part, n_parts, 1, &t0, &t1);
  if (t0 < t1) K->quantize_acts((int8_t *)c->a.q, (float *)c->a.d, (int32_t *)c->a.sum, (float *)c->a.dsum, c->x, c->cols, c->a.nb, t0, t1);
}

static void q4_job(void *p, int part, int n_parts) {
  q4_ctx *c = (q4_ctx *)p;
  int r0, r1;
  share(c->rows, part, n_parts, 4, &r0, &r1);
  if (r0 < r1) K->matmul_q4(c->out, &c->a, &c->w, c->rows, c->n, r0, r1);
}

/* matmulQ4(out, x, codes, scales, mins, rows, cols, n) with Q4 blocks of 32 (see kernels.h). */
static napi_value js_matmul_q4(napi_env env, napi_callback_info info) {
  ARGS(8);
  PTR(0, out); PTR(1, x); PTR(2, codes); PTR(3, scales); PTR(4, mins);
  INT(5, rows); INT(6, cols); INT(7, n);
  const int nb = (cols + QK - 1) / QK;
  q4_ctx c;
  c.out = out;
  c.x = x;
  c.w.codes = codes;
  c.w.scales = (const uint16_t *)scales;
  c.w.mins = (const uint16_t *)mins;
  c.w.nb = nb;
  c.a.q = grow(&acts_q, &acts_q_cap, (size_t)n * nb * QK);
  c.a.d = grow(&acts_d, &acts_d_cap, (size_t)n * nb * sizeof(float));
  c.a.sum = grow(&acts_sum, &acts_sum_cap, (size_t)n * nb * sizeof(int32_t));
  c.a.dsum = grow(&acts_dsum, &acts_dsum_cap, (size_t)n * nb * sizeof(float));
  c.a.nb = nb;
  c.rows = rows;
  c.cols = cols;
  c.n = n;
  if (!c.a.q || !c.a.d || !c.a.sum || !c.a.dsum) {
    napi_throw_error(env, NULL, "quantspec native: out of memory");
    return NULL;
  }
  if (n > 1) pool_run(q4_quant_job, &c);
  else K->quantize_acts((int8_t *)c.a.q, (float *)c.a.d, (int32_t *)c.a.sum, (float *)c.a.dsum, c.x, cols, nb, 0, 1);
  pool_run(q4_job, &c);
  return NULL;
}

/* ---- attention ---------------------------------------------------------------------------- */

#define MAX_GROUPS 8
/* Positions per dense work item (rounded up to whole key groups). */
#define ATTN_CHUNK 256

typedef struct {
  attn_args a;
  int n_rep;
  int chunk; /* positions per dense work item */
  /* Queries with the same quantization boundary form a group; one pass over the cache serves a group. */
  int n_groups;
  int group_q0[MAX_GROUPS + 1]; /* group k = queries [group_q0[k], group_q0[k + 1]) */
  int group_lo[MAX_GROUPS], group_hi[MAX_GROUPS], group_items0[MAX_GROUPS + 1];
  int dense_items;  /* items [0, dense_items): (group, chunk); then one sparse item per query */
  int n_items;
  size_t slot;      /* partials per item: nq * n_heads */
  size_t scratch_per_thread;
} at_ctx;

/* The dense positions query `query` sees: [*lo, *hi). A sparse selection adds its own positions. */
static void visible_range(const attn_args *a, int query, int *lo, int *hi) {
  const int pos = a->start_pos + query;
  *lo = dense_lo(a, pos);
  *hi = pos + 1;
}

static void empty_parts(attn_partial *p, int n) {
  for (int i = 0; i < n; i++) p[i].m = -INFINITY, p[i].l = 0;
}

static void attn_job(void *p, int part, int n_parts) {
  at_ctx *c = (at_ctx *)p;
  const attn_args *a = &c->a;
  const int d = a->head_dim, n_rep = c->n_rep;
  float *scratch = (float *)attn_scratch + (size_t)part * c->scratch_per_thread;
  int i0, i1;
  share(c->n_items, part, n_parts, 1, &i0, &i1);
  for (int item = i0; item < i1; item++) {
    attn_partial *parts = (attn_partial *)attn_parts + (size_t)item * c->slot;
    float *outs = (float *)attn_outs + (size_t)item * c->slot * d;
    if (item < c->dense_items) {
      int k = 0;
      while (item >= c->group_items0[k + 1]) k++;
      const int p0 = c->group_lo[k] + (item - c->group_items0[k]) * c->chunk;
      const int p1 = p0 + c->chunk < c->group_hi[k] ? p0 + c->chunk : c->group_hi[k];
      K->attention_rows(a, c->group_q0[k], c->group_q0[k + 1], p0, p1, scratch, parts, outs);
      continue;
    }
    /* sparse selection of one query: the selected positions inside its window that precede its dense range */
    const kv_view *kv = a->kv;
    const int query = item - c->dense_items;
    const int pos = a->start_pos + query;
    const int wlo = a->window > 0 ? pos - a->window + 1 : 0;
    int lo, hi;
    visible_range(a, query, &lo, &hi);
    for (int g = 0; g < a->n_kv_heads; g++) {
      const int32_t *sel = kv->sel_positions + (size_t)g * kv->sel_stride;
      int k0 = 0;
      while (k0 < kv->sel_count && sel[k0] < wlo) k0++;
      int k1 = k0;
      while (k1 < kv->sel_count && sel[k1] < lo && sel[k1] <= pos) k1++;
      if (k1 > k0) K->attention_head(a, query, g, 0, k1 - k0, sel + k0, scratch, parts + g * n_rep, outs + (size_t)g * n_rep * d);
      else empty_parts(parts + g * n_rep, n_rep);
    }
  }
}

/* Merge, for every (query, head), its partials over the group's chunks (and its sparse item) by
 * log-sum-exp into out; empty partials contribute nothing. */
static void attn_merge(at_ctx *c) {
  const attn_args *a = &c->a;
  const int d = a->head_dim, n_heads = a->n_heads, n_rep = c->n_rep;
  for (int k = 0; k < c->n_groups; k++) {
    const int q0 = c->group_q0[k], nqs = c->group_q0[k + 1] - q0, nj = nqs * n_rep;
    for (int query = q0; query < q0 + nqs; query++) {
      for (int h = 0; h < n_heads; h++) {
        const int g = h / n_rep, r = h % n_rep;
        const size_t gp = (size_t)g * nj + (size_t)(query - q0) * n_rep + r; /* pair index in dense items */
        const size_t sp = (size_t)h;                                        /* index in the sparse item */
        const int n_dense = c->group_items0[k + 1] - c->group_items0[k];
        const int has_sparse = a->kv->sel_positions != NULL;
        float m = -INFINITY;
        for (int it = 0; it < n_dense + has_sparse; it++) {
          const size_t item = it < n_dense ? (size_t)(c->group_items0[k] + it) : (size_t)(c->dense_items + query);
          const attn_partial *pp = (attn_partial *)attn_parts + item * c->slot + (it < n_dense ? gp : sp);
          if (pp->l > 0 && pp->m > m) m = pp->m;
        }
        float *o = a->out + ((size_t)query * n_heads + h) * d;
        memset(o, 0, sizeof(float) * d);
        float l = 0;
        for (int it = 0; it < n_dense + has_sparse; it++) {
          const size_t item = it < n_dense ? (size_t)(c->group_items0[k] + it) : (size_t)(c->dense_items + query);
          const size_t idx = it < n_dense ? gp : sp;
          const attn_partial *pp = (attn_partial *)attn_parts + item * c->slot + idx;
          if (!(pp->l > 0)) continue;
          const float w = expf(pp->m - m);
          l += pp->l * w;
          const float *src = (float *)attn_outs + (item * c->slot + idx) * d;
          for (int i = 0; i < d; i++) o[i] += src[i] * w;
        }
        const float inv = l > 0 ? 1.0f / l : 0.0f;
        for (int i = 0; i < d; i++) o[i] *= inv;
      }
    }
  }
}

/* attention(out, q, nq, startPos, nHeads, nKvHeads, headDim, window,
 *           fpDtype, fpKeys, fpValues, fpStart, bits,
 *           kUpper, kLower, kScale, kMin, vUpper, vLower, vScale, vMin, groupK, groupV,
 *           selPositions, selCount, selStride, selDenseFrom, selRecent) */
static napi_value js_attention(napi_env env, napi_callback_info info) {
  ARGS(28);
  PTR(0, out); PTR(1, q);
  INT(2, nq); INT(3, start_pos); INT(4, n_heads); INT(5, n_kv_heads); INT(6, head_dim); INT(7, window);
  INT(8, fp_dtype); PTR(9, fp_keys); PTR(10, fp_values); INT(11, fp_start); INT(12, bits);
  PTR(13, ku); PTR(14, kl); PTR(15, ks); PTR(16, km); PTR(17, vu); PTR(18, vl); PTR(19, vs); PTR(20, vm);
  INT(21, group_k); INT(22, group_v);
  PTR(23, sel); INT(24, sel_count); INT(25, sel_stride); INT(26, sel_dense_from); INT(27, sel_recent);
  kv_planes planes = {n_kv_heads * head_dim, group_k, group_v, ku, kl, ks, km, vu, vl, vs, vm};
  kv_view kv = {fp_dtype, fp_keys, fp_values, fp_start, ku ? &planes : NULL, bits,
                sel, sel_count, sel_stride, sel_dense_from, sel_recent};
  at_ctx c;
  c.a.out = out;
  c.a.q = q;
  c.a.nq = nq;
  c.a.start_pos = start_pos;
  c.a.n_heads = n_heads;
  c.a.n_kv_heads = n_kv_heads;
  c.a.head_dim = head_dim;
  c.a.window = window;
  c.a.kv = &kv;
  c.n_rep = n_heads / n_kv_heads;
  /* Group consecutive queries by quantization boundary (at most two in a batch of <= G tokens). */
  c.n_groups = 0;
  for (int qi = 0; qi < nq; qi++) {
    const int b = ku ? quant_boundary(start_pos + qi, group_k) : 0;
    const int prev = qi > 0 && ku ? quant_boundary(start_pos + qi - 1, group_k) : 0;
    if (qi == 0 || b != prev) {
      if (c.n_groups == MAX_GROUPS) {
        napi_throw_error(env, NULL, "quantspec native: a batch spans too many key groups; use batches of at most one group");
        return NULL;
      }
      c.group_q0[c.n_groups++] = qi;
    }
  }
  c.group_q0[c.n_groups] = nq;
  /* Chunks of ATTN_CHUNK positions (whole key groups) at absolute multiples of the chunk size:
   * a query's partials then do not depend on the other queries of its batch (a verify pass gives
   * bit for bit what decoding the same tokens one by one gives), because masked positions add
   * exact zeros and every sum keeps its order. */
  int chunk = ATTN_CHUNK;
  if (ku && chunk % group_k != 0) chunk = (chunk / group_k + 1) * group_k;
  for (int k = 0; k < c.n_groups; k++) {
    int lo = 1 << 30, hi = 0;
    for (int qi = c.group_q0[k]; qi < c.group_q0[k + 1]; qi++) {
      int l, h;
      visible_range(&c.a, qi, &l, &h);
      if (l < lo) lo = l;
      if (h > hi) hi = h;
    }
    c.group_lo[k] = (lo / chunk) * chunk;
    c.group_hi[k] = hi > lo ? hi : c.group_lo[k];
  }
  c.chunk = chunk;
  c.group_items0[0] = 0;
  for (int k = 0; k < c.n_groups; k++)
    c.group_items0[k + 1] = c.group_items0[k] + (c.group_hi[k] - c.group_lo[k] + chunk - 1) / chunk;
  c.dense_items = c.group_items0[c.n_groups];
  c.n_items = c.dense_items + (sel ? nq : 0);
  c.slot = (size_t)nq * n_heads;
  const size_t rows_scratch = attn_rows_scratch(nq * n_heads, head_dim, chunk);
  const size_t head_scratch = (size_t)head_dim * 2 + (size_t)c.n_rep * (chunk > sel_stride ? chunk : sel_stride) + 64;
  c.scratch_per_thread = ((rows_scratch > head_scratch ? rows_scratch : head_scratch) + 15) & ~(size_t)15;
  if (!grow(&attn_scratch, &attn_scratch_cap, c.scratch_per_thread * pool.n_threads * sizeof(float)) ||
      !grow(&attn_parts, &attn_parts_cap, (size_t)c.n_items * c.slot * sizeof(attn_partial)) ||
      !grow(&attn_outs, &attn_outs_cap, (size_t)c.n_items * c.slot * head_dim * sizeof(float))) {
    napi_throw_error(env, NULL, "quantspec native: out of memory");
    return NULL;
  }
  pool_run(attn_job, &c);
  attn_merge(&c);
  return NULL;
}

/* quantizeKv(kUpper, kLower, kScale, kMin, vUpper, vLower, vScale, vMin, kvDim, groupK, groupV,
 *            fpDtype, fpKeys, fpValues, srcRow, dstPos, nTokens) */
static napi_value js_quantize_kv(napi_env env, napi_callback_info info) {
  ARGS(17);
  PTR(0, ku); PTR(1, kl); PTR(2, ks); PTR(3, km); PTR(4, vu); PTR(5, vl); PTR(6, vs); PTR(7, vm);
  INT(8, kv_dim); INT(9, group_k); INT(10, group_v); INT(11, fp_dtype); PTR(12, fk); PTR(13, fv);
  INT(14, src_row); INT(15, dst_pos); INT(16, n_tokens);
  kv_planes p = {kv_dim, group_k, group_v, ku, kl, ks, km, vu, vl, vs, vm};
  kv_quantize(&p, ku, kl, ks, km, vu, vl, vs, vm, fp_dtype, fk, fv, src_row, dst_pos, n_tokens);
  return NULL;
}

/* ---- elementwise kernels -------------------------------------------------------------------- */

/* Below this many elements the calling thread does the work alone: waking the pool costs more. */
#define EW_PARALLEL_MIN (1 << 15)

/* A typed array argument and its length in bytes. */
#define PTRB(i, var, bytes) void *var; size_t bytes; CHECK(ta(env, argv[i], &var, &bytes) ? napi_ok : napi_invalid_arg)

/* Throws (and returns 0) unless a buffer of `have` bytes holds `need`. */
static int fits(napi_env env, size_t have, size_t need, const char *what) {
  if (have >= need) return 1;
  char msg[160];
  snprintf(msg, sizeof msg, "quantspec native: %s is too small (%zu bytes, needs %zu)", what, have, need);
  napi_throw_range_error(env, "ERR_QUANTSPEC_SHAPE", msg);
  return 0;
}

enum { EW_RMSNORM, EW_ROPE, EW_EMBED, EW_ADD, EW_SILU };

typedef struct {
  int op;
  float *out;
  const float *x, *w; /* rope: the cos and sin tables; add: x or the bias in w */
  const void *table;
  const int32_t *tokens;
  int rows, dim, dtype; /* rows: the unit split across threads (rows, tokens or elements) */
  double eps;
  int n_heads, head_dim, start_pos, layout;
} ew_ctx;

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

static void ew_run(ew_ctx *c, size_t elements) {
  if (elements < EW_PARALLEL_MIN) ew_job(c, 0, 1);
  else pool_run(ew_job, c);
}

/* rmsnorm(out, x, weight, nRows, dim, eps); out may alias x */
static napi_value js_rmsnorm(napi_env env, napi_callback_info info) {
  ARGS(6);
  PTRB(0, out, out_b); PTRB(1, x, x_b); PTRB(2, w, w_b);
  INT(3, rows); INT(4, dim);
  double eps;
  CHECK(napi_get_value_double(env, argv[5], &eps));
  const size_t n = (size_t)rows * dim * 4;
  if (rows < 0 || dim < 1 || !fits(env, out_b, n, "rmsnorm out") || !fits(env, x_b, n, "rmsnorm x") ||
      !fits(env, w_b, (size_t)dim * 4, "rmsnorm weight"))
    return NULL;
  ew_ctx c = {.op = EW_RMSNORM, .out = out, .x = x, .w = w, .rows = rows, .dim = dim, .eps = eps};
  ew_run(&c, (size_t)rows * dim);
  return NULL;
}

/* rope(x, nTokens, nHeads, headDim, startPos, cos, sin, layout) */
static napi_value js_rope(napi_env env, napi_callback_info info) {
  ARGS(8);
  PTRB(0, x, x_b);
  INT(1, n); INT(2, n_heads); INT(3, head_dim); INT(4, start_pos);
  PTRB(5, cos_t, cos_b); PTRB(6, sin_t, sin_b);
  INT(7, layout);
  const size_t table = (size_t)(start_pos + n) * (head_dim / 2) * 4;
  if (n < 0 || n_heads < 1 || head_dim < 2 || start_pos < 0 || !fits(env, x_b, (size_t)n * n_heads * head_dim * 4, "rope x") ||
      !fits(env, cos_b, table, "rope cos table") || !fits(env, sin_b, table, "rope sin table"))
    return NULL;
  ew_ctx c = {.op = EW_ROPE, .out = x, .x = cos_t, .w = sin_t, .rows = n, .n_heads = n_heads, .head_dim = head_dim,
              .start_pos = start_pos, .layout = layout};
  ew_run(&c, (size_t)n * n_heads * head_dim);
  return NULL;
}

/* embed(out, table, dtype 0=f32|1=f16|2=bf16, vocab, dim, tokens, nTokens) */
static napi_value js_embed(napi_env env, napi_callback_info info) {
  ARGS(7);
  PTRB(0, out, out_b); PTRB(1, table, table_b);
  INT(2, dtype); INT(3, vocab); INT(4, dim);
  PTRB(5, tokens, tokens_b);
  INT(6, n);
  const size_t el = dtype == 0 ? 4 : 2;
  if (n < 0 || dim < 1 || !fits(env, out_b, (size_t)n * dim * 4, "embed out") ||
      !fits(env, table_b, (size_t)vocab * dim * el, "embedding table") || !fits(env, tokens_b, (size_t)n * 4, "embed tokens"))
    return NULL;
  for (int t = 0; t < n; t++) {
    const int32_t id = ((const int32_t *)tokens)[t];
    if (id < 0 || id >= vocab) {
      char msg[120];
      snprintf(msg, sizeof msg, "quantspec native: token id %d is outside the vocabulary [0, %d)", id, vocab);
      napi_throw_range_error(env, "ERR_QUANTSPEC_SHAPE", msg);
      return NULL;
    }
  }
  ew_ctx c = {.op = EW_EMBED, .out = out, .table = table, .tokens = tokens, .rows = n, .dim = dim, .dtype = dtype};
  ew_run(&c, (size_t)n * dim);
  return NULL;
}

/* add(out, x, null, nRows, dim): out += x; add(out, null, bias, nRows, dim): out[r] += bias */
static napi_value js_add(napi_env env, napi_callback_info info) {
  ARGS(5);
  PTRB(0, out, out_b); PTRB(1, x, x_b); PTRB(2, bias, bias_b);
  INT(3, rows); INT(4, dim);
  const size_t n = (size_t)rows * dim * 4;
  if (rows < 0 || dim < 1 || !fits(env, out_b, n, "add out") || !fits(env, bias ? bias_b : x_b, bias ? (size_t)dim * 4 : n, "add input"))
    return NULL;
  ew_ctx c = {.op = EW_ADD, .out = out, .x = x, .w = bias, .rows = rows, .dim = dim};
  ew_run(&c, (size_t)rows * dim);
  return NULL;
}

/* siluMul(gate, up, n): gate = silu(gate) · up */
static napi_value js_silu_mul(napi_env env, napi_callback_info info) {
  ARGS(3);
  PTRB(0, gate, gate_b); PTRB(1, up, up_b);
  INT(2, n);
  if (n < 0 || !fits(env, gate_b, (size_t)n * 4, "siluMul gate") || !fits(env, up_b, (size_t)n * 4, "siluMul up")) return NULL;
  ew_ctx c = {.op = EW_SILU, .out = gate, .x = up, .rows = n};
  ew_run(&c, (size_t)n);
  return NULL;
}

/* ---- memory bandwidth probe ----------------------------------------------------------------- */

typedef struct {
  const float *data;
  size_t n;
  double partial[MAX_THREADS];
} sum_ctx;

static void sum_job(void *p, int part, int n_parts) {
  sum_ctx *c = (sum_ctx *)p;
  const size_t per = (c->n / n_parts) & ~(size_t)63;
  const size_t a = per * part, b = part == n_parts - 1 ? c->n : a + per;
  /* eight independent accumulators: a streaming read, as fast as the memory allows */
  float acc[8] = {0};
  size_t i = a;
  for (; i + 8 <= b; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += c->data[i + k];
  double s = 0;
  for (int k = 0; k < 8; k++) s += acc[k];
  for (; i < b; i++) s += c->data[i];
  c->partial[part] = s;
}

/* readSum(f32array) -> sum, read by all threads: the benchmark's measure of read bandwidth. */
static napi_value js_read_sum(napi_env env, napi_callback_info info) {
  ARGS(1);
  void *data;
  size_t bytes;
  CHECK(ta(env, argv[0], &data, &bytes) ? napi_ok : napi_invalid_arg);
  sum_ctx c;
  c.data = data;
  c.n = bytes / 4;
  pool_run(sum_job, &c);
  double s = 0;
  for (int i = 0; i < pool.n_threads; i++) s += c.partial[i];
  napi_value result;
  CHECK(napi_create_double(env, s, &result));
  return result;
}

/* ---- setup ---------------------------------------------------------------------------------- */

#if defined(__x86_64__) || defined(_M_X64)
static kernel_table avx512_table;
#endif

static const kernel_table *pick(const char *want) {
#if defined(__x86_64__) || defined(_M_X64)
  const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const int has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  avx512_table = kernels_avx512;
  avx512_table.attention_head = kernels_avx2.attention_head;
  avx512_table.silu_mul = kernels_avx2.silu_mul;
  if (want && strcmp(want, "scalar") == 0) return &kernels_scalar;
  if (want && strcmp(want, "avx2") == 0) return has_avx2 ? &kernels_avx2 : NULL;
  if (want && strcmp(want, "avx512") == 0) return has_avx512 ? &avx512_table : NULL;
  if (want && *want) return NULL;
  return has_avx512 ? &avx512_table : has_avx2 ? &kernels_avx2 : &kernels_scalar;
#else
  if (want && *want && strcmp(want, "scalar") != 0) return NULL;
  return &kernels_scalar;
#endif
}

/* init(threads, isa) -> { isa, threads }; isa '' = best available. Throws on an unavailable isa. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  ARGS(2);
  INT(0, threads);
  char isa[32] = {0};
  size_t len = 0;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[1], &t));
  if (t == napi_string) CHECK(napi_get_value_string_utf8(env, argv[1], isa, sizeof(isa), &len));
  const kernel_table *k = pick(isa);
  if (!k) {
    napi_throw_error(env, "ERR_QUANTSPEC_ISA", "the requested kernel path is not available on this CPU");
    return NULL;
  }
  K = k;
  pool_start(threads);
  napi_value result, name, n;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_string_utf8(env, K->name, NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_int32(env, pool.n_threads, &n));
  CHECK(napi_set_named_property(env, result, "isa", name));
  CHECK(napi_set_named_property(env, result, "threads", n));
  return result;
}

static napi_value init_module(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
    {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
    {"matmul", NULL, js_matmul, NULL, NULL, NULL, napi_default, NULL},
    {"matmulQ4", NULL, js_matmul_q4, NULL, NULL, NULL, napi_default, NULL},
    {"attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL},
    {"quantizeKv", NULL, js_quantize_kv, NULL, NULL, NULL, napi_default, NULL},
    {"rmsnorm", NULL, js_rmsnorm, NULL, NULL, NULL, napi_default, NULL},
    {"rope", NULL, js_rope, NULL, NULL, NULL, napi_default, NULL},
    {"embed", NULL, js_embed, NULL, NULL, NULL, napi_default, NULL},
    {"add", NULL, js_add, NULL, NULL, NULL, napi_default, NULL},
    {"siluMul", NULL, js_silu_mul, NULL, NULL, NULL, napi_default, NULL},
    {"readSum", NULL, js_read_sum, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
