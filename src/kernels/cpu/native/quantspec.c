/* quantspec native CPU backend: Node-API bindings, the kernel table chosen at load time, and a
 * persistent thread pool (workers spin briefly, then sleep on a futex) that splits work by rows
 * or attention work items. Built by scripts/build-native.mjs; see src/kernels/cpu/index.ts. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
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

static void *acts_q, *acts_d, *acts_sum, *attn_scratch, *attn_parts, *attn_outs;
static size_t acts_q_cap, acts_d_cap, acts_sum_cap, attn_scratch_cap, attn_parts_cap, attn_outs_cap;

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
  if (t0 < t1) K->quantize_acts((int8_t *)c->a.q, (float *)c->a.d, (int32_t *)c->a.sum, c->x, c->cols, c->a.nb, t0, t1);
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
  c.w.scales = scales;
  c.w.mins = mins;
  c.w.nb = nb;
  c.a.q = grow(&acts_q, &acts_q_cap, (size_t)n * nb * QK);
  c.a.d = grow(&acts_d, &acts_d_cap, (size_t)n * nb * sizeof(float));
  c.a.sum = grow(&acts_sum, &acts_sum_cap, (size_t)n * nb * sizeof(int32_t));
  c.a.nb = nb;
  c.rows = rows;
  c.cols = cols;
  c.n = n;
  if (!c.a.q || !c.a.d || !c.a.sum) {
    napi_throw_error(env, NULL, "quantspec native: out of memory");
    return NULL;
  }
  if (n > 1) pool_run(q4_quant_job, &c);
  else K->quantize_acts((int8_t *)c.a.q, (float *)c.a.d, (int32_t *)c.a.sum, c.x, cols, nb, 0, 1);
  pool_run(q4_job, &c);
  return NULL;
}

/* ---- attention ---------------------------------------------------------------------------- */

#define CHUNK 512

typedef struct {
  attn_args a;
  int n_rep;
  /* work items: (query, kv head, chunk) */
  int n_items;
  int max_chunks;
  size_t scratch_per_thread;
} at_ctx;

/* The positions query `query` sees are split into chunks: item k of a (query, kv head) pair is
 * chunk k of the dense range, plus (as the last chunk) the sparse selection when there is one. */
static void visible_range(const attn_args *a, int query, int *lo, int *hi) {
  const int pos = a->start_pos + query;
  int from = a->window > 0 ? (pos - a->window + 1 > 0 ? pos - a->window + 1 : 0) : 0;
  const kv_view *kv = a->kv;
  if (kv->sel_positions) {
    int f = kv->sel_dense_from;
    if (kv->sel_recent > 0 && pos - kv->sel_recent + 1 > f) f = pos - kv->sel_recent + 1;
    if (f > from) from = f;
  }
  *lo = from;
  *hi = pos + 1;
}

static void attn_job(void *p, int part, int n_parts) {
  at_ctx *c = (at_ctx *)p;
  const attn_args *a = &c->a;
  const int d = a->head_dim, n_rep = c->n_rep;
  float *scratch = (float *)attn_scratch + (size_t)part * c->scratch_per_thread;
  int i0, i1;
  share(c->n_items, part, n_parts, 1, &i0, &i1);
  for (int item = i0; item < i1; item++) {
    const int chunk = item % c->max_chunks;
    const int pair = item / c->max_chunks;
    const int query = pair / a->n_kv_heads, g = pair % a->n_kv_heads;
    attn_partial *part_out = (attn_partial *)attn_parts + (size_t)item * n_rep;
    float *out = (float *)attn_outs + (size_t)item * n_rep * d;
    int lo, hi;
    visible_range(a, query, &lo, &hi);
    const int dense_chunks = (hi - lo + CHUNK - 1) / CHUNK;
    const kv_view *kv = a->kv;
    if (chunk < dense_chunks) {
      const int p0 = lo + chunk * CHUNK;
      const int p1 = p0 + CHUNK < hi ? p0 + CHUNK : hi;
      K->attention_chunk(a, query, g, p0, p1, NULL, scratch, part_out, out);
    } else if (chunk == dense_chunks && kv->sel_positions && kv->sel_count > 0) {
      /* the selected positions within the window that come before the dense range */
      const int32_t *sel = kv->sel_positions + (size_t)g * kv->sel_stride;
      const int pos = a->start_pos + query;
      const int wlo = a->window > 0 ? pos - a->window + 1 : 0;
      int k0 = 0, k1 = 0;
      while (k0 < kv->sel_count && sel[k0] < wlo) k0++;
      k1 = k0;
      while (k1 < kv->sel_count && sel[k1] < lo && sel[k1] <= pos) k1++;
      if (k1 > k0) K->attention_chunk(a, query, g, 0, k1 - k0, sel + k0, scratch, part_out, out);
      else for (int r = 0; r < n_rep; r++) part_out[r].m = -INFINITY, part_out[r].l = 0;
    } else {
      for (int r = 0; r < n_rep; r++) part_out[r].m = -INFINITY, part_out[r].l = 0;
    }
  }
}

/* Merge the chunks of every (query, kv head) pair by log-sum-exp into out. */
static void attn_merge(at_ctx *c) {
  const attn_args *a = &c->a;
  const int d = a->head_dim, n_rep = c->n_rep;
  for (int pair = 0; pair < a->nq * a->n_kv_heads; pair++) {
    const int query = pair / a->n_kv_heads, g = pair % a->n_kv_heads;
    for (int r = 0; r < n_rep; r++) {
      float m = -INFINITY;
      for (int k = 0; k < c->max_chunks; k++) {
        const attn_partial *pp = (attn_partial *)attn_parts + ((size_t)pair * c->max_chunks + k) * n_rep + r;
        if (pp->l > 0 && pp->m > m) m = pp->m;
      }
      float *o = a->out + ((size_t)query * a->n_heads + g * n_rep + r) * d;
      memset(o, 0, sizeof(float) * d);
      float l = 0;
      for (int k = 0; k < c->max_chunks; k++) {
        const size_t item = (size_t)pair * c->max_chunks + k;
        const attn_partial *pp = (attn_partial *)attn_parts + item * n_rep + r;
        if (!(pp->l > 0)) continue; /* empty chunks contribute nothing */
        const float w = expf(pp->m - m);
        l += pp->l * w;
        const float *src = (float *)attn_outs + (item * n_rep + r) * d;
        for (int i = 0; i < d; i++) o[i] += src[i] * w;
      }
      const float inv = l > 0 ? 1.0f / l : 0.0f;
      for (int i = 0; i < d; i++) o[i] *= inv;
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
  /* chunks per (query, kv head): the longest dense range, plus one for a sparse selection */
  int max_dense = 0;
  for (int qi = 0; qi < nq; qi++) {
    int lo, hi;
    visible_range(&c.a, qi, &lo, &hi);
    const int ch = (hi - lo + CHUNK - 1) / CHUNK;
    if (ch > max_dense) max_dense = ch;
  }
  c.max_chunks = max_dense + (sel ? 1 : 0);
  if (c.max_chunks < 1) c.max_chunks = 1;
  c.n_items = nq * n_kv_heads * c.max_chunks;
  const int max_count = CHUNK > sel_stride ? CHUNK : sel_stride;
  c.scratch_per_thread = ((size_t)head_dim * 2 + (size_t)c.n_rep * max_count + 64 + 15) & ~(size_t)15;
  if (!grow(&attn_scratch, &attn_scratch_cap, c.scratch_per_thread * pool.n_threads * sizeof(float)) ||
      !grow(&attn_parts, &attn_parts_cap, (size_t)c.n_items * c.n_rep * sizeof(attn_partial)) ||
      !grow(&attn_outs, &attn_outs_cap, (size_t)c.n_items * c.n_rep * head_dim * sizeof(float))) {
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

/* ---- setup ---------------------------------------------------------------------------------- */

static const kernel_table *pick(const char *want) {
#if defined(__x86_64__) || defined(_M_X64)
  const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (want && strcmp(want, "scalar") == 0) return &kernels_scalar;
  if (want && strcmp(want, "avx2") == 0) return has_avx2 ? &kernels_avx2 : NULL;
  if (want && *want) return NULL;
  return has_avx2 ? &kernels_avx2 : &kernels_scalar;
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
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
