/* quantspec native CPU backend: the Node-API bindings. Each binding checks its arguments and calls
 * the thread pool (pool.c), the kernel jobs (jobs.c), the attention scheduler (attention.c) or the
 * kernel table chosen at load (isa.c). Built by scripts/build-native.mjs; see src/kernels/cpu/index.ts. */
#define NAPI_VERSION 8
#include <node_api.h>
#ifndef _WIN32
#include <dlfcn.h>
#include <sys/mman.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "attention.h"
#include "isa.h"
#include "jobs.h"
#include "kernels.h"
#include "pool.h"

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

/* The pool and the kernels' scratch are one per process, while JavaScript may call from several
 * threads (a model in each worker thread): each call holds the kernel lock, so callers take
 * turns (there are only as many pool threads as cores anyway). */
#define KERNEL(call) do { pool_lock(); call; pool_unlock(); } while (0)

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

/* ---- matmul ------------------------------------------------------------------------------- */

/* matmul(out, x, w, dtype 0=f32|1=f16|2=bf16, rows, cols, n) */
static napi_value js_matmul(napi_env env, napi_callback_info info) {
  ARGS(7);
  PTR(0, out); PTR(1, x); PTR(2, w);
  INT(3, dtype); INT(4, rows); INT(5, cols); INT(6, n);
  KERNEL(matmul_run(out, x, w, dtype, rows, cols, n));
  return NULL;
}

/* matmulQ4(out, x, codes, scales, mins, rows, cols, n) with Q4 blocks of 32 (see kernels.h). */
static napi_value js_matmul_q4(napi_env env, napi_callback_info info) {
  ARGS(8);
  PTR(0, out); PTR(1, x); PTR(2, codes); PTR(3, scales); PTR(4, mins);
  INT(5, rows); INT(6, cols); INT(7, n);
  int q4_status;
  KERNEL(q4_status = matmul_q4_run(out, x, codes, scales, mins, rows, cols, n));
  if (q4_status != 0) napi_throw_error(env, NULL, "quantspec native: out of memory");
  return NULL;
}

/* matmulQ8(out, x, codes, scales, rows, cols, n) with Q8 blocks of 32 (see kernels.h). */
static napi_value js_matmul_q8(napi_env env, napi_callback_info info) {
  ARGS(7);
  PTR(0, out); PTR(1, x); PTR(2, codes); PTR(3, scales);
  INT(4, rows); INT(5, cols); INT(6, n);
  int q8_status;
  KERNEL(q8_status = matmul_q8_run(out, x, codes, scales, rows, cols, n));
  if (q8_status != 0) napi_throw_error(env, NULL, "quantspec native: out of memory");
  return NULL;
}

/* gemmBf16(out, x, w, dtype 1=f16|2=bf16, rows, cols, n) -> whether it ran: the BF16-activation
 * prompt matmul (jobs.h gemm_bf16_run); false where the kernel path has none. */
static napi_value js_gemm_bf16(napi_env env, napi_callback_info info) {
  ARGS(7);
  PTR(0, out); PTR(1, x); PTR(2, w);
  INT(3, dtype); INT(4, rows); INT(5, cols); INT(6, n);
  int status;
  KERNEL(status = gemm_bf16_run(out, x, w, dtype, rows, cols, n));
  if (status < 0) {
    napi_throw_error(env, NULL, "quantspec native: out of memory");
    return NULL;
  }
  napi_value ran;
  CHECK(napi_get_boolean(env, status == 0, &ran));
  return ran;
}

/* quantizeQ4(src, dtype, rows, cols, group, symmetric, codes, scales, mins): the 4-bit draft of a matrix (jobs.h). */
static napi_value js_quantize_q4(napi_env env, napi_callback_info info) {
  ARGS(9);
  PTRB(0, src, src_bytes); INT(1, dtype); INT(2, rows); INT(3, cols); INT(4, group); INT(5, symmetric);
  PTRB(6, codes, codes_bytes); PTRB(7, scales, scales_bytes); PTRB(8, mins, mins_bytes);
  if (rows < 1 || cols < 1 || group < 32 || group % 32 != 0 || dtype < 0 || dtype > 2) {
    napi_throw_range_error(env, "ERR_QUANTSPEC_SHAPE", "quantspec native: quantizeQ4 takes rows, cols >= 1 and a group that is a multiple of 32");
    return NULL;
  }
  const size_t nb = ((size_t)cols + 31) / 32;
  if (!fits(env, src_bytes, (size_t)rows * cols * (dtype == 0 ? 4 : 2), "the source matrix") || !fits(env, codes_bytes, (size_t)rows * nb * 16, "codes") ||
      !fits(env, scales_bytes, (size_t)rows * nb * 2, "scales") || !fits(env, mins_bytes, (size_t)rows * nb * 2, "mins"))
    return NULL;
  KERNEL(quantize_q4_run(src, dtype, rows, cols, group, symmetric, codes, scales, mins));
  return NULL;
}

/* quantizeQ8(src, dtype, rows, cols, group, codes, scales): the 8-bit blocks of a matrix (jobs.h). */
static napi_value js_quantize_q8(napi_env env, napi_callback_info info) {
  ARGS(7);
  PTRB(0, src, src_bytes); INT(1, dtype); INT(2, rows); INT(3, cols); INT(4, group);
  PTRB(5, codes, codes_bytes); PTRB(6, scales, scales_bytes);
  if (rows < 1 || cols < 1 || group < 32 || group % 32 != 0 || dtype < 0 || dtype > 2) {
    napi_throw_range_error(env, "ERR_QUANTSPEC_SHAPE", "quantspec native: quantizeQ8 takes rows, cols >= 1 and a group that is a multiple of 32");
    return NULL;
  }
  const size_t nb = ((size_t)cols + 31) / 32;
  if (!fits(env, src_bytes, (size_t)rows * cols * (dtype == 0 ? 4 : 2), "the source matrix") || !fits(env, codes_bytes, (size_t)rows * nb * 32, "codes") ||
      !fits(env, scales_bytes, (size_t)rows * nb * 2, "scales"))
    return NULL;
  KERNEL(quantize_q8_run(src, dtype, rows, cols, group, codes, scales));
  return NULL;
}

/* ---- attention ---------------------------------------------------------------------------- */

/* ---- KV bindings: one per layer view, made once with the cache ------------------------------ */

/* A layer view's buffers and scalars, bound once (the typed arrays' memory never moves, and the
 * view that holds the handle keeps them alive); kvRefresh updates what moves on flush/select. */
typedef struct {
  kv_planes planes;
  kv_view view;
} kv_binding;

static void binding_free(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  free(data);
}

/* kvBind(fpDtype, fpKeys, fpValues, bits, kvDim, groupK, groupV, kUpper, kLower, kScale, kMin,
 *        vUpper, vLower, vScale, vMin, selPositions, selStride) -> handle; planes null for an fp or
 * sparse view, selPositions null unless sparse. */
static napi_value js_kv_bind(napi_env env, napi_callback_info info) {
  ARGS(17);
  INT(0, fp_dtype); PTR(1, fp_keys); PTR(2, fp_values); INT(3, bits); INT(4, kv_dim); INT(5, group_k); INT(6, group_v);
  PTR(7, ku); PTR(8, kl); PTR(9, ks); PTR(10, km); PTR(11, vu); PTR(12, vl); PTR(13, vs); PTR(14, vm);
  PTR(15, sel); INT(16, sel_stride);
  kv_binding *b = calloc(1, sizeof *b);
  if (!b) {
    napi_throw_error(env, NULL, "quantspec native: out of memory");
    return NULL;
  }
  b->planes = (kv_planes){kv_dim, group_k, group_v, ku, kl, ks, km, vu, vl, vs, vm};
  b->view = (kv_view){fp_dtype, fp_keys, fp_values, 0, ku ? &b->planes : NULL, bits, sel, 0, sel_stride, 0, 0};
  napi_value handle;
  if (napi_create_external(env, b, binding_free, NULL, &handle) != napi_ok) {
    free(b);
    napi_throw_error(env, NULL, "quantspec native: cannot create a KV handle");
    return NULL;
  }
  return handle;
}

static kv_binding *binding_of(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "quantspec native: not a KV handle (make one with kvBind)");
    return NULL;
  }
  return (kv_binding *)data;
}

/* kvRefresh(handle, fpStart, selCount, selDenseFrom, selRecent) */
static napi_value js_kv_refresh(napi_env env, napi_callback_info info) {
  ARGS(5);
  kv_binding *b = binding_of(env, argv[0]);
  if (!b) return NULL;
  INT(1, fp_start); INT(2, sel_count); INT(3, dense_from); INT(4, recent);
  b->view.fp_start = fp_start;
  b->view.sel_count = sel_count;
  b->view.sel_dense_from = dense_from;
  b->view.sel_recent = recent;
  return NULL;
}

/* quantBoundary(p, G): the C twin of kv/layout.ts quantBoundary, exposed so the two are tested
 * against each other. */
static napi_value js_quant_boundary(napi_env env, napi_callback_info info) {
  ARGS(2);
  INT(0, p); INT(1, g);
  napi_value r;
  CHECK(napi_create_int32(env, quant_boundary(p, g), &r));
  return r;
}

/* splitMinBytes(bytes): the bound below which jobs run on the calling thread alone (pool.h
 * pool_set_parallel_min); a negative argument leaves it. Returns the bound before the call. */
static napi_value js_split_min_bytes(napi_env env, napi_callback_info info) {
  ARGS(1);
  double bytes;
  CHECK(napi_get_value_double(env, argv[0], &bytes));
  pool_lock();
  const size_t old = bytes >= 0 ? pool_set_parallel_min((size_t)bytes) : pool_parallel_min();
  pool_unlock();
  napi_value r;
  CHECK(napi_create_double(env, (double)old, &r));
  return r;
}

/* attention(out, q, nq, startPos, nHeads, nKvHeads, headDim, window, kvHandle) */
static napi_value js_attention(napi_env env, napi_callback_info info) {
  ARGS(9);
  PTR(0, out); PTR(1, q);
  INT(2, nq); INT(3, start_pos); INT(4, n_heads); INT(5, n_kv_heads); INT(6, head_dim); INT(7, window);
  kv_binding *bound = binding_of(env, argv[8]);
  if (!bound) return NULL;
  const attn_args a = {out, q, nq, start_pos, n_heads, n_kv_heads, head_dim, window, &bound->view};
  int r;
  KERNEL(r = attention_run(&a));
  if (r == ATTN_TOO_MANY_GROUPS) napi_throw_error(env, NULL, "quantspec native: a batch spans too many key groups; use batches of at most one group");
  if (r == ATTN_OUT_OF_MEMORY) napi_throw_error(env, NULL, "quantspec native: out of memory");
  return NULL;
}

/* writeKv(fpDtype, fpKeys, fpValues, row, k, v, nTokens, kvDim): new F32 rows k, v [nTokens, kvDim]
 * into the cache's full-precision rows at `row`, as F32 or rounded to F16 (nearest even, as
 * core/half.ts f32ToF16). */
static napi_value js_write_kv(napi_env env, napi_callback_info info) {
  ARGS(8);
  INT(0, dtype);
  PTRB(1, keys, keys_b); PTRB(2, values, values_b);
  INT(3, row);
  PTRB(4, k, k_b); PTRB(5, v, v_b);
  INT(6, n); INT(7, kv_dim);
  const size_t len = (size_t)n * kv_dim, el = dtype == 0 ? 4 : 2, end = ((size_t)row * kv_dim + len) * el;
  if (row < 0 || n < 0 || kv_dim < 1 || !fits(env, keys_b, end, "cache key rows") || !fits(env, values_b, end, "cache value rows") ||
      !fits(env, k_b, len * 4, "new keys") || !fits(env, v_b, len * 4, "new values"))
    return NULL;
  const float *kf = k, *vf = v;
  const size_t base = (size_t)row * kv_dim;
  if (dtype == 0) {
    memcpy((float *)keys + base, kf, len * 4);
    memcpy((float *)values + base, vf, len * 4);
    return NULL;
  }
  uint16_t *kd = (uint16_t *)keys + base, *vd = (uint16_t *)values + base;
  K->f32_to_f16(kd, kf, len);
  K->f32_to_f16(vd, vf, len);
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
  K->kv_quantize(&p, ku, kl, ks, km, vu, vl, vs, vm, fp_dtype, fk, fv, src_row, dst_pos, n_tokens);
  return NULL;
}

/* ---- elementwise kernels -------------------------------------------------------------------- */

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
  KERNEL(ew_run(&c, (size_t)rows * dim));
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
  KERNEL(ew_run(&c, (size_t)n * n_heads * head_dim));
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
  KERNEL(ew_run(&c, (size_t)n * dim));
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
  KERNEL(ew_run(&c, (size_t)rows * dim));
  return NULL;
}

/* siluMul(gate, up, n): gate = silu(gate) · up */
static napi_value js_silu_mul(napi_env env, napi_callback_info info) {
  ARGS(3);
  PTRB(0, gate, gate_b); PTRB(1, up, up_b);
  INT(2, n);
  if (n < 0 || !fits(env, gate_b, (size_t)n * 4, "siluMul gate") || !fits(env, up_b, (size_t)n * 4, "siluMul up")) return NULL;
  ew_ctx c = {.op = EW_SILU, .out = gate, .x = up, .rows = n};
  KERNEL(ew_run(&c, (size_t)n));
  return NULL;
}

/* ---- memory bandwidth probe ----------------------------------------------------------------- */

/* readSum(f32array) -> sum, read by all threads: the benchmark's measure of read bandwidth. */
static napi_value js_read_sum(napi_env env, napi_callback_info info) {
  ARGS(1);
  void *data;
  size_t bytes;
  CHECK(ta(env, argv[0], &data, &bytes) ? napi_ok : napi_invalid_arg);
  napi_value result;
  double sum;
  KERNEL(sum = read_sum(data, bytes / 4));
  CHECK(napi_create_double(env, sum, &result));
  return result;
}

/* mapFile(fd, bytes) -> an ArrayBuffer over the first `bytes` of the open file `fd`, mapped
 * copy-on-write: readable, and writable without ever changing the file (a write gives this process
 * its own copy of the page). Pages come from the page cache as they are first touched, so a model
 * in the page cache is ready without a copy. The mapping outlives the descriptor and goes with the
 * buffer when it is collected. null where there is no mmap or the mapping fails: the caller reads
 * the file instead. */
#ifndef _WIN32
typedef struct { void *base; size_t bytes; } mapping;

static void unmap_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping *m = (mapping *)hint;
  munmap(m->base, m->bytes);
  free(m);
}

/* An ArrayBuffer over the mapping [base, base + bytes), unmapped with it; null (and unmapped now)
 * when it cannot be made. */
static napi_value wrap_mapping(napi_env env, void *base, size_t bytes) {
  napi_value result;
  mapping *m = (mapping *)malloc(sizeof(mapping));
  if (m) {
    m->base = base;
    m->bytes = bytes;
    if (napi_create_external_arraybuffer(env, base, bytes, unmap_finalize, m, &result) == napi_ok) return result;
    free(m);
  }
  munmap(base, bytes);
  napi_get_null(env, &result);
  return result;
}
#endif

static napi_value js_map_file(napi_env env, napi_callback_info info) {
  ARGS(2);
  INT(0, fd);
  double size;
  CHECK(napi_get_value_double(env, argv[1], &size));
  napi_value result;
  CHECK(napi_get_null(env, &result));
#ifndef _WIN32
  if (!(size > 0) || size > (double)SIZE_MAX) return result;
  const size_t bytes = (size_t)size;
  void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (base == MAP_FAILED) return result;
  madvise(base, bytes, MADV_WILLNEED); /* start reading a file that is not cached yet */
  return wrap_mapping(env, base, bytes);
#else
  (void)fd;
#endif
  return result;
}

/* allocLarge(bytes) -> a zeroed ArrayBuffer of its own anonymous mapping, asking for transparent
 * huge pages: a large buffer written once at load (the draft's 4-bit weights) then takes one page
 * fault per 2 MiB instead of one per 4 KiB, and fewer TLB misses when it is read. Unmapped when the
 * buffer is collected; null where there is no mmap (the caller allocates normally). */
static napi_value js_alloc_large(napi_env env, napi_callback_info info) {
  ARGS(1);
  double size;
  CHECK(napi_get_value_double(env, argv[0], &size));
  napi_value result;
  CHECK(napi_get_null(env, &result));
#ifndef _WIN32
  if (!(size > 0) || size > (double)SIZE_MAX / 2) return result;
  const size_t bytes = (size_t)size;
  void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return result;
#ifdef MADV_HUGEPAGE
  madvise(base, bytes, MADV_HUGEPAGE);
#endif
  return wrap_mapping(env, base, bytes);
#else
  return result;
#endif
}

/* peakFlops(kind 0 = FMA | 1 = AMX-BF16 tiles, iters) -> FLOP/s on all threads, 0 where the path lacks it. */
static napi_value js_peak_flops(napi_env env, napi_callback_info info) {
  ARGS(2);
  INT(0, kind);
  INT(1, iters);
  double flops;
  KERNEL(flops = peak_flops_run(kind, iters));
  napi_value result;
  CHECK(napi_create_double(env, flops, &result));
  return result;
}

/* ---- setup ---------------------------------------------------------------------------------- */

/* init(threads, isa) -> { isa, threads, gemmBf16 }; isa '' = best available; gemmBf16: whether the
 * path has the BF16 prompt matmul. Throws on an unavailable isa. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  ARGS(2);
  INT(0, threads);
  char isa[32] = {0};
  size_t len = 0;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[1], &t));
  if (t == napi_string) CHECK(napi_get_value_string_utf8(env, argv[1], isa, sizeof(isa), &len));
  const kernel_table *k = select_kernels(isa);
  if (!k) {
    napi_throw_error(env, "ERR_QUANTSPEC_ISA", "the requested kernel path is not available on this CPU");
    return NULL;
  }
  K = k;
  KERNEL(pool_start(threads));
  napi_value result, name, n;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_string_utf8(env, K->name, NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_int32(env, pool_threads(), &n));
  CHECK(napi_set_named_property(env, result, "isa", name));
  CHECK(napi_set_named_property(env, result, "threads", n));
  napi_value gemm;
  CHECK(napi_get_boolean(env, K->gemm_bf16 != NULL, &gemm));
  CHECK(napi_set_named_property(env, result, "gemmBf16", gemm));
  return result;
}

/* Node unloads an addon when the last thread that loaded it ends (a worker thread's model
 * closing), but the pool's threads live on: reloaded, the library would start a second pool while
 * the first one's threads, resuming in the new copy, ran its jobs too (seen as a crash in a
 * server test). Opening ourselves once more with RTLD_NODELETE keeps the library, and its one
 * pool, for the life of the process. */
static void pin_library(void) {
#ifndef _WIN32
  static int pinned = 0;
  Dl_info info;
  if (!pinned && dladdr((void *)pin_library, &info) && info.dli_fname) pinned = dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE) != NULL;
#endif
}

static napi_value init_module(napi_env env, napi_value exports) {
  pin_library();
  const napi_property_descriptor props[] = {
    {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
    {"matmul", NULL, js_matmul, NULL, NULL, NULL, napi_default, NULL},
    {"matmulQ4", NULL, js_matmul_q4, NULL, NULL, NULL, napi_default, NULL},
    {"matmulQ8", NULL, js_matmul_q8, NULL, NULL, NULL, napi_default, NULL},
    {"gemmBf16", NULL, js_gemm_bf16, NULL, NULL, NULL, napi_default, NULL},
    {"quantizeQ4", NULL, js_quantize_q4, NULL, NULL, NULL, napi_default, NULL},
    {"quantizeQ8", NULL, js_quantize_q8, NULL, NULL, NULL, napi_default, NULL},
    {"attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL},
    {"kvBind", NULL, js_kv_bind, NULL, NULL, NULL, napi_default, NULL},
    {"kvRefresh", NULL, js_kv_refresh, NULL, NULL, NULL, napi_default, NULL},
    {"quantBoundary", NULL, js_quant_boundary, NULL, NULL, NULL, napi_default, NULL},
    {"splitMinBytes", NULL, js_split_min_bytes, NULL, NULL, NULL, napi_default, NULL},
    {"quantizeKv", NULL, js_quantize_kv, NULL, NULL, NULL, napi_default, NULL},
    {"writeKv", NULL, js_write_kv, NULL, NULL, NULL, napi_default, NULL},
    {"rmsnorm", NULL, js_rmsnorm, NULL, NULL, NULL, napi_default, NULL},
    {"rope", NULL, js_rope, NULL, NULL, NULL, napi_default, NULL},
    {"embed", NULL, js_embed, NULL, NULL, NULL, napi_default, NULL},
    {"add", NULL, js_add, NULL, NULL, NULL, napi_default, NULL},
    {"siluMul", NULL, js_silu_mul, NULL, NULL, NULL, napi_default, NULL},
    {"readSum", NULL, js_read_sum, NULL, NULL, NULL, napi_default, NULL},
    {"peakFlops", NULL, js_peak_flops, NULL, NULL, NULL, napi_default, NULL},
    {"mapFile", NULL, js_map_file, NULL, NULL, NULL, napi_default, NULL},
    {"allocLarge", NULL, js_alloc_large, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
