/* Matmul kernels against a naive double-precision loop: f32 (OpenBLAS),
 * bf16 and f16 weights (our GEMV and GEMM, both ISAs the CPU has), odd sizes,
 * bias, threads, and the f32 backward by finite differences. */
#include "test.h"

#include "core/dtype.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "ops/ops.h"

#include <stdint.h>

static uint64_t seed_state = 12345;
static float frand(void) { /* uniform [-1, 1), deterministic */
    seed_state = seed_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((seed_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static void naive_matmul(float *y, const float *x, const float *w, const float *b, int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0;
            for (int k = 0; k < K; k++) s += (double)x[m * K + k] * w[n * K + k];
            y[m * N + n] = (float)s;
        }
}

/* One case: weight dtype dt, sizes, with/without bias, given thread count. */
static double run_case(tuna_dtype dt, int M, int N, int K, int with_bias, int threads) {
    float *x = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K);
    float *b = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * M * N), *ref = malloc(sizeof(float) * M * N);
    uint16_t *w16 = malloc(sizeof(uint16_t) * N * K);
    for (int i = 0; i < M * K; i++) x[i] = frand();
    for (int i = 0; i < N; i++) b[i] = frand();
    for (int i = 0; i < N * K; i++) {
        float v = frand();
        if (dt == TUNA_BF16) { w16[i] = tuna_f32_to_bf16(v); v = tuna_bf16_to_f32(w16[i]); }
        if (dt == TUNA_F16) { w16[i] = tuna_f32_to_f16(v); v = tuna_f16_to_f32(w16[i]); }
        wf[i] = v;
    }
    tuna_tensor w;
    int64_t shape[2] = {N, K};
    tuna_tensor_init_view(&w, dt, 2, shape, dt == TUNA_F32 ? (void *)wf : (void *)w16);
    tuna_threads pool;
    tuna_threads_init(&pool, threads);
    for (int i = 0; i < M * N; i++) y[i] = NAN; /* every element must be written */
    tuna_error err;
    tuna_status st = tuna_matmul_forward(y, x, &w, with_bias ? b : NULL, M, K, &pool, &err);
    naive_matmul(ref, x, wf, with_bias ? b : NULL, M, N, K);
    double e = st == TUNA_OK ? test_max_relative_error(y, ref, (long)M * N) : INFINITY;
    free(x); free(wf); free(b); free(y); free(ref); free(w16);
    return e;
}

TEST(matmul_all_dtypes_odd_sizes) {
    const int Ms[] = {1, 2, 3, 7, 8, 9, 17, 65};
    const int Ks[] = {17, 130};
    const int Ns[] = {33, 5};
    const tuna_dtype dts[] = {TUNA_F32, TUNA_BF16, TUNA_F16};
    for (int a = 0; a < 3; a++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (int ki = 0; ki < 2; ki++)
                for (int ni = 0; ni < 2; ni++)
                    for (int bias = 0; bias < 2; bias++) {
                        double e = run_case(dts[a], Ms[mi], Ns[ni], Ks[ki], bias, 1 + (mi & 1));
                        CHECK(e < 2e-6, "%s M=%d N=%d K=%d bias=%d rel err %.3g", tuna_dtype_name(dts[a]),
                              Ms[mi], Ns[ni], Ks[ki], bias, e);
                    }
}

TEST(matmul_larger_blocks) {
    /* K spans several K blocks (256), N several N blocks (96) and thread splits */
    CHECK(run_case(TUNA_BF16, 70, 200, 600, 1, 2) < 2e-6, "bf16 70x200x600");
    CHECK(run_case(TUNA_F16, 33, 130, 515, 0, 2) < 2e-6, "f16 33x130x515");
    CHECK(run_case(TUNA_BF16, 4, 257, 1031, 1, 2) < 2e-6, "bf16 gemv 4x257x1031");
    /* GEMV: x rows in groups of 4 (5 = 4 + 1), K a whole number of 16-blocks
     * (an odd count: the prefetch runs every other block), the 0.5B width */
    CHECK(run_case(TUNA_BF16, 5, 37, 48, 1, 2) < 2e-6, "bf16 gemv 5x37x48");
    CHECK(run_case(TUNA_BF16, 1, 64, 896, 0, 2) < 2e-6, "bf16 gemv 1x64x896");
    CHECK(run_case(TUNA_F16, 6, 21, 200, 1, 1) < 2e-6, "f16 gemv 6x21x200");
    CHECK(run_case(TUNA_F32, 1, 70, 896, 1, 2) < 2e-6, "f32 gemv 1x70x896");
    CHECK(run_case(TUNA_F32, 7, 19, 333, 0, 2) < 2e-6, "f32 gemv 7x19x333");
    /* M >= 64 with 16-bit weights: W widened for OpenBLAS in blocks of
     * max(128, 16 MB / 4K) rows; K = 32768 makes the blocks 128 rows, so 300
     * columns on one thread take three calls (128 + 128 + 44), bias included */
    CHECK(run_case(TUNA_BF16, 64, 300, 32768, 1, 1) < 2e-6, "bf16 64x300x32768 (several widened blocks)");
}

/* Grouped products (q/k/v, gate/up): three weights of different dtypes and
 * widths, with and without bias, against the naive loop, one token (GEMV) and
 * 70 rows (GEMM), 1 and 3 threads. */
TEST(matmul_group_matches_separate_products) {
    enum { K = 77, T = 3 };
    const int Ns[T] = {40, 13, 29};
    const tuna_dtype dts[T] = {TUNA_BF16, TUNA_F32, TUNA_F16};
    const int Ms[2] = {1, 70};
    for (int mi = 0; mi < 2; mi++)
        for (int threads = 1; threads <= 3; threads += 2) {
            int M = Ms[mi];
            float *x = malloc(sizeof(float) * M * K), *wf[T], *b[T], *y[T], *ref[T];
            uint16_t *w16[T];
            tuna_tensor w[T];
            tuna_matmul_target targets[T];
            for (int i = 0; i < M * K; i++) x[i] = frand();
            for (int t = 0; t < T; t++) {
                int N = Ns[t];
                wf[t] = malloc(sizeof(float) * N * K), w16[t] = malloc(2 * N * K);
                b[t] = malloc(sizeof(float) * N), y[t] = malloc(sizeof(float) * M * N), ref[t] = malloc(sizeof(float) * M * N);
                for (int i = 0; i < N; i++) b[t][i] = frand();
                for (int i = 0; i < N * K; i++) {
                    float v = frand();
                    if (dts[t] == TUNA_BF16) { w16[t][i] = tuna_f32_to_bf16(v); v = tuna_bf16_to_f32(w16[t][i]); }
                    if (dts[t] == TUNA_F16) { w16[t][i] = tuna_f32_to_f16(v); v = tuna_f16_to_f32(w16[t][i]); }
                    wf[t][i] = v;
                }
                int64_t shape[2] = {N, K};
                tuna_tensor_init_view(&w[t], dts[t], 2, shape, dts[t] == TUNA_F32 ? (void *)wf[t] : (void *)w16[t]);
                for (int i = 0; i < M * N; i++) y[t][i] = NAN;
                targets[t] = (tuna_matmul_target){y[t], &w[t], t == 1 ? NULL : b[t]};
                naive_matmul(ref[t], x, wf[t], t == 1 ? NULL : b[t], M, N, K);
            }
            tuna_threads pool;
            tuna_threads_init(&pool, threads);
            tuna_error err = {0};
            CHECK(tuna_matmul_forward_group(targets, T, x, M, K, &pool, &err) == TUNA_OK, "%s", err.message);
            for (int t = 0; t < T; t++) {
                double e = test_max_relative_error(y[t], ref[t], (long)M * Ns[t]);
                CHECK(e < 2e-6, "M=%d threads=%d target %d (%s): rel err %.3g", M, threads, t, tuna_dtype_name(dts[t]), e);
                free(wf[t]); free(w16[t]); free(b[t]); free(y[t]); free(ref[t]);
            }
            free(x);
        }
    float x[4] = {0}, y[4];
    int64_t shape[2] = {2, 3};
    tuna_tensor bad;
    tuna_tensor_init_view(&bad, TUNA_F32, 2, shape, x);
    tuna_matmul_target t = {y, &bad, NULL};
    tuna_error err;
    CHECK(tuna_matmul_forward_group(&t, 1, x, 1, 2, NULL, &err) == TUNA_ERR_INVALID, "K mismatch accepted");
    CHECK(tuna_matmul_forward_group(&t, TUNA_MATMUL_GROUP_MAX + 1, x, 1, 3, NULL, &err) == TUNA_ERR_INVALID,
          "too many targets accepted");
}

TEST(matmul_rejects_bad_input) {
    float x[4] = {0}, y[4];
    int64_t shape[2] = {2, 2};
    int32_t iw[4] = {0};
    tuna_tensor w;
    tuna_tensor_init_view(&w, TUNA_I32, 2, shape, iw);
    tuna_error err;
    CHECK(tuna_matmul_forward(y, x, &w, NULL, 2, 2, NULL, &err) == TUNA_ERR_UNSUPPORTED, "i32 weight");
    tuna_tensor_init_view(&w, TUNA_F32, 2, shape, x);
    CHECK(tuna_matmul_forward(y, x, &w, NULL, 2, 3, NULL, &err) == TUNA_ERR_INVALID, "K mismatch");
}

TEST(matmul_backward_matches_finite_differences) {
    enum { M = 3, N = 5, K = 7 };
    float x[M * K], w[N * K], b[N], dy[M * N], y[M * N];
    for (int i = 0; i < M * K; i++) x[i] = frand();
    for (int i = 0; i < N * K; i++) w[i] = frand();
    for (int i = 0; i < N; i++) b[i] = frand();
    for (int i = 0; i < M * N; i++) dy[i] = frand();
    int64_t shape[2] = {N, K};
    tuna_tensor wt;
    tuna_tensor_init_view(&wt, TUNA_F32, 2, shape, w);
    /* loss = sum dy * y */
    float dx[M * K], dW[N * K] = {0}, db[N] = {0};
    REQUIRE(tuna_matmul_backward_input(dx, dy, &wt, M, 0, NULL, NULL) == TUNA_OK, "backward input");
    tuna_matmul_backward_weight(dW, db, dy, x, M, N, K, NULL);
    double eps = 1e-2, worst = 0;
#define LOSS(out) do { tuna_matmul_forward(y, x, &wt, b, M, K, NULL, NULL); out = 0; \
        for (int q = 0; q < M * N; q++) out += (double)dy[q] * y[q]; } while (0)
    for (int i = 0; i < M * K; i++) {
        double lp, lm; float s = x[i];
        x[i] = s + eps; LOSS(lp); x[i] = s - eps; LOSS(lm); x[i] = s;
        double g = (lp - lm) / (2 * eps);
        if (fabs(g - dx[i]) > worst) worst = fabs(g - dx[i]);
    }
    for (int i = 0; i < N * K; i++) {
        double lp, lm; float s = w[i];
        w[i] = s + eps; LOSS(lp); w[i] = s - eps; LOSS(lm); w[i] = s;
        double g = (lp - lm) / (2 * eps);
        if (fabs(g - dW[i]) > worst) worst = fabs(g - dW[i]);
    }
    for (int i = 0; i < N; i++) {
        double lp, lm; float s = b[i];
        b[i] = s + eps; LOSS(lp); b[i] = s - eps; LOSS(lm); b[i] = s;
        double g = (lp - lm) / (2 * eps);
        if (fabs(g - db[i]) > worst) worst = fabs(g - db[i]);
    }
#undef LOSS
    CHECK(worst < 1e-3, "max |fd - analytic| = %.3g", worst);
}

TEST(matmul_backward_input_bf16_matches_f32) {
    enum { M = 9, N = 37, K = 21 };
    float dy[M * N], wf[N * K], dx[M * K], ref[M * K];
    uint16_t w16[N * K];
    for (int i = 0; i < M * N; i++) dy[i] = frand();
    for (int i = 0; i < N * K; i++) { w16[i] = tuna_f32_to_bf16(frand()); wf[i] = tuna_bf16_to_f32(w16[i]); }
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double s = 1.0; /* accumulate onto 1 */
            for (int n = 0; n < N; n++) s += (double)dy[m * N + n] * wf[n * K + k];
            ref[m * K + k] = (float)s;
            dx[m * K + k] = 1.0f;
        }
    int64_t shape[2] = {N, K};
    tuna_tensor wt;
    tuna_tensor_init_view(&wt, TUNA_BF16, 2, shape, w16);
    REQUIRE(tuna_matmul_backward_input(dx, dy, &wt, M, 1, NULL, NULL) == TUNA_OK, "bf16 backward");
    double e = test_max_relative_error(dx, ref, M * K);
    CHECK(e < 2e-6, "rel err %.3g", e);
}

int main(void) {
    printf("matmul isa: %s\n", tuna_matmul_isa());
    RUN(matmul_all_dtypes_odd_sizes);
    RUN(matmul_larger_blocks);
    RUN(matmul_group_matches_separate_products);
    RUN(matmul_rejects_bad_input);
    RUN(matmul_backward_matches_finite_differences);
    RUN(matmul_backward_input_bf16_matches_f32);
    return test_summary();
}
