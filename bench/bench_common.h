/* Helpers shared by the benchmark binaries (bench/bench_*.c): a monotonic
 * clock, an aligned allocation that exits on failure, and the machine's memory
 * read bandwidth (the roofline of memory-bound kernels such as one-token
 * decoding, which reads every weight once per token).
 *
 * Header-only (static functions): each bench is one translation unit linked
 * against libtuna.a, and the Makefile builds bench/bench_*.c with -Ibench. */
#ifndef TUNA_BENCH_COMMON_H
#define TUNA_BENCH_COMMON_H

#include "core/threads.h"

#include <cjson/cJSON.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds used by every thread of the process (user + system). On a
 * shared machine, cpu / (wall * threads) tells how much of the requested
 * cores a measurement actually got. */
static inline double bench_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void *bench_alloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* The 1-minute load average: the machine may be shared, and every figure
 * depends on how many cores other processes take. */
static inline void bench_print_load(const char *when, const tuna_threads *pool) {
    double load[1];
    if (getloadavg(load, 1) == 1)
        printf("%s: load average %.2f (1 min) on %ld cores, %d threads here; OMP_WAIT_POLICY=%s\n", when, load[0],
               sysconf(_SC_NPROCESSORS_ONLN), pool->count, getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(unset)");
}

/* Runs a reference script through popen: its progress goes to our stderr, the
 * last line of its stdout that starts with '{' is returned parsed (caller
 * cJSON_Deletes), or NULL when it failed. `who` prefixes the error line. */
static inline cJSON *bench_run_json_command(const char *who, const char *cmd) {
    printf("\nreference: %s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    char line[8192], last[8192] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
    int rc = pclose(p);
    if (rc != 0 || !last[0]) {
        fprintf(stderr, "%s: the reference failed (status %d)\n", who, rc);
        return NULL;
    }
    return cJSON_Parse(last);
}

/* A number of a JSON object; 0 when absent (or j is NULL). */
static inline double bench_json_number(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

/* ---- memory read bandwidth: streaming sum, so the reads cannot be elided ---- */
typedef struct {
    const float *buf;
    double sums[64];
} bench_bw_job;

/* Each thread reads its chunk as 8 interleaved sequential streams: one stream
 * per core leaves the memory system idle between misses (a GEMV reading
 * several weight rows at once would beat such a "roofline"). */
enum { BENCH_BW_STREAMS = 8 };
static void bench_bw_range(void *ctx, long begin, long end) {
    bench_bw_job *j = ctx;
    long len = (end - begin) / BENCH_BW_STREAMS; /* units of 32 floats per stream */
    const float *base[BENCH_BW_STREAMS];
    for (int s = 0; s < BENCH_BW_STREAMS; s++) base[s] = j->buf + (begin + s * len) * 32;
    __m256 a[BENCH_BW_STREAMS];
    for (int s = 0; s < BENCH_BW_STREAMS; s++) a[s] = _mm256_setzero_ps();
    for (long i = 0; i < len * 32; i += 32)
        for (int s = 0; s < BENCH_BW_STREAMS; s++) {
            const float *p = base[s] + i;
            a[s] = _mm256_add_ps(a[s], _mm256_add_ps(_mm256_add_ps(_mm256_load_ps(p), _mm256_load_ps(p + 8)),
                                                     _mm256_add_ps(_mm256_load_ps(p + 16), _mm256_load_ps(p + 24))));
        }
    __m256 t = a[0];
    for (int s = 1; s < BENCH_BW_STREAMS; s++) t = _mm256_add_ps(t, a[s]);
    float out[8];
    _mm256_storeu_ps(out, t);
    j->sums[begin % 64] += out[0] + out[7];
}

/* GB/s reading a buffer of `bytes` (make it much larger than the last-level
 * cache), best of 5 passes over all the pool's threads. */
static inline double bench_memory_bandwidth(const tuna_threads *pool, size_t bytes) {
    size_t n = bytes / sizeof(float);
    float *buf = bench_alloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    bench_bw_job job = {.buf = buf};
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = bench_now();
        tuna_parallel_for(pool, (long)(n / 32), bench_bw_range, &job);
        double dt = bench_now() - t0;
        if (dt < best) best = dt;
    }
    free(buf);
    return (double)bytes / best / 1e9;
}

#endif
