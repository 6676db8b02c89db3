/* quantspec native kernels: one table of pure functions per instruction set.
 * Every kernel works on a range of output rows (or work items) so the thread pool can split it.
 * Reductions have a fixed order per output element, independent of the batch size and of the
 * row range: a token's result never depends on which batch or thread computed it. */
#ifndef QUANTSPEC_KERNELS_H
#define QUANTSPEC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Q4 blocks of 32 weights, repacked at load time: byte j of a block holds element j (low nibble)
 * and element j + 16 (high nibble); w = q * scale + min, scale and min in F16 (5 bits per weight). */
#define QK 32
/* Tokens whose activations a 4- or 8-bit matmul keeps in L1 while it walks the rows once for them. */
#define Q4_TOKEN_BLOCK 8
/* The 4- and 8-bit matmuls' driver over rows [r0, r1) and tokens [0, n): tokens in blocks of
 * Q4_TOKEN_BLOCK, each group of STEP rows (a literal 4 or 2, then pairs and single rows at the end)
 * taken for every token of the block while its codes are in L1 (a verify of 5 tokens reads the
 * weights once, a prompt chunk once per 8 tokens). ROWS(out, x, w, rows, r, t, RB) does RB rows
 * for token t with the same operations per (row, token) whatever RB, so results stay batch
 * invariant. On AVX-512 four rows rather than two give the short rows of a small model's matrices
 * (8 blocks at 256 columns) independent chains to overlap (README, Native kernels: the timings);
 * AVX2's 16 registers do not hold four rows' sums and scales, and it keeps pairs. */
#define TOKEN_BLOCKED_ROWS(ROWS, STEP, out, x, w, rows, n, r0, r1)               \
  for (int t0_ = 0; t0_ < (n); t0_ += Q4_TOKEN_BLOCK) {                          \
    const int t1_ = (n) - t0_ < Q4_TOKEN_BLOCK ? (n) : t0_ + Q4_TOKEN_BLOCK;     \
    int r_ = (r0);                                                               \
    for (; r_ + (STEP) <= (r1); r_ += (STEP))                                    \
      for (int t_ = t0_; t_ < t1_; t_++) ROWS(out, x, w, rows, r_, t_, STEP);    \
    if ((STEP) > 2)                                                              \
      for (; r_ + 2 <= (r1); r_ += 2)                                            \
        for (int t_ = t0_; t_ < t1_; t_++) ROWS(out, x, w, rows, r_, t_, 2);     \
    for (; r_ < (r1); r_++)                                                      \
      for (int t_ = t0_; t_ < t1_; t_++) ROWS(out, x, w, rows, r_, t_, 1);       \
  }

typedef struct {
  const uint8_t *codes;   /* [rows, nb, 16] */
  const uint16_t *scales; /* [rows, nb] F16 */
  const uint16_t *mins;   /* [rows, nb] F16 */
  int nb;                 /* blocks per row = ceil(cols / 32) */
} q4_weights;

/* Q8 blocks of 32 weights (llama.cpp's Q8_0 with its scale apart): w = q * scale, q signed, F16
 * scale (8.5 bits per weight). A row's last block is zero-padded. */
typedef struct {
  const int8_t *codes;    /* [rows, nb, 32] */
  const uint16_t *scales; /* [rows, nb] F16 */
  int nb;
} q8_weights;

/* Activations quantized to int8 per 32-block: x ≈ q * d. */
typedef struct {
  const int8_t *q;  /* [n, nb * 32], zero-padded */
  const float *d;   /* [n, nb] */
  const int32_t *sum; /* [n, nb] sum of q over the block */
  const float *dsum;  /* [n, nb] d · sum: dotted with a row's block minimums */
  int nb;
} q8_acts;

/* Hierarchical KV planes of one layer (see src/kv/layout.ts KvPlanes). */
typedef struct {
  int kv_dim, group_k, group_v;
  const uint8_t *k_upper, *k_lower; /* [T, kv_dim / 2] */
  const uint16_t *k_scale, *k_min;  /* [T / group_k, kv_dim] f16 */
  const uint8_t *v_upper, *v_lower; /* [T, kv_dim / 2] */
  const uint16_t *v_scale, *v_min;  /* [T, kv_dim / group_v] f16 */
} kv_planes;

typedef struct {
  /* full-precision rows: fp_dtype 0 = f32, 1 = f16 */
  int fp_dtype;
  const void *fp_keys, *fp_values; /* [rows, kv_dim] */
  int fp_start;
  const kv_planes *planes; /* NULL when none */
  int bits;                /* 4 or 8 */
  /* sparse selection (NULL when none) */
  const int32_t *sel_positions; /* [n_kv_heads, sel_stride] */
  int sel_count, sel_stride, sel_dense_from, sel_recent;
} kv_view;

typedef struct {
  float *out;        /* [nq, n_heads * head_dim] */
  const float *q;    /* [nq, n_heads * head_dim] */
  int nq, start_pos;
  int n_heads, n_kv_heads, head_dim, window;
  const kv_view *kv;
} attn_args;

/* One partial result of attention over a chunk of positions, merged by log-sum-exp. */
typedef struct {
  float m;   /* max score */
  float l;   /* sum of exp(score - m) */
} attn_partial;

typedef struct {
  const char *name;
  void (*matmul_f32)(float *out, const float *x, const float *w, int rows, int cols, int n, int r0, int r1);
  void (*matmul_f16)(float *out, const float *x, const uint16_t *w, int rows, int cols, int n, int r0, int r1);
  void (*matmul_bf16)(float *out, const float *x, const uint16_t *w, int rows, int cols, int n, int r0, int r1);
  void (*matmul_q4)(float *out, const q8_acts *x, const q4_weights *w, int rows, int n, int r0, int r1);
  void (*quantize_acts)(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t0, int t1);
  /* The 8-bit matmul: out[t, r] = Σ_b scale[r, b] · d[t, b] · Σ_j q[r, b, j] · xq[t, b, j] over
   * the 32-blocks b, each block's integer dot exact, for rows [r0, r1) and tokens [0, n); its
   * activations come from quantize_acts_q8 (blocks in order, not reordered as the 4-bit kernel's). */
  void (*matmul_q8)(float *out, const q8_acts *x, const q8_weights *w, int rows, int n, int r0, int r1);
  void (*quantize_acts_q8)(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t0, int t1);
  /* Attention of one query and the n_rep query heads of one kv head over positions [p0, p1) (or
   * over list[0 .. p1 - p0) when list is not NULL): per head, the max score, the sum of
   * exp(score - max) and the exp-weighted sum of values. scratch: head_dim + n_rep * (p1 - p0). */
  void (*attention_head)(const attn_args *a, int query, int kv_head, int p0, int p1, const int32_t *list,
                         float *scratch, attn_partial *part, float *out_partial);
  /* The same for queries [q0, q1) (which share one quantization boundary) and every head at once
   * over the dense positions [p0, p1): each position's row of all KV heads is read once for all of
   * them. Positions a query may not see (causal, window) are masked. Results are indexed by pair
   * gp = g * (nqs * n_rep) + (query - q0) * n_rep + r for query head g * n_rep + r:
   * part[nqs * n_heads], out_partial[nqs * n_heads, head_dim].
   * scratch: attn_rows_scratch(nqs * n_heads, n_kv_heads, head_dim, p1 - p0) floats. */
  void (*attention_rows)(const attn_args *a, int q0, int q1, int p0, int p1, float *scratch, attn_partial *part,
                         float *out_partial);
  /* gate[i] = silu(gate[i]) · up[i] for i in [i0, i1). */
  void (*silu_mul)(float *gate, const float *up, int i0, int i1);
  /* The prompt matmul of 16-bit float weights (dtype 1 = f16, 2 = bf16) with BF16 activations
   * and F32 accumulation (gemm_bf16_run), in two steps. gemm_acts_bf16 lays out token blocks
   * [tb0, tb1) of x [n, cols] (16 tokens each) in xb, the activations rounded to BF16 in the
   * path's own layout: gemm_acts_elems(n, kp) elements, kp = cols rounded up to 32. gemm_bf16 then
   * writes out[t, r] = Σ_j w[r, j] · xb[t, j] for rows [r0, r1) (r0 a multiple of GEMM_PANEL);
   * panel: gemm_scratch_elems(kp, n, r1 - r0) of this thread's scratch, 64-byte aligned. Both NULL on a path
   * without them: prompts take the exact matmuls there. */
  void (*gemm_acts_bf16)(uint16_t *xb, const float *x, int n, int cols, int kp, int tb0, int tb1);
  /* Peak probes for bench/kernels: `iters` rounds of independent F32 FMAs at the path's width
   * (kind 0) or of the BF16 products of its prompt matmul (kind 1: AMX-BF16 tile products, or
   * AVX-512 vdpbf16ps) on registers and tiles alone; returns the floating-point operations done
   * (2 per multiply-add), 0 for a kind the path lacks. */
  double (*peak_flops)(int kind, long iters);
  /* The weight dtypes gemm_bf16 takes, as bits 1 << dtype (F16 1, BF16 2); others take the exact
   * matmuls (on the AVX-512 BF16 path F16 weights would need two products each, slower than FMAs). */
  int gemm_dtypes;
  void (*gemm_bf16)(float *out, const uint16_t *xb, int kp, const uint16_t *w, int dtype, int rows, int cols, int n, int r0,
                    int r1, uint16_t *panel);
  /* The 4-bit draft quantizer's leaves (jobs.c quantize_q4_run), exact on every path. row_to_f32:
   * dst[0, n) = src[0, n) of 16-bit floats (dtype 1 = f16, 2 = bf16) as F32. q4_codes: for
   * positions j in [j0, j1) of one quantization group (j0 a multiple of 32), the code
   * q = clamp(round_half_even((row[j] - off) · inv) + add, 0, 15) in doubles (NaN gives 0), OR-ed
   * into nibble j % 32 of its block of 32 (codes[(j / 32) · 16 + j % 16], the low nibble for
   * j % 32 < 16). */
  void (*row_to_f32)(float *dst, const uint16_t *src, int n, int dtype);
  /* q4_range: the least and greatest of row[lo, hi) by plain comparisons, and whether any is NaN;
   * exact whenever there is no NaN and neither extreme is zero (the caller rescans otherwise). */
  void (*q4_range)(const float *row, int lo, int hi, float *mn, float *mx, int *nan);
  void (*q4_codes)(uint8_t *codes, const float *row, int j0, int j1, double off, double inv, double add);
  /* The 8-bit quantizer's leaf (jobs.c quantize_q8_run), exact on every path: for j in [j0, j1),
   * codes[j] = clamp(round_half_even(row[j] · inv), -127, 127) in doubles (NaN gives 0). */
  void (*q8_codes)(int8_t *codes, const float *row, int j0, int j1, double inv);
  /* The hierarchical KV quantizer (kv_quantize's contract, its codes and metadata bit for bit). */
  void (*kv_quantize)(const kv_planes *planes, uint8_t *k_upper, uint8_t *k_lower, uint16_t *k_scale, uint16_t *k_min,
                      uint8_t *v_upper, uint8_t *v_lower, uint16_t *v_scale, uint16_t *v_min, int fp_dtype, const void *fp_keys,
                      const void *fp_values, int src_row, int dst_pos, int n_tokens);
  /* dst[0, n) = src[0, n) as F16 bits, qs_f32_to_f16's bits (the cache's F16 rows). */
  void (*f32_to_f16)(uint16_t *dst, const float *src, size_t n);
} kernel_table;

#define GEMM_PANEL 32 /* weight rows per panel of gemm_bf16 */
/* BF16 elements of one thread's gemm_bf16 panel: two parts (F16's hi and lo) of kp / 32 slices of two 16 x 32 tiles. */
static inline size_t gemm_panel_elems(int kp) { return (size_t)2 * (kp / 32) * 2 * 512; }
/* The F32 partial sums gemm_bf16 may keep between blocks of columns for `rows_per_call` rows of n
 * tokens: 512 floats per 32 rows and 16 tokens. */
static inline size_t gemm_partial_floats(int rows_per_call, int n) { return (size_t)((rows_per_call + 31) / 32) * ((n + 15) / 16) * 512; }
/* A thread's whole gemm_bf16 scratch, in 16-bit elements: the panel, then the partial sums. */
static inline size_t gemm_scratch_elems(int kp, int n, int rows_per_call) { return gemm_panel_elems(kp) + 2 * gemm_partial_floats(rows_per_call, n); }
/* BF16 elements of gemm_acts_bf16's layout: whole blocks of 16 tokens, kp columns. */
static inline size_t gemm_acts_elems(int n, int kp) { return (size_t)((n + 15) / 16) * 16 * kp; }

extern const kernel_table kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const kernel_table kernels_avx2;
extern const kernel_table kernels_avx512;
/* gemm_acts.c: gemm_acts_bf16's layout, shared by the AMX and AVX-512 BF16 prompt matmuls. */
void gemm_acts_pairs(uint16_t *xb, const float *x, int n, int cols, int kp, int tb0, int tb1);
#ifdef QUANTSPEC_AVX512BF16
/* The AVX-512 table with the prompt matmuls of BF16 and F16 weights as vdpbf16ps dot products,
 * for CPUs with AVX512_BF16 (gemm_dp.c). */
extern const kernel_table kernels_avx512_bf16;
double dp_peak_bf16(long iters);
void dp_gemm_bf16(float *out, const uint16_t *xb, int kp, const uint16_t *w, int dtype, int rows, int cols, int n, int r0, int r1,
                  uint16_t *panel);
#endif
#ifdef QUANTSPEC_AMX
/* AVX-512 with the key scores of the attention over the planes as AMX tile products. */
extern const kernel_table kernels_amx;
/* gemm_amx.c */
double amx_peak_tiles(long iters);
void amx_gemm_bf16(float *out, const uint16_t *xb, int kp, const uint16_t *w, int dtype, int rows, int cols, int n, int r0,
                   int r1, uint16_t *panel);
#endif
/* AVX2 kernels the AVX-512 table shares (kernels_avx2.c). */
void avx2_attention_head(const attn_args *a, int query, int kv_head, int p0, int p1, const int32_t *list, float *scratch,
                         attn_partial *part, float *out_partial);
void avx2_silu_mul(float *gate, const float *up, int i0, int i1);
void avx2_row_to_f32(float *dst, const uint16_t *src, int n, int dtype);
void avx2_q4_range(const float *row, int lo, int hi, float *mn, float *mx, int *nan);
void avx2_q4_codes(uint8_t *codes, const float *row, int j0, int j1, double off, double inv, double add);
void avx2_q8_codes(int8_t *codes, const float *row, int j0, int j1, double inv);
/* kvquant_avx2.c */
void avx2_kv_quantize(const kv_planes *planes, uint8_t *k_upper, uint8_t *k_lower, uint16_t *k_scale, uint16_t *k_min,
                      uint8_t *v_upper, uint8_t *v_lower, uint16_t *v_scale, uint16_t *v_min, int fp_dtype, const void *fp_keys,
                      const void *fp_values, int src_row, int dst_pos, int n_tokens);
void avx2_f32_to_f16(uint16_t *dst, const float *src, size_t n);
#endif

/* Floats of the query bytes a key block may prepare once per key group (attention_blocks.h
 * key_args.prep): per KV head, for each 64-channel chunk, two tiles of 64-byte rows for its pairs
 * rounded up to 16. */
static inline size_t attn_key_prep_floats(int n_pairs, int n_kv, int head_dim) {
  const size_t rows = ((size_t)(n_pairs / n_kv) + 15) & ~(size_t)15, chunks = ((size_t)head_dim + 63) / 64;
  return (size_t)n_kv * chunks * 2 * rows * 16;
}

/* Rows of F16 the AVX driver converts to F32 at a time, and the floats they take (the end of
 * attention_rows' scratch). */
#define FP_CONV_ROWS 64
static inline size_t attn_fp_conv_floats(int head_dim) { return (size_t)FP_CONV_ROWS * head_dim; }

/* Floats from one pair's row of scores to the next, for an item of count positions: rounded up to
 * 16 and then 64 bytes more, so that rows written or read together (16 pairs of a tile, 4 of a
 * value group) fall in different L1 sets. At count 1024 (the widest items) rows exactly 4 KiB
 * apart all mapped to one set: a 128-query chunk at 32K with pdlm's 4/2 heads took 11.9-12.4 ms
 * with them and 10.2-10.6 with this stride (runs in turn). */
static inline int attn_score_stride(int count) { return ((count + 15) & ~15) + 16; }

/* Floats of scratch attention_rows needs for n_pairs (query, head) pairs over n_kv KV heads. */
static inline size_t attn_rows_scratch(int n_pairs, int n_kv, int head_dim, int count) {
  /* scores (rows attn_score_stride apart), folded queries, per-pair scalars and score maxima (16
   * lanes, 64-byte aligned), int16 value weights and their units, int32 value sums, the chunk's
   * value scales and minimums (2 per position and KV head, each head's with a tail of 16), each
   * value block's largest e·s (with slack), the prepared query bytes, a value block's decoded
   * codes (2 bytes per code), converted F16 rows */
  return (size_t)n_pairs * (attn_score_stride(count) + 2 * (size_t)count) + (size_t)n_pairs * head_dim * 2 + 20 * (size_t)n_pairs + 16 + (size_t)head_dim * 2 +
         (2 * (size_t)n_kv + 3) * count + 32 * (size_t)n_kv + 48 + attn_key_prep_floats(n_pairs, n_kv, head_dim) + 128 * (size_t)head_dim + 64 + attn_fp_conv_floats(head_dim);
}

/* Shared scalar helpers (kernels_common.c). */
float qs_f16_to_f32(uint16_t h);
uint16_t qs_f32_to_f16(float f);
void f32_to_f16_scalar(uint16_t *dst, const float *src, size_t n);
/* Element i of a cache row buffer as F32 (fp_dtype 0 = f32, 1 = f16). */
float kv_fp_value(int fp_dtype, const void *rows, size_t i);
/* A group's F16 scale and minimum from its least and greatest element (kv_quantize). */
void kv_group_meta(float mn, float mx, uint16_t *s_bits, uint16_t *mn_bits);
/* The scalar kernel_table.row_to_f32, q4_range and q4_codes (the vector ones do their tails through them). */
void row_to_f32_scalar(float *dst, const uint16_t *src, int n, int dtype);
void q4_range_scalar(const float *row, int lo, int hi, float *mn, float *mx, int *nan);
void q4_codes_scalar(uint8_t *codes, const float *row, int j0, int j1, double off, double inv, double add);
void q8_codes_scalar(int8_t *codes, const float *row, int j0, int j1, double inv);
/* The C twin of src/kv/layout.ts quantBoundary (the two are tested against each other). */
int quant_boundary(int p, int g);
/* First position of the dense range query `pos` sees: its window start, raised for a sparse view. */
int dense_lo(const attn_args *a, int pos);
void quantize_acts(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t0, int t1);
void quantize_acts_block(int8_t *q, float *d, int32_t *sum, float *dsum, const float *x, int cols, int nb, int t, int b);
/* Reorders quantized activations for 4-bit kernels that load `per` (at most 4) blocks of one row's
 * codes at once: within the first nb / whole · whole blocks, the values of every `per` blocks
 * become [first halves of the blocks | second halves], the order in which the low and high
 * nibbles of their code bytes fall. The other blocks stay in order. */
void act_halves_first(int8_t *q, int nb, int per, int whole, int t0, int t1);
/* The scalar kernel_table.kv_quantize (the reference's operations; the vector ones fall back to it). */
void kv_quantize(const kv_planes *planes_w, uint8_t *k_upper, uint8_t *k_lower, uint16_t *k_scale, uint16_t *k_min,
                 uint8_t *v_upper, uint8_t *v_lower, uint16_t *v_scale, uint16_t *v_min, int fp_dtype, const void *fp_keys,
                 const void *fp_values, int src_row, int dst_pos, int n_tokens);

/* Elementwise kernels (elementwise.c), each over rows [r0, r1), tokens [t0, t1) or elements
 * [i0, i1); they match the TypeScript reference bit for bit (silu_mul_scalar to within an ulp of
 * its exp). */
void rmsnorm_rows(float *out, const float *x, const float *w, int dim, double eps, int r0, int r1);
/* x[t, n_heads, head_dim] rotated in place at positions start_pos + t; cos/sin [positions, head_dim / 2];
 * layout 0 = neox (j with j + head_dim / 2), 1 = interleaved pairs (2j, 2j + 1). */
void rope_rows(float *x, int n_heads, int head_dim, int start_pos, const float *cos_t, const float *sin_t, int layout,
               int t0, int t1);
/* out[t, dim] = row tokens[t] of table [vocab, dim] (dtype 0 = f32, 1 = f16, 2 = bf16) as F32. */
void embed_rows(float *out, const void *table, int dtype, int dim, const int32_t *tokens, int t0, int t1);
/* out[r, dim] += bias[dim] when bias is not NULL, else out[r, dim] += x[r, dim]. */
void add_rows(float *out, const float *x, const float *bias, int dim, int r0, int r1);
void silu_mul_scalar(float *gate, const float *up, int i0, int i1);

#endif
