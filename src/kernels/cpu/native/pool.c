/* The thread pool (pool.h) and scratch growth. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
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
#include "pool.h"

#define SPIN_ITERS 20000


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

void pool_start(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  if (pool.started) return; /* the thread count is fixed once workers exist */
  pool.n_threads = n;
  atomic_store(&pool.generation, 0);
  for (int i = 1; i < n; i++) pthread_create(&pool.threads[i], NULL, worker_main, (void *)(intptr_t)i);
  pool.started = 1;
}

/* Run fn(ctx, part, n_parts) for every part, the calling thread taking part 0. */
void pool_run(job_fn fn, void *ctx) {
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

/* Below about 5 µs of reads on one core, half of it saved by a second thread no longer pays for
 * the hand-off and the wait. Measured on pdlm's decode steps (2 vCPUs, round trip 400-450 ns): a
 * draft step at 256 positions took 0.24 ms with every job split and 0.18 ms with this bound;
 * 48-768 KiB bounds were tried, and 192 KiB was the best or level at 256, 1K and 4K positions. */
#define POOL_PARALLEL_MIN_BYTES ((size_t)192 << 10)
static size_t parallel_min_bytes = POOL_PARALLEL_MIN_BYTES;

size_t pool_set_parallel_min(size_t bytes) {
  const size_t old = parallel_min_bytes;
  parallel_min_bytes = bytes;
  return old;
}

size_t pool_parallel_min(void) {
  return parallel_min_bytes;
}

int pool_parts_for(size_t bytes) {
  return bytes < parallel_min_bytes ? 1 : pool_threads();
}

void pool_run_sized(job_fn fn, void *ctx, size_t bytes) {
  if (pool_parts_for(bytes) == 1) fn(ctx, 0, 1);
  else pool_run(fn, ctx);
}

static pthread_mutex_t kernel_lock = PTHREAD_MUTEX_INITIALIZER;
void pool_lock(void) { pthread_mutex_lock(&kernel_lock); }
void pool_unlock(void) { pthread_mutex_unlock(&kernel_lock); }

void share(int n, int part, int n_parts, int align, int *a, int *b) {
  int units = (n + align - 1) / align;
  int per = units / n_parts, extra = units % n_parts;
  int u0 = part * per + (part < extra ? part : extra);
  int u1 = u0 + per + (part < extra ? 1 : 0);
  *a = u0 * align < n ? u0 * align : n;
  *b = u1 * align < n ? u1 * align : n;
}

void takes_init(row_takes *t, int rows, int align, int min_rows) {
  const int threads = pool_threads();
  int size = (rows + 8 * threads - 1) / (8 * threads);
  if (size < min_rows) size = min_rows;
  size = (size + align - 1) / align * align;
  atomic_init(&t->next, 0);
  t->rows = rows;
  t->size = size > 0 ? size : align;
}

int take_rows(row_takes *t, int *a, int *b) {
  const int r0 = atomic_fetch_add_explicit(&t->next, t->size, memory_order_relaxed);
  if (r0 >= t->rows) return 0;
  *a = r0;
  *b = r0 + t->size < t->rows ? r0 + t->size : t->rows;
  return 1;
}

int pool_threads(void) {
  return pool.n_threads > 0 ? pool.n_threads : 1;
}

void *grow(void **buf, size_t *cap, size_t need) {
  if (need > *cap) {
    /* half as much again: a buffer that grows step by step (attention's partials, as a prompt's
     * context grows chunk by chunk) is reallocated, and its fresh pages faulted in, only
     * logarithmically often */
    const size_t size = ((need > *cap + *cap / 2 ? need : *cap + *cap / 2) + 63) & ~(size_t)63;
    free(*buf);
    *buf = aligned_alloc(64, size);
    *cap = *buf ? size : 0;
  }
  return *buf;
}
