/* Prompt matmuls with BF16 or F16 weights as AMX-BF16 tile products (kernel_table.gemm_bf16 and
 * gemm_acts_bf16). Compiled with AVX-512 and -mamx-tile -mamx-bf16.
 *
 * out[t, r] = Σ_j w[r, j] · bf16(x[t, j]) with F32 accumulation. F16 weights are split exactly into
 * two BF16 parts (f16_split), so only the activations are rounded. Each output is one row of A (a
 * weight row) against one column of B (a token), summed over 32-column slices in order, so a
 * token's result depends on nothing but its own activations (batch and chunking invariant)
 * whatever tokens share its tiles.
 *
 * Tiles (amx.h: all 16 x 64 bytes): C 0-3 = [2 row blocks] x [2 token blocks] of 16 x 16 F32;
 * A 4, 5 = 16 weight rows x 32 BF16 columns, read straight from a BF16 matrix; B 6, 7 = 16 column
 * pairs x 16 tokens x 2 BF16, the activations laid out once per matmul (gemm_acts.c). C tiles are
 * [row][token] and are transposed into out [token][row] as they are stored. */
#ifdef QUANTSPEC_AMX
#include <immintrin.h>
#include <string.h>
#include "amx.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "simd512.h"

#define PANEL GEMM_PANEL /* weight rows per pass: two A tiles */

/* Weight rows [r0, r0 + 32) at slices [s0, s1) (32 columns each) as A tiles in `panel`: tile (part
 * p, slice s, half h) at panel + ((p * slices + s) * 2 + h) * 512, 16 rows of 32 BF16. F16 weights
 * give two parts (hi, lo); BF16 one. Rows past `rows` and columns past `cols` are zero. Used for
 * F16 weights and for BF16 panels the tiles cannot read in place (a partial panel, cols not a
 * multiple of 32). */
static void build_panel(uint16_t *panel, const uint16_t *w, int dtype, int rows, int cols, int r0, int slices, int s0, int s1) {
  uint16_t *lo_panel = panel + (size_t)slices * 1024;
  for (int s = s0; s < s1; s++) {
    const int c0 = 32 * s;
    const __mmask32 cm = cols_mask(cols, c0);
    for (int h = 0; h < 2; h++) {
      const size_t tile = ((size_t)s * 2 + h) * 512;
      for (int i = 0; i < 16; i++) {
        const int r = r0 + 16 * h + i;
        __m512i hi = _mm512_setzero_si512(), lo = _mm512_setzero_si512();
        if (r < rows) {
          if (dtype == 1) f16_split(w + (size_t)r * cols + c0, cm, &hi, &lo);
          else hi = _mm512_maskz_loadu_epi16(cm, w + (size_t)r * cols + c0);
        }
        _mm512_store_si512(panel + tile + 32 * i, hi);
        if (dtype == 1) _mm512_store_si512(lo_panel + tile + 32 * i, lo);
      }
    }
  }
}

/* C tile [16 rows][16 tokens] into out [n, rows] at (t0, r0), transposed; rows and tokens past
 * the matrix are dropped. */
static inline void store_transposed(float *out, const float c[16][16], int rows, int n, int t0, int r0) {
  __m512i v[16];
  for (int i = 0; i < 16; i++) v[i] = _mm512_load_si512(c[i]);
  transpose16_epi32(v); /* v[j] = token t0 + j's 16 rows */
  const int nr = rows - r0 < 16 ? rows - r0 : 16;
  const __mmask16 keep = nr == 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
  for (int j = 0; j < 16 && t0 + j < n; j++) _mm512_mask_storeu_epi32(out + (size_t)(t0 + j) * rows + r0, keep, v[j]);
}

/* Where the A tiles of one pass come from: tile (p, s, h) at a + p * p_step + s * s_step + h * h_step
 * (elements), rows `stride` bytes apart. */
typedef struct {
  const uint16_t *a;
  size_t p_step, s_step, h_step;
  long stride;
  int parts;
} a_tiles;

/* The next panel's weight rows, fetched into L2 while this panel's tile products run: `per` rows
 * at each slice's 32 columns per round of two token blocks, so every line is asked for once and
 * the fetches from memory overlap the products. (Fetched all at once during the panel build,
 * one panel ahead, they queued behind each other and the build waited on them.) */
typedef struct {
  const uint16_t *w; /* the next panel's first row, or NULL after the last panel */
  int cols, rows;    /* row length; rows of the next panel (at most PANEL) */
  int per;           /* rows fetched per slice in each round */
} next_panel;

/* always_inline: GCC 12 found the out-of-line _mm_prefetch "const" and dropped the calls of a plain
 * inline fetch_next as dead code once its callers changed (no prefetch left in the object). */
static inline __attribute__((always_inline)) void fetch_next(const next_panel *np, int round, int s) {
  if (!np->w) return;
  const int r0 = round * np->per, r1 = r0 + np->per < np->rows ? r0 + np->per : np->rows;
  for (int r = r0; r < r1; r++) _mm_prefetch((const char *)(np->w + (size_t)r * np->cols + 32 * s), _MM_HINT_T1);
}

/* The products of slices [s0, s1) into C tiles 0-3 (NB = 2 token blocks tb, tb + 1) or 0 and 2
 * (NB = 1): rows [r, r + 16) in tiles 0 and 1, [r + 16, r + 32) in 2 and 3. */
static inline __attribute__((always_inline)) void dp_slices(const uint16_t *xb, const a_tiles *A, const next_panel *np, int tb,
                                                            int slices, int s0, int s1, const int NB) {
  for (int s = s0; s < s1; s++) {
    fetch_next(np, tb / 2, s);
    _tile_loadd(6, xb + ((size_t)tb * slices + s) * 512, 64);
    if (NB == 2) _tile_loadd(7, xb + ((size_t)(tb + 1) * slices + s) * 512, 64);
    for (int p = 0; p < A->parts; p++) {
      const uint16_t *a = A->a + p * A->p_step + s * A->s_step;
      _tile_loadd(4, a, A->stride);
      _tile_loadd(5, a + A->h_step, A->stride);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(2, 5, 6);
      if (NB == 2) {
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
}

/* Where a pass's C tiles start and end: the first K block zeroes them and later ones reload the
 * partial sums the block before stored (`part`, 256 floats per 16 rows x 16 tokens: the exact F32
 * values, so each output's sum runs in the same order as in one block); the last block stores
 * them into out, transposed. */
typedef struct {
  float *part; /* this panel's partial sums: [token block][row half] of 256 floats (untouched when the columns are one block) */
  int first, last;
} k_block;

/* The partial sums of token blocks tb (and tb + 1): C tiles 0, 2 (and 1, 3) at +0, +256 (+512, +768). */
static inline float *c_part(const k_block *kb, int tb) { return kb->part + (size_t)tb * 512; }

static inline __attribute__((always_inline)) void c_begin(const k_block *kb, int tb, const int NB) {
  if (kb->first) {
    _tile_zero(0);
    _tile_zero(2);
    if (NB == 2) {
      _tile_zero(1);
      _tile_zero(3);
    }
    return;
  }
  float *p = c_part(kb, tb);
  _tile_loadd(0, p, 64);
  _tile_loadd(2, p + 256, 64);
  if (NB == 2) {
    _tile_loadd(1, p + 512, 64);
    _tile_loadd(3, p + 768, 64);
  }
}

static inline __attribute__((always_inline)) void c_end(const k_block *kb, float *out, int rows, int n, int tb, int r0, const int NB) {
  if (!kb->last) {
    float *p = c_part(kb, tb);
    _tile_stored(0, p, 64);
    _tile_stored(2, p + 256, 64);
    if (NB == 2) {
      _tile_stored(1, p + 512, 64);
      _tile_stored(3, p + 768, 64);
    }
    return;
  }
  float c[16][16] __attribute__((aligned(64)));
  const int lower = r0 + 16 < rows; /* the second row block exists */
  _tile_stored(0, c, 64);
  store_transposed(out, c, rows, n, 16 * tb, r0);
  if (lower) {
    _tile_stored(2, c, 64);
    store_transposed(out, c, rows, n, 16 * tb, r0 + 16);
  }
  if (NB == 2) {
    _tile_stored(1, c, 64);
    store_transposed(out, c, rows, n, 16 * tb + 16, r0);
    if (lower) {
      _tile_stored(3, c, 64);
      store_transposed(out, c, rows, n, 16 * tb + 16, r0 + 16);
    }
  }
}

/* Rows [r0, r0 + 32) for every token block over slices [s0, s1): two token blocks (4 C tiles) at a
 * time, then a last one. */
static void pass_products(float *out, const uint16_t *xb, const a_tiles *A, const next_panel *np, const k_block *kb, int rows, int n,
                          int r0, int slices, int s0, int s1) {
  const int nb = (n + 15) / 16;
  int tb = 0;
  for (; tb + 2 <= nb; tb += 2) {
    c_begin(kb, tb, 2);
    dp_slices(xb, A, np, tb, slices, s0, s1, 2);
    c_end(kb, out, rows, n, tb, r0, 2);
  }
  if (tb < nb) {
    c_begin(kb, tb, 1);
    dp_slices(xb, A, np, tb, slices, s0, s1, 1);
    c_end(kb, out, rows, n, tb, r0, 1);
  }
}

/* A K block takes at most this many bytes of the activations' tiles (16 tokens x 32 columns, 1 KiB
 * each), so they stay in L2 while the block's panels pass (rows outer, the whole K at once, read
 * them all again from L3 for every panel: a 2048 x 8192 matrix took 1.85x the time of an 8192 x
 * 2048 one against 128 tokens). */
#define K_BLOCK_BYTES (512 << 10)

/* scratch: gemm_scratch_elems(kp, n, r1 - r0) (kernels.h): the panel, then the partial sums of
 * rows [r0, r1) between K blocks. */
void amx_gemm_bf16(float *out, const uint16_t *xb, int kp, const uint16_t *w, int dtype, int rows, int cols, int n, int r0,
                   int r1, uint16_t *scratch) {
  const int slices = kp / 32, nb = (n + 15) / 16, rounds = (nb + 1) / 2; /* rounds of two token blocks */
  const int kslices = K_BLOCK_BYTES / (nb * 1024) > 0 ? K_BLOCK_BYTES / (nb * 1024) : 1;
  uint16_t *panel = scratch;
  float *part = (float *)(scratch + gemm_panel_elems(kp));
  amx_tiles();
  for (int s0 = 0; s0 < slices; s0 += kslices) {
    const int s1 = s0 + kslices < slices ? s0 + kslices : slices;
    for (int r = r0; r < r1; r += PANEL) {
      const int nr = rows - (r + PANEL) < PANEL ? rows - (r + PANEL) : PANEL;
      const next_panel np = {r + PANEL < r1 ? w + (size_t)(r + PANEL) * cols : NULL, cols, nr, (PANEL + rounds - 1) / rounds};
      const k_block kb = {part + (size_t)(r - r0) / PANEL * nb * 512, s0 == 0, s1 == slices}; /* gemm_partial_floats' layout */
      a_tiles A;
      if (dtype == 2 && cols % 32 == 0 && r + PANEL <= rows) { /* BF16 rows read in place */
        A = (a_tiles){w + (size_t)r * cols, 0, 32, (size_t)16 * cols, (long)cols * 2, 1};
      } else {
        build_panel(panel, w, dtype, rows, cols, r, slices, s0, s1);
        A = (a_tiles){panel, (size_t)slices * 1024, 1024, 512, 64, dtype == 1 ? 2 : 1};
      }
      pass_products(out, xb, &A, &np, &kb, rows, n, r, slices, s0, s1);
    }
  }
}

/* kernel_table.peak_flops kind 1: 4 independent 16 x 16 x 32 BF16 tile products per round, on
 * tiles loaded once (the products' speed does not depend on the values). */
double amx_peak_tiles(long iters) {
  static const uint16_t zeros[512] __attribute__((aligned(64))) = {0};
  amx_tiles();
  _tile_loadd(4, zeros, 64);
  _tile_loadd(5, zeros, 64);
  _tile_loadd(6, zeros, 64);
  _tile_loadd(7, zeros, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long i = 0; i < iters; i++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  return 2.0 * 16 * 16 * 32 * 4 * (double)iters;
}
#endif
