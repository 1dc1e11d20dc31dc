#include "core/threads.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

void tuna_threads_init(tuna_threads *pool, int count) {
    if (count <= 0) {
        const char *env = getenv("TUNA_THREADS");
        if (env && atoi(env) > 0) count = atoi(env);
    }
    if (count <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        count = cores > 0 ? (int)cores : 1;
    }
    if (count > 1024) count = 1024;
    pool->count = count;
    /* One team of threads: OpenBLAS runs single-threaded inside each of ours
     * (src/ops/cpu/matmul.c splits the f32 GEMMs over this pool). */
    openblas_set_num_threads(1);
}

void tuna_parallel_for(const tuna_threads *pool, long n, tuna_range_fn fn, void *ctx) {
    int threads = pool ? pool->count : 1;
    if (threads > n) threads = (int)n;
    if (threads <= 1) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int id = omp_get_thread_num();
        int total = omp_get_num_threads();
        long begin = n * id / total;
        long end = n * (id + 1) / total;
        if (begin < end) fn(ctx, begin, end);
    }
}
