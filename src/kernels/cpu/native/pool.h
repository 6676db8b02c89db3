/* The addon's persistent thread pool: workers spin briefly, then sleep on a futex; a job runs as
 * fn(ctx, part, n_parts) on every thread, the caller taking part 0. */
#ifndef QUANTSPEC_POOL_H
#define QUANTSPEC_POOL_H
#include <stdatomic.h>
#include <stddef.h>

#define MAX_THREADS 64

typedef void (*job_fn)(void *ctx, int part, int n_parts);

/* Start n threads (the caller included); the count is fixed once workers exist. */
void pool_start(int n);
int pool_threads(void);
/* Run fn(ctx, part, n_parts) for every part, the calling thread taking part 0; returns when all are done. */
void pool_run(job_fn fn, void *ctx);
/* pool_run() for a job of `bytes` bytes of reads (its cost), or fn(ctx, 0, 1) on the calling thread
 * alone below POOL_PARALLEL_MIN_BYTES: handing a job to the other threads and waiting for them
 * costs a cross-core round trip each way (1-2 µs on a VM), more than half of a small job. Jobs give
 * the same results split or whole. */
void pool_run_sized(job_fn fn, void *ctx, size_t bytes);
/* Parts pool_run_sized will split a job of `bytes` into. */
int pool_parts_for(size_t bytes);
/* Set the bound below which pool_run_sized keeps a job whole (0: split every job, as the tests do
 * to check that split and whole agree); returns the previous bound. */
size_t pool_set_parallel_min(size_t bytes);
size_t pool_parallel_min(void);
/* The process-wide lock a caller holds around pool_run() and the scratch it uses (see addon.c KERNEL). */
void pool_lock(void);
void pool_unlock(void);
/* Contiguous share [*a, *b) of n items for one part, aligned to `align`. */
void share(int n, int part, int n_parts, int align, int *a, int *b);
/* Rows taken from a shared counter: the threads of a job take `size` rows at a time until none are
 * left, so a thread slowed by the shared machine leaves more of them to the others instead of
 * making them wait at its end. For jobs whose every output depends only on its own row (the
 * matmuls), which thread computes it does not change it. */
typedef struct {
  _Atomic int next; /* the first row not taken */
  int rows, size;
} row_takes;
/* A counter over `rows` rows taken about 8 times per thread, each take a multiple of `align` rows
 * and at least `min_rows` (so a take's reads outweigh its atomic add). */
void takes_init(row_takes *t, int rows, int align, int min_rows);
/* The next take [*a, *b); 0 when every row is taken. */
int take_rows(row_takes *t, int *a, int *b);
/* A scratch buffer grown (64-byte aligned) to at least the largest size asked for; NULL when out of memory. */
void *grow(void **buf, size_t *cap, size_t need);

#endif
