/* Quantised matmul benchmark (docs/kernels.md, docs/quantization.md).
 *
 *   TUNA_THREADS=2 build/bench/bench_quant [--quick] [--shape N K] [--copies C]
 *
 * 1. Decode GEMV (M = 1) per weight type over C copies of an [N, K] matrix
 *    (default 16 copies of 4096 x 4096: every type's set is larger than the
 *    32 MB L3, so the weights come from DRAM as in a model's decode step):
 *    GB/s of weight bytes and the fraction of the machine's read bandwidth
 *    (the roofline), beside OpenBLAS sgemm on the same shapes in f32.
 * 2. GEMM (M = 16, 64, 512 rows of x) on one copy: the quantised product both ways
 *    (integer dots over 8-bit x, and blocks of W dequantised for OpenBLAS),
 *    our bf16 path and OpenBLAS f32, in GFLOP/s. */
#include "core/dtype.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "ops/cpu/quant.h"
#include "ops/ops.h"

#include "bench_common.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    tuna_dtype dtype;
} wtype;

static const wtype types[] = {{"f32", TUNA_F32},   {"bf16", TUNA_BF16}, {"q8_0", TUNA_Q8_0}, {"q6_k", TUNA_Q6_K},
                              {"q5_0", TUNA_Q5_0}, {"q4_k", TUNA_Q4_K}, {"q4_0", TUNA_Q4_0}};
#define NTYPES (int)(sizeof types / sizeof types[0])

static void die(const char *what, const tuna_error *err) {
    fprintf(stderr, "bench_quant: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

/* GFLOP/s of y = x W^T for M rows of x, per type: quantised both ways. */
static void gemm_table(int64_t M, int64_t N, int64_t K, const float *wf, const float *x, float *y,
                       const tuna_threads *pool) {
    double flop = 2.0 * (double)M * (double)N * (double)K;
    int64_t shape[2] = {N, K};
    tuna_error err = {0};
    printf("\nGEMM, M = %lld rows of x (GFLOP/s = 2MNK / time, best of 3):\n", (long long)M);
    printf("%-6s %12s %12s\n", "type", "int-dots", "dequant+sgemm");
    for (int t = 0; t < NTYPES; t++) {
        tuna_dtype dt = types[t].dtype;
        tuna_tensor w;
        if (tuna_tensor_alloc(&w, dt, 2, shape, &err) != TUNA_OK) die("alloc", &err);
        if (tuna_quantize_rows(dt, wf, w.data, N, K, pool, &err) != TUNA_OK) die("quantize", &err);
        double best[2] = {1e30, 1e30};
        for (int path = 0; path < 2; path++) {
            if (!tuna_dtype_is_quantized(dt) && path == 0) continue;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = bench_now();
                tuna_status s = tuna_dtype_is_quantized(dt)
                                    ? tuna_qmm(y, x, w.data, dt, NULL, M, N, K, path ? TUNA_QMM_SGEMM : TUNA_QMM_INT, pool, &err)
                                    : tuna_matmul_forward(y, x, &w, NULL, M, K, pool, &err);
                if (s != TUNA_OK) die("matmul", &err);
                double seconds = bench_now() - t0;
                if (seconds < best[path]) best[path] = seconds;
            }
        }
        if (tuna_dtype_is_quantized(dt))
            printf("%-6s %12.1f %12.1f\n", types[t].name, flop / best[0] / 1e9, flop / best[1] / 1e9);
        else
            printf("%-6s %12s %12.1f   (our %s path)\n", types[t].name, "-", flop / best[1] / 1e9, types[t].name);
        tuna_tensor_free(&w);
    }
}

int main(int argc, char **argv) {
    int quick = 0;
    int64_t N = 4096, K = 4096;
    int copies = 16;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--shape") == 0 && i + 2 < argc) N = atoll(argv[++i]), K = atoll(argv[++i]);
        else if (strcmp(argv[i], "--copies") == 0 && i + 1 < argc) copies = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_quant [--quick] [--shape N K] [--copies C]\n");
            return 2;
        }
    }
    if (quick) N = 1024, K = 1024, copies = 4;
    if (N <= 0 || K <= 0 || K % 256 || copies <= 0) {
        fprintf(stderr, "bench_quant: N, K > 0, K a multiple of 256, copies > 0\n");
        return 2;
    }
    tuna_threads pool;
    tuna_threads_init(&pool, 0);
    bench_print_load("start", &pool);
    printf("bench_quant: threads=%d, shape [%lld, %lld] x %d copies\n", pool.count, (long long)N, (long long)K, copies);

    tuna_rng rng;
    tuna_rng_seed(&rng, 7);
    float *wf = bench_alloc(sizeof(float) * (size_t)(N * K));
    tuna_rng_fill_normal(&rng, wf, (long)(N * K), 0.0f, 0.02f);
    float *x = bench_alloc(sizeof(float) * (size_t)(512 * K));
    tuna_rng_fill_normal(&rng, x, (long)(512 * K), 0.0f, 1.0f);
    float *y = bench_alloc(sizeof(float) * (size_t)(512 * N));

    double bw = bench_memory_bandwidth(&pool, (size_t)1 << 30);
    printf("memory read bandwidth: %.1f GB/s (best of 5 over 1 GB)\n\n", bw);
    printf("decode GEMV, M = 1, %d matrices per pass (weights from DRAM):\n", copies);
    printf("%-6s %10s %10s %10s %10s %9s\n", "type", "bits/w", "MB/pass", "ms/pass", "GB/s", "roofline");
    int64_t shape[2] = {N, K};
    tuna_error err = {0};
    tuna_tensor *mats = calloc((size_t)copies, sizeof *mats);
    for (int t = 0; t < NTYPES; t++) {
        tuna_dtype dt = types[t].dtype;
        for (int c = 0; c < copies; c++) {
            if (tuna_tensor_alloc(&mats[c], dt, 2, shape, &err) != TUNA_OK) die("alloc", &err);
            if (c == 0) {
                if (tuna_quantize_rows(dt, wf, mats[0].data, N, K, &pool, &err) != TUNA_OK) die("quantize", &err);
            } else {
                memcpy(mats[c].data, mats[0].data, tuna_tensor_nbytes(&mats[0]));
            }
        }
        double bytes = (double)tuna_tensor_nbytes(&mats[0]) * copies;
        double best = 1e30;
        for (int rep = 0; rep < (quick ? 3 : 7); rep++) {
            double t0 = bench_now();
            for (int c = 0; c < copies; c++)
                if (tuna_matmul_forward(y, x, &mats[c], NULL, 1, K, &pool, &err) != TUNA_OK) die("matmul", &err);
            double dt = bench_now() - t0;
            if (dt < best) best = dt;
        }
        double gbs = bytes / best / 1e9;
        printf("%-6s %10.2f %10.1f %10.2f %10.1f %8.0f%%\n", types[t].name, 8.0 * bytes / ((double)N * K * copies),
               bytes / 1e6, best * 1e3, gbs, 100.0 * gbs / bw);
        if (dt == TUNA_F32) { /* OpenBLAS's M = 1 sgemm on the same f32 matrices */
            best = 1e30;
            for (int rep = 0; rep < (quick ? 3 : 7); rep++) {
                double t0 = bench_now();
                for (int c = 0; c < copies; c++)
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, mats[c].data, (int)K, x, 1, 0.0f, y, 1);
                double dt = bench_now() - t0;
                if (dt < best) best = dt;
            }
            gbs = bytes / best / 1e9;
            printf("%-6s %10.2f %10.1f %10.2f %10.1f %8.0f%%   (OpenBLAS sgemv, its own threads off)\n", "sgemv", 32.0,
                   bytes / 1e6, best * 1e3, gbs, 100.0 * gbs / bw);
        }
        for (int c = 0; c < copies; c++) tuna_tensor_free(&mats[c]);
    }

    const int64_t Ms[] = {16, 64, 512};
    for (int mi = 0; mi < 3; mi++) gemm_table(quick ? Ms[mi] / 4 : Ms[mi], N, K, wf, x, y, &pool);
    bench_print_load("end", &pool);
    free(mats);
    free(wf);
    free(x);
    free(y);
    return 0;
}
