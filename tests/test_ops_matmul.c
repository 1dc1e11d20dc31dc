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
    RUN(matmul_rejects_bad_input);
    RUN(matmul_backward_matches_finite_differences);
    RUN(matmul_backward_input_bf16_matches_f32);
    return test_summary();
}
