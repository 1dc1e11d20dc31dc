/* Kernel benchmark: matmul (ours f32/bf16 vs OpenBLAS sgemm) at LLM shapes,
 * omni-mask attention, memory read bandwidth and the bf16 decode GEMV as a
 * fraction of the bandwidth roofline.
 *
 *   TUNA_THREADS=2 build/bench/bench_kernels [--quick]
 *
 * --quick scales shapes down (for CI smoke runs). Timings are the best of a
 * few repetitions (the machine may be shared). */
#include "core/dtype.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "ops/ops.h"

#include "bench_common.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- matmul ---- */
static double time_matmul(float *y, const float *x, const tuna_tensor *w, int64_t M, int64_t K,
                          const tuna_threads *pool, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        if (tuna_matmul_forward(y, x, w, NULL, M, K, pool, NULL) != TUNA_OK) {
            fprintf(stderr, "matmul failed\n");
            exit(1);
        }
        double dt = bench_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

static double time_sgemm(float *y, const float *x, const float *w, int64_t M, int64_t N, int64_t K,
                         int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x,
                    (int)K, w, (int)K, 0.0f, y, (int)N);
        double dt = bench_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    tuna_threads pool;
    tuna_threads_init(&pool, 0);
    printf("bench_kernels: threads=%d, matmul isa=%s, OpenBLAS threads=%d%s\n", pool.count,
           tuna_matmul_isa(), openblas_get_num_threads(), quick ? " (quick: shapes scaled down)" : "");

    /* memory bandwidth on a buffer much larger than the 32 MB L3 */
    size_t bw_bytes = quick ? (size_t)128 << 20 : (size_t)1 << 30;
    double bw = bench_memory_bandwidth(&pool, bw_bytes);
    printf("\nmemory read bandwidth: %.1f GB/s (streaming sum, 8 streams per thread, over %zu MB, best of 5)\n", bw,
           bw_bytes >> 20);

    const int64_t shapes[2][2] = {{3584, 3584}, {18944, 3584}};
    const int64_t Ms[3] = {1, 64, 512};
    tuna_rng rng;
    tuna_rng_seed(&rng, 1);
    printf("\nmatmul y[M,N] = x[M,K] W^T   (GFLOP/s = 2MNK / time; best of reps)\n");
    printf("%6s %6s %5s | %10s %10s %10s | %12s\n", "N", "K", "M", "ours-bf16", "ours-f32",
           "openblas", "bf16/openbl");
    double gemv_fraction[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        int64_t N = shapes[s][0], K = shapes[s][1];
        if (quick) N /= 4;
        float *wf = bench_alloc((size_t)(N * K) * sizeof(float));
        uint16_t *wb = bench_alloc((size_t)(N * K) * sizeof(uint16_t));
        tuna_rng_fill_normal(&rng, wf, (long)(N * K), 0.0f, 0.02f);
        for (int64_t i = 0; i < N * K; i++) wb[i] = tuna_f32_to_bf16(wf[i]);
        int64_t shape[2] = {N, K};
        tuna_tensor tf, tb;
        tuna_tensor_init_view(&tf, TUNA_F32, 2, shape, wf);
        tuna_tensor_init_view(&tb, TUNA_BF16, 2, shape, wb);
        for (int mi = 0; mi < 3; mi++) {
            int64_t M = Ms[mi];
            if (quick && M > 64) M = 128;
            float *x = bench_alloc((size_t)(M * K) * sizeof(float));
            float *y = bench_alloc((size_t)(M * N) * sizeof(float));
            tuna_rng_fill_normal(&rng, x, (long)(M * K), 0.0f, 1.0f);
            int reps = M == 1 ? 50 : M <= 64 ? 8 : 3;
            double flop = 2.0 * (double)M * (double)N * (double)K;
            /* the machine may be shared: re-measure the bandwidth right before
             * the decode GEMV so the roofline fraction compares like with like */
            double bw_now = M == 1 ? bench_memory_bandwidth(&pool, bw_bytes / 4) : bw;
            double tb16 = time_matmul(y, x, &tb, M, K, &pool, reps);
            double tf32 = time_matmul(y, x, &tf, M, K, &pool, reps);
            double tbl = time_sgemm(y, x, wf, M, N, K, reps);
            printf("%6lld %6lld %5lld | %10.1f %10.1f %10.1f | %11.2fx\n", (long long)N,
                   (long long)K, (long long)M, flop / tb16 / 1e9, flop / tf32 / 1e9,
                   flop / tbl / 1e9, tbl / tb16);
            if (M == 1) {
                double gbs = (double)(N * K) * 2.0 / tb16 / 1e9;
                gemv_fraction[s] = gbs / bw_now;
                int in_cache = (double)(N * K) * 2.0 < 40e6; /* about the L3 size */
                printf("       one-token bf16: %.2f ms, %.1f GB/s of weights = %.0f%% of the %.1f GB/s roofline (re-measured)%s\n",
                       tb16 * 1e3, gbs, 100.0 * gbs / bw_now, bw_now,
                       in_cache ? " (weights fit in L3: not a DRAM figure)" : "");
            }
            free(x);
            free(y);
        }
        free(wf);
        free(wb);
    }

    /* attention: Qwen2.5-7B LLM geometry (28 q heads, 4 kv heads, head_dim 128),
     * omni mask with one 1025-token image segment in the middle */
    printf("\nattention (Hq=28, Hkv=4, D=128, omni mask with one image segment; FLOPs = 4*D*visible pairs)\n");
    const int64_t Ls[2] = {1024, 4096};
    for (int li = 0; li < 2; li++) {
        int64_t L = quick ? Ls[li] / 4 : Ls[li];
        int Hq = 28, Hkv = 4, D = 128;
        float *q = bench_alloc((size_t)(L * Hq * D) * sizeof(float));
        float *k = bench_alloc((size_t)(L * Hkv * D) * sizeof(float));
        float *v = bench_alloc((size_t)(L * Hkv * D) * sizeof(float));
        float *o = bench_alloc((size_t)(L * Hq * D) * sizeof(float));
        tuna_rng_fill_normal(&rng, q, (long)(L * Hq * D), 0.0f, 1.0f);
        tuna_rng_fill_normal(&rng, k, (long)(L * Hkv * D), 0.0f, 1.0f);
        tuna_rng_fill_normal(&rng, v, (long)(L * Hkv * D), 0.0f, 1.0f);
        tuna_segment seg = {L / 4, L / 2};
        tuna_attention_params p = {.q_len = L, .k_len = L, .n_heads = Hq, .n_kv_heads = Hkv,
                                   .head_dim = D, .segments = &seg, .n_segments = 1};
        double pairs = 0;
        for (int64_t i = 0; i < L; i++) {
            int64_t vis = i + 1;
            if (i >= seg.offset && i < seg.offset + seg.length) vis = seg.offset + seg.length;
            pairs += (double)vis;
        }
        double flop = 4.0 * D * pairs * Hq;
        double best = 1e30;
        for (int r = 0; r < (L > 2048 ? 1 : 3); r++) {
            double t0 = bench_now();
            tuna_attention_forward(o, NULL, q, k, v, &p, &pool, NULL);
            double dt = bench_now() - t0;
            if (dt < best) best = dt;
        }
        printf("  L=%5lld: %8.3f s  %9.0f tokens/s  %6.1f GFLOP/s\n", (long long)L, best,
               (double)L / best, flop / best / 1e9);
        free(q);
        free(k);
        free(v);
        free(o);
    }

    printf("\ntarget: bf16 one-token matmul on the DRAM-sized %lldx3584 weight >= 80%% of roofline: %s (%.0f%%)\n",
           (long long)shapes[1][0] / (quick ? 4 : 1), gemv_fraction[1] >= 0.8 ? "met" : "NOT met",
           100 * gemv_fraction[1]);
    return 0;
}
