/* Kernels split over the thread pool: matmul (by rows), Q4 matmul (activations by token, then
 * rows), elementwise ops (by rows, tokens or elements) and the read-bandwidth probe. Each calls the
 * kernel table chosen at load (isa.h). */
#ifndef QUANTSPEC_JOBS_H
#define QUANTSPEC_JOBS_H
#include <stddef.h>
#include <stdint.h>

/* out[n, rows] = x[n, cols] · wᵀ; dtype 0 = f32, 1 = f16, 2 = bf16. */
void matmul_run(float *out, const float *x, const void *w, int dtype, int rows, int cols, int n);
/* The same for Q4 blocks of 32 (kernels.h); returns 0, or -1 when out of memory. */
int matmul_q4_run(float *out, const float *x, const uint8_t *codes, const uint16_t *scales, const uint16_t *mins, int rows,
                  int cols, int n);
/* The same for Q8 blocks of 32 (kernels.h q8_weights); returns 0, or -1 when out of memory. */
int matmul_q8_run(float *out, const float *x, const int8_t *codes, const uint16_t *scales, int rows, int cols, int n);

/* out[n, rows] = bf16(x[n, cols]) · wᵀ for 16-bit float weights w (dtype 1 = f16, 2 = bf16), F32
 * accumulation, where the kernel table has a BF16 GEMM (kernel_table.gemm_bf16): returns 0, 1 when
 * it has none or w is another dtype (nothing is written), -1 when out of memory. */
int gemm_bf16_run(float *out, const float *x, const uint16_t *w, int dtype, int rows, int cols, int n);

/* The 4-bit draft of a matrix [rows, cols] (dtype 0 f32, 1 f16, 2 bf16) in groups of `group`
 * columns (a multiple of 32), straight into Q4 blocks of 32: codes [rows, nb, 16], F16 scales and
 * minimums [rows, nb]; the same bits as quant/weights.ts quantizeQ4 + repackQ4Blocks32. */
void quantize_q4_run(const void *src, int dtype, int rows, int cols, int group, int symmetric, uint8_t *codes, uint16_t *scales,
                     uint16_t *mins);

/* The 8-bit quantization of a matrix [rows, cols] (dtype 0 f32, 1 f16, 2 bf16), symmetric in groups
 * of `group` columns (a multiple of 32), straight into Q8 blocks of 32: codes [rows, nb, 32], F16
 * scales [rows, nb]; the same bits as quant/weights.ts quantizeQ8 + repackQ8Blocks32. */
void quantize_q8_run(const void *src, int dtype, int rows, int cols, int group, int8_t *codes, uint16_t *scales);

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

/* Run an elementwise op over `elements` values: on the calling thread when small, else the pool. */
void ew_run(ew_ctx *c, size_t elements);

/* FLOP/s of kernel_table.peak_flops(kind, iters) run on every thread at once; 0 where the path lacks the kind. */
double peak_flops_run(int kind, long iters);

/* Sum of n floats read by every thread: the benchmarks' measure of read bandwidth. */
double read_sum(const float *data, size_t n);

#endif
