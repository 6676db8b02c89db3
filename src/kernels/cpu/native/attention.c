/* The attention scheduler (attention.h). */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include "attention.h"
#include "isa.h"
#include "pool.h"

static void *attn_scratch, *attn_parts, *attn_outs;
static size_t attn_scratch_cap, attn_parts_cap, attn_outs_cap;

#define MAX_GROUPS 8
/* Positions per dense work item (rounded up to whole key groups): ATTN_CHUNK below
 * ATTN_WIDE_FROM chunks' worth of positions, up to ATTN_WIDE chunks' worth from there on. Every
 * item leaves one partial per pair for the merge to read back, and beyond a few thousand
 * positions the chunks of 256 made the merge a tenth of a long-context pass; near the start the
 * small chunks keep both threads busy on short contexts. An item's scores take pairs · positions
 * floats of scratch per thread, so the width is capped for models with many query heads: a
 * prefill chunk of ATTN_REF_QUERIES queries keeps its scores within ATTN_SCORES_FLOATS (with 32
 * heads, wide items took a prefill chunk's attention at 8K from 34-45 to 45-57 ms, its scores
 * 16 MiB a thread). The grid depends on the position and the model's shape alone, never on the
 * batch. */
#define ATTN_CHUNK 256
#define ATTN_WIDE 4
#define ATTN_WIDE_FROM 16
#define ATTN_REF_QUERIES 128
#define ATTN_SCORES_FLOATS ((size_t)1 << 20)

typedef struct {
  attn_args a;
  int n_rep;
  int chunk; /* positions per dense work item below wide_from */
  int wide_from; /* from this position on, items of wide * chunk positions */
  int wide;
  /* Queries with the same quantization boundary form a group; one pass over the cache serves a group. */
  int n_groups;
  int group_q0[MAX_GROUPS + 1]; /* group k = queries [group_q0[k], group_q0[k + 1]) */
  int group_lo[MAX_GROUPS], group_hi[MAX_GROUPS], group_items0[MAX_GROUPS + 1];
  int dense_items;  /* items [0, dense_items): (group, chunk); then one sparse item per query */
  int n_items;
  size_t slot;      /* partials per item: nq * n_heads */
  size_t scratch_per_thread;
  /* Thread p starts with items [part_item[p], part_item[p + 1]): contiguous runs of about equal
   * estimated cost (item_cost), since the last chunk of a group, with its full-precision rows,
   * costs several plane chunks; a thread that finishes its run early takes over the back of
   * another's (runs). Each item writes only its own partials, so the split does not change the
   * result. */
  int part_item[MAX_THREADS + 1];
  /* What is left of each thread's run, items [next, end) packed as next | end << 32: its owner
   * takes items from the front, and a thread that has run out takes them from the back of
   * another's (the two vCPUs of a shared VM run at speeds that differ by up to a third, and
   * change from process to process, so no fixed split keeps them level). Each item writes only
   * its own partials, so which thread runs it does not change the result. One line a thread:
   * the owner's compare-and-swap stays in its own cache until a thief arrives. */
  struct { _Alignas(64) _Atomic uint64_t left; } runs[MAX_THREADS];
} at_ctx;

/* The dense positions query `query` sees: [*lo, *hi). A sparse selection adds its own positions. */
static void visible_range(const attn_args *a, int query, int *lo, int *hi) {
  const int pos = a->start_pos + query;
  *lo = dense_lo(a, pos);
  *hi = pos + 1;
}

/* The grid's item boundary at or below position p, and the size of the item starting there. */
static int grid_floor(const at_ctx *c, int p) {
  if (p < c->wide_from) return (p / c->chunk) * c->chunk;
  const int wide = c->wide * c->chunk;
  return c->wide_from + ((p - c->wide_from) / wide) * wide;
}

static int grid_step(const at_ctx *c, int p) { return p < c->wide_from ? c->chunk : c->wide * c->chunk; }

/* Items of the grid from lo (a boundary) to cover [lo, hi). */
static int grid_items(const at_ctx *c, int lo, int hi) {
  if (hi <= lo) return 0;
  const int narrow_end = hi < c->wide_from ? hi : c->wide_from;
  const int narrow = lo < narrow_end ? (narrow_end - lo + c->chunk - 1) / c->chunk : 0;
  const int wide_lo = lo > c->wide_from ? lo : c->wide_from, wide = c->wide * c->chunk;
  return narrow + (hi > wide_lo ? (hi - wide_lo + wide - 1) / wide : 0);
}

/* Positions [*p0, *p1) of item idx of group k. */
static void item_range(const at_ctx *c, int k, int idx, int *p0, int *p1) {
  const int lo = c->group_lo[k];
  const int narrow = lo < c->wide_from ? (c->wide_from - lo) / c->chunk : 0; /* narrow items before the wide ones */
  *p0 = idx < narrow ? lo + idx * c->chunk : (lo > c->wide_from ? lo : c->wide_from) + (idx - narrow) * c->wide * c->chunk;
  const int end = *p0 + grid_step(c, *p0);
  *p1 = end < c->group_hi[k] ? end : c->group_hi[k];
}

static void empty_parts(attn_partial *p, int n) {
  for (int i = 0; i < n; i++) p[i].m = -INFINITY, p[i].l = 0;
}

/* The next item of run r, from its front (the owner) or its back (a thief), or -1 when it is empty. */
static int take_item(at_ctx *c, int r, int back) {
  uint64_t v = atomic_load_explicit(&c->runs[r].left, memory_order_relaxed);
  for (;;) {
    const uint32_t next = (uint32_t)v, end = (uint32_t)(v >> 32);
    if (next >= end) return -1;
    const uint64_t w = back ? (uint64_t)next | (uint64_t)(end - 1) << 32 : (uint64_t)(next + 1) | (uint64_t)end << 32;
    if (atomic_compare_exchange_weak_explicit(&c->runs[r].left, &v, w, memory_order_relaxed, memory_order_relaxed))
      return back ? (int)(end - 1) : (int)next;
  }
}

/* One work item: a dense chunk of a group's positions, or one query's sparse selection. */
static void run_item(at_ctx *c, int item, float *scratch) {
  const attn_args *a = &c->a;
  const int d = a->head_dim, n_rep = c->n_rep;
  attn_partial *parts = (attn_partial *)attn_parts + (size_t)item * c->slot;
  float *outs = (float *)attn_outs + (size_t)item * c->slot * d;
  if (item < c->dense_items) {
    int k = 0;
    while (item >= c->group_items0[k + 1]) k++;
    int p0, p1;
    item_range(c, k, item - c->group_items0[k], &p0, &p1);
    K->attention_rows(a, c->group_q0[k], c->group_q0[k + 1], p0, p1, scratch, parts, outs);
    return;
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

static void attn_job(void *p, int part, int n_parts) {
  at_ctx *c = (at_ctx *)p;
  float *scratch = (float *)attn_scratch + (size_t)part * c->scratch_per_thread;
  for (int item; (item = take_item(c, part, 0)) >= 0;) run_item(c, item, scratch);
  for (int k = 1; k < n_parts; k++) { /* then what the others have left, from the back */
    const int r = (part + k) % n_parts;
    for (int item; (item = take_item(c, r, 1)) >= 0;) run_item(c, item, scratch);
  }
}

/* Merge, for every (query, head), its partials over the group's chunks (and its sparse item) by
 * log-sum-exp into out; empty partials contribute nothing. The (query, head) pairs are shared
 * among the threads; each pair's merge is the same sequence of operations on any thread. */
static void attn_merge_job(void *p, int part, int n_parts) {
  const at_ctx *c = (const at_ctx *)p;
  const attn_args *a = &c->a;
  const int d = a->head_dim, n_heads = a->n_heads, n_rep = c->n_rep;
  int u0, u1;
  share(a->nq * n_heads, part, n_parts, 1, &u0, &u1);
  for (int u = u0; u < u1; u++) {
    const int query = u / n_heads, h = u % n_heads;
    int k = 0;
    while (query >= c->group_q0[k + 1]) k++;
    const int q0 = c->group_q0[k], nj = (c->group_q0[k + 1] - q0) * n_rep;
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

/* Group consecutive queries by quantization boundary (at most two in a batch of <= G tokens). */
static int group_queries(at_ctx *c) {
  const attn_args *a = &c->a;
  const kv_planes *p = a->kv->planes;
  c->n_groups = 0;
  for (int qi = 0; qi < a->nq; qi++) {
    const int b = p ? quant_boundary(a->start_pos + qi, p->group_k) : 0;
    const int prev = qi > 0 && p ? quant_boundary(a->start_pos + qi - 1, p->group_k) : 0;
    if (qi == 0 || b != prev) {
      if (c->n_groups == MAX_GROUPS) return ATTN_TOO_MANY_GROUPS;
      c->group_q0[c->n_groups++] = qi;
    }
  }
  c->group_q0[c->n_groups] = a->nq;
  return ATTN_OK;
}

/* Items on a grid fixed by position alone (grid_floor: chunks of whole key groups, wider past
 * wide_from): a query's partials then do not depend on the other queries of its batch (a verify
 * pass gives bit for bit what decoding the same tokens one by one gives), because masked
 * positions add exact zeros and every sum keeps its order. */
static void plan_items(at_ctx *c) {
  const attn_args *a = &c->a;
  const kv_planes *p = a->kv->planes;
  int chunk = ATTN_CHUNK;
  if (p && chunk % p->group_k != 0) chunk = (chunk / p->group_k + 1) * p->group_k;
  c->chunk = chunk;
  c->wide_from = ATTN_WIDE_FROM * chunk;
  c->wide = ATTN_WIDE;
  while (c->wide > 1 && (size_t)ATTN_REF_QUERIES * a->n_heads * c->wide * chunk > ATTN_SCORES_FLOATS) c->wide /= 2;
  for (int k = 0; k < c->n_groups; k++) {
    int lo = 1 << 30, hi = 0;
    for (int qi = c->group_q0[k]; qi < c->group_q0[k + 1]; qi++) {
      int l, h;
      visible_range(a, qi, &l, &h);
      if (l < lo) lo = l;
      if (h > hi) hi = h;
    }
    c->group_lo[k] = grid_floor(c, lo);
    c->group_hi[k] = hi > lo ? hi : c->group_lo[k];
  }
  c->group_items0[0] = 0;
  for (int k = 0; k < c->n_groups; k++) c->group_items0[k + 1] = c->group_items0[k] + grid_items(c, c->group_lo[k], c->group_hi[k]);
  c->dense_items = c->group_items0[c->n_groups];
  c->n_items = c->dense_items + (a->kv->sel_positions ? a->nq : 0);
  c->slot = (size_t)a->nq * a->n_heads;
  int widest = chunk; /* the longest item planned */
  for (int k = 0; k < c->n_groups; k++)
    if (c->group_hi[k] > c->wide_from) widest = c->wide * chunk;
  const size_t rows_scratch = attn_rows_scratch(a->nq * a->n_heads, a->n_kv_heads, a->head_dim, widest);
  const int sel_stride = a->kv->sel_stride;
  const size_t head_scratch = (size_t)a->head_dim * 2 + (size_t)c->n_rep * (widest > sel_stride ? widest : sel_stride) + 64;
  c->scratch_per_thread = ((rows_scratch > head_scratch ? rows_scratch : head_scratch) + 15) & ~(size_t)15;
}

/* Full-precision rows cost this many plane positions: their dots are F32 multiply-adds, 8 lanes
 * at a time, where the planes take integer products of 16 positions at once. */
#define FP_ROW_COST 3

/* Estimated cost of an item: its plane positions, plus FP_ROW_COST per full-precision row; a
 * sparse item (one query's selected positions) counts its selection as full-precision rows. */
static long item_cost(const at_ctx *c, int item) {
  const attn_args *a = &c->a;
  if (item >= c->dense_items) return (long)FP_ROW_COST * a->kv->sel_count + 1;
  int k = 0;
  while (item >= c->group_items0[k + 1]) k++;
  int p0, p1;
  item_range(c, k, item - c->group_items0[k], &p0, &p1);
  const kv_planes *pl = a->kv->planes;
  const int qa = pl ? quant_boundary(a->start_pos + c->group_q0[k], pl->group_k) : 0; /* planes below, rows from here */
  const int fp = p1 - (qa > p0 ? (qa < p1 ? qa : p1) : p0);
  return (long)(p1 - p0 - fp) + (long)FP_ROW_COST * fp + 1;
}

/* The estimated cost of all items. */
static long total_cost(const at_ctx *c) {
  long total = 0;
  for (int i = 0; i < c->n_items; i++) total += item_cost(c, i);
  return total;
}

/* part_item[]: contiguous runs of items of about equal estimated cost (of `total` in all), one per thread. */
static void split_items(at_ctx *c, int n_parts, long total) {
  long acc = 0;
  int item = 0;
  c->part_item[0] = 0;
  for (int p = 1; p < n_parts; p++) {
    const long target = total * p / n_parts;
    while (item < c->n_items && acc + item_cost(c, item) / 2 < target) acc += item_cost(c, item++);
    c->part_item[p] = item;
  }
  c->part_item[n_parts] = c->n_items;
}

int attention_run(const attn_args *a) {
  if (a->nq > ATTN_REF_QUERIES) {
    /* A longer prompt chunk (prefillChunk above 128): its queries in runs of ATTN_REF_QUERIES,
     * the batch the item widths and ATTN_SCORES_FLOATS were sized for (a query's result does not
     * depend on its batch); run whole, a chunk of 512 takes four times the scores per item. */
    for (int q0 = 0; q0 < a->nq; q0 += ATTN_REF_QUERIES) {
      attn_args part = *a;
      const size_t off = (size_t)q0 * a->n_heads * a->head_dim;
      part.q = a->q + off, part.out = a->out + off;
      part.nq = a->nq - q0 < ATTN_REF_QUERIES ? a->nq - q0 : ATTN_REF_QUERIES;
      part.start_pos = a->start_pos + q0;
      const int r = attention_run(&part);
      if (r != ATTN_OK) return r;
    }
    return ATTN_OK;
  }
  at_ctx c;
  c.a = *a;
  c.n_rep = a->n_heads / a->n_kv_heads;
  const int grouped = group_queries(&c);
  if (grouped != ATTN_OK) return grouped;
  plan_items(&c);
  if (!grow(&attn_scratch, &attn_scratch_cap, c.scratch_per_thread * pool_threads() * sizeof(float)) ||
      !grow(&attn_parts, &attn_parts_cap, (size_t)c.n_items * c.slot * sizeof(attn_partial)) ||
      !grow(&attn_outs, &attn_outs_cap, (size_t)c.n_items * c.slot * a->head_dim * sizeof(float)))
    return ATTN_OUT_OF_MEMORY;
  /* the cost in bytes of planes read (fp rows as FP_ROW_COST positions), times the queries */
  const long cost = total_cost(&c);
  const size_t bytes = (size_t)cost * a->n_kv_heads * a->head_dim * 2 * a->nq;
  const int n_parts = pool_parts_for(bytes);
  split_items(&c, n_parts, cost);
  for (int r = 0; r < n_parts; r++)
    atomic_store_explicit(&c.runs[r].left, (uint64_t)c.part_item[r] | (uint64_t)c.part_item[r + 1] << 32, memory_order_relaxed);
  pool_run_sized(attn_job, &c, bytes);
  pool_run_sized(attn_merge_job, &c, (size_t)c.n_items * c.slot * a->head_dim * sizeof(float));
  return ATTN_OK;
}
