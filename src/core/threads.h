/* Thread pool. The engine parallelises with OpenMP; this object fixes how many
 * threads a computation may use: TUNA_THREADS from the environment, else the
 * number of online cores. Kernels take a tuna_threads* (never a global). */
#ifndef TUNA_CORE_THREADS_H
#define TUNA_CORE_THREADS_H

typedef struct {
    int count;
} tuna_threads;

/* count <= 0: TUNA_THREADS or the core count. Also puts OpenBLAS in
 * single-threaded mode: the engine's f32 GEMMs are split over this pool. */
void tuna_threads_init(tuna_threads *pool, int count);

/* Split [0, n) into contiguous chunks and run fn(ctx, begin, end) on each,
 * one chunk per thread. Runs inline when the pool has one thread or n is small. */
typedef void (*tuna_range_fn)(void *ctx, long begin, long end);
void tuna_parallel_for(const tuna_threads *pool, long n, tuna_range_fn fn, void *ctx);

#endif
