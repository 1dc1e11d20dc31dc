/* Block-quantised weights (ggml's Q8_0, Q4_0, Q5_0, Q4_K, Q6_K): sizes, the
 * round trip of the quantisers, hand-built blocks decoded by the formulas of
 * the format, the AVX2 integer dot products against the scalar reference,
 * and the matmul / grouped matmul / backward / embedding dispatch against f32
 * products of the dequantised weights. The bytes of Q8_0/Q4_0/Q5_0 against
 * ggml's own quantiser are checked by tools/gguf_interop.py (test_gguf). */
#include "test.h"

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/cpu/quant.h"
#include "ops/ops.h"

#include <stdint.h>

static const tuna_dtype qtypes[] = {TUNA_Q8_0, TUNA_Q4_0, TUNA_Q5_0, TUNA_Q4_K, TUNA_Q6_K};
#define NQ (int)(sizeof qtypes / sizeof qtypes[0])

static uint64_t seed_state = 777;
static float frand(void) { /* uniform [-1, 1) */
    seed_state = seed_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((seed_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static float grand(void) { /* roughly gaussian: sum of 4 uniforms */
    return (frand() + frand() + frand() + frand()) * 0.87f;
}

static uint8_t *quantize_matrix(tuna_dtype t, const float *w, int64_t N, int64_t K) {
    uint8_t *q = malloc(tuna_dtype_bytes_for(t, N * K));
    for (int64_t n = 0; n < N; n++)
        if (tuna_quantize_row(t, w + n * K, q + tuna_dtype_bytes_for(t, n * K), K, NULL) != TUNA_OK) return q;
    return q;
}

static float *dequantize_matrix(tuna_dtype t, const uint8_t *q, int64_t N, int64_t K) {
    float *w = malloc(sizeof(float) * (size_t)(N * K));
    tuna_dequantize_rows(t, q, w, 0, N, K, NULL);
    return w;
}

TEST(block_sizes) {
    int64_t block[] = {32, 32, 32, 256, 256};
    size_t bytes[] = {34, 18, 22, 144, 210};
    for (int i = 0; i < NQ; i++) {
        CHECK(tuna_dtype_block_size(qtypes[i]) == block[i], "%s block", tuna_dtype_name(qtypes[i]));
        CHECK(tuna_dtype_block_bytes(qtypes[i]) == bytes[i], "%s bytes", tuna_dtype_name(qtypes[i]));
        CHECK(tuna_dtype_is_quantized(qtypes[i]), "%s is quantised", tuna_dtype_name(qtypes[i]));
        CHECK(tuna_dtype_size(qtypes[i]) == 0, "no element size");
        tuna_dtype back;
        CHECK(!tuna_dtype_from_name(tuna_dtype_name(qtypes[i]), &back), "block types are not safetensors dtypes");
    }
    CHECK(!tuna_dtype_is_quantized(TUNA_BF16) && tuna_dtype_block_size(TUNA_BF16) == 1, "bf16 is an element type");
    tuna_tensor t;
    int64_t shape[2] = {3, 512};
    REQUIRE(tuna_tensor_alloc(&t, TUNA_Q4_K, 2, shape, NULL) == TUNA_OK, "alloc Q4_K");
    CHECK(tuna_tensor_nbytes(&t) == 3 * 2 * 144, "Q4_K nbytes %zu", tuna_tensor_nbytes(&t));
    tuna_tensor row2 = tuna_tensor_slice_rows(&t, 2, 3);
    CHECK((char *)row2.data - (char *)t.data == 2 * 288, "row slice offset");
    tuna_tensor_free(&t);
    int64_t bad[2] = {3, 100};
    tuna_error err = {0};
    CHECK(tuna_tensor_alloc(&t, TUNA_Q8_0, 2, bad, &err) == TUNA_ERR_INVALID, "K = 100 is not whole Q8_0 blocks");
    CHECK(tuna_tensor_to_f32(&(tuna_tensor){.dtype = TUNA_Q8_0, .ndim = 1, .shape = {32}, .stride = {1}}, &t, &err) ==
              TUNA_ERR_UNSUPPORTED,
          "to_f32 refuses a block type");
}

/* Q8_0 by its definition: d = f16(amax/127), q = round(x/d) half away from 0. */
TEST(q8_0_by_definition) {
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * 0.25f + 0.01f;
    x[5] = -4.5f; /* the extreme */
    uint8_t b[34];
    REQUIRE(tuna_quantize_row(TUNA_Q8_0, x, b, 32, NULL) == TUNA_OK, "quantize");
    uint16_t h = tuna_f32_to_f16(4.5f / 127.0f);
    CHECK(memcmp(b, &h, 2) == 0, "d is f16(amax/127)");
    float id = 1.0f / (4.5f / 127.0f);
    for (int i = 0; i < 32; i++) CHECK((int8_t)b[2 + i] == (int8_t)roundf(x[i] * id), "q[%d]", i);
    CHECK((int8_t)b[2 + 5] == -127, "the extreme is -127");
    float zero[32] = {0};
    REQUIRE(tuna_quantize_row(TUNA_Q8_0, zero, b, 32, NULL) == TUNA_OK, "zeros");
    for (int i = 0; i < 34; i++) CHECK(b[i] == 0, "all-zero block is zero bytes");
}

/* Q4_0 / Q5_0: the signed extreme maps to level 0, i.e. -8 d (-16 d). */
TEST(q4_0_q5_0_by_definition) {
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = 0.1f * (float)(i % 7) - 0.2f;
    x[20] = 1.6f; /* positive extreme: d = 1.6 / -8 = -0.2 */
    uint8_t b4[18], b5[22];
    REQUIRE(tuna_quantize_row(TUNA_Q4_0, x, b4, 32, NULL) == TUNA_OK, "q4_0");
    REQUIRE(tuna_quantize_row(TUNA_Q5_0, x, b5, 32, NULL) == TUNA_OK, "q5_0");
    uint16_t h4 = tuna_f32_to_f16(1.6f / -8.0f), h5 = tuna_f32_to_f16(1.6f / -16.0f);
    CHECK(memcmp(b4, &h4, 2) == 0 && memcmp(b5, &h5, 2) == 0, "d = max / -8, max / -16");
    CHECK((b4[2 + 4] >> 4) == 0, "element 20 is the high nibble of byte 4, level 0");
    uint32_t high;
    memcpy(&high, b5 + 2, 4);
    CHECK((b5[6 + 4] >> 4) == 0 && ((high >> 20) & 1) == 0, "Q5_0 element 20 at level 0");
    float y[32];
    tuna_dequantize_row(TUNA_Q4_0, b4, y, 32);
    CHECK(fabsf(y[20] - 1.6f) < 1e-3f, "extreme restored: %g", y[20]);
    tuna_dequantize_row(TUNA_Q5_0, b5, y, 32);
    for (int i = 0; i < 32; i++) CHECK(fabsf(y[i] - x[i]) <= 0.05f + 1e-4f, "Q5_0 within d/2: %d %g %g", i, y[i], x[i]);
}

/* A hand-built Q4_K super-block decodes as w = d sc_j q - dmin m_j, with the
 * 6-bit scales/mins packed as ggml packs them. */
TEST(q4_k_layout) {
    uint8_t b[144] = {0};
    uint16_t d = tuna_f32_to_f16(0.5f), dmin = tuna_f32_to_f16(0.25f);
    memcpy(b, &d, 2);
    memcpy(b + 2, &dmin, 2);
    int sc[8] = {1, 2, 3, 63, 17, 40, 5, 33}, mn[8] = {0, 7, 63, 1, 20, 2, 48, 9};
    uint8_t *sm = b + 4;
    for (int j = 0; j < 4; j++) {
        sm[j] = (uint8_t)sc[j];
        sm[j + 4] = (uint8_t)mn[j];
    }
    for (int j = 4; j < 8; j++) {
        sm[j + 4] = (uint8_t)((sc[j] & 15) | (mn[j] & 15) << 4);
        sm[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        sm[j] |= (uint8_t)((mn[j] >> 4) << 6);
    }
    for (int i = 0; i < 128; i++) b[16 + i] = (uint8_t)((i * 7) & 255);
    float y[256];
    tuna_dequantize_row(TUNA_Q4_K, b, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, c = e / 64, i = e % 32;
        int q = (e % 64) < 32 ? b[16 + 32 * c + i] & 15 : b[16 + 32 * c + i] >> 4;
        float want = 0.5f * (float)sc[j] * (float)q - 0.25f * (float)mn[j];
        CHECK(y[e] == want, "Q4_K element %d: %g != %g", e, y[e], want);
    }
}

/* Q6_K: weight l + 32 t of each half: low nibble in ql, top bits in qh bits 2t. */
TEST(q6_k_layout) {
    uint8_t b[210];
    for (int i = 0; i < 192; i++) b[i] = (uint8_t)((i * 37 + 11) & 255);
    for (int j = 0; j < 16; j++) b[192 + j] = (uint8_t)(int8_t)(j * 9 - 70);
    uint16_t d = tuna_f32_to_f16(0.125f);
    memcpy(b + 208, &d, 2);
    float y[256];
    tuna_dequantize_row(TUNA_Q6_K, b, y, 256);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, t = r / 32, l = r % 32;
        const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
        int low = t == 0 ? ql[l] & 15 : t == 1 ? ql[l + 32] & 15 : t == 2 ? ql[l] >> 4 : ql[l + 32] >> 4;
        int q = low | ((qh[l] >> (2 * t)) & 3) << 4;
        float want = 0.125f * (float)(int8_t)b[192 + e / 16] * (float)(q - 32);
        CHECK(y[e] == want, "Q6_K element %d: %g != %g", e, y[e], want);
    }
}

static double rel_rmse(const float *a, const float *b, int64_t n) {
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(e / (r + 1e-30));
}

/* Round trip on gaussian rows: the error of each type within its known range,
 * the types ordered by bits, and dequantised values are a fixed point. */
TEST(round_trip_error) {
    const int64_t N = 64, K = 512;
    float *w = malloc(sizeof(float) * N * K);
    for (int64_t i = 0; i < N * K; i++) w[i] = grand() * 0.02f;
    /* relative RMS error bounds (measured: Q8_0 0.0051, Q4_0 0.082, Q5_0 0.041, Q4_K 0.069, Q6_K 0.017) */
    double bound[] = {0.006, 0.09, 0.045, 0.075, 0.019}, err[NQ];
    for (int t = 0; t < NQ; t++) {
        uint8_t *q = quantize_matrix(qtypes[t], w, N, K);
        float *back = dequantize_matrix(qtypes[t], q, N, K);
        err[t] = rel_rmse(back, w, N * K);
        CHECK(err[t] < bound[t], "%s relative RMS error %.4f >= %.4f", tuna_dtype_name(qtypes[t]), err[t], bound[t]);
        /* quantising the dequantised weights again changes them by (almost) nothing */
        uint8_t *q2 = quantize_matrix(qtypes[t], back, N, K);
        float *back2 = dequantize_matrix(qtypes[t], q2, N, K);
        double again = rel_rmse(back2, back, N * K);
        CHECK(again < err[t] * 0.2, "%s requantised: %.5f (first %.5f)", tuna_dtype_name(qtypes[t]), again, err[t]);
        free(q);
        free(q2);
        free(back);
        free(back2);
    }
    CHECK(err[0] < err[4] && err[4] < err[2] && err[2] < err[3] && err[3] < err[1],
          "error order Q8_0 < Q6_K < Q5_0 < Q4_K < Q4_0: %.4f %.4f %.4f %.4f %.4f", err[0], err[4], err[2], err[3], err[1]);
    free(w);
}

/* The AVX2 dequantisers give the scalar ones' values exactly. */
TEST(dequantize_avx2_is_scalar) {
    const int64_t K = 1024;
    float *w = malloc(sizeof(float) * K), *a = malloc(sizeof(float) * K), *b = malloc(sizeof(float) * K);
    for (int64_t i = 0; i < K; i++) w[i] = grand() * (i % 61 == 0 ? 10.0f : 0.1f);
    for (int t = 0; t < NQ; t++) {
        uint8_t *q = quantize_matrix(qtypes[t], w, 1, K);
        REQUIRE(tuna_dequantize_row_scalar(qtypes[t], q, a, K) == 0, "scalar");
        REQUIRE(tuna_dequantize_row_avx2(qtypes[t], q, b, K) == 0, "avx2");
        CHECK(memcmp(a, b, sizeof(float) * K) == 0, "%s: AVX2 dequantisation differs", tuna_dtype_name(qtypes[t]));
        free(q);
    }
    CHECK(tuna_dequantize_row_avx2(TUNA_BF16, w, a, 4) == -1, "block types only");
    free(w), free(a), free(b);
}

/* x quantised per block of 32: d = amax/127, q = round(x/d), sums per 16;
 * NaN or inf poisons its block's scale instead of vanishing. */
TEST(activation_quantisation) {
    float x[96];
    for (int i = 0; i < 96; i++) x[i] = grand() * (i == 40 ? 9.0f : 1.0f);
    tuna_q8_act a;
    REQUIRE(tuna_q8_act_quantize(&a, x, 1, 96, NULL) == TUNA_OK, "quantise");
    for (int b = 0; b < 3; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[32 * b + i]));
        CHECK(a.d[b] == amax / 127.0f, "block %d scale", b);
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 32; i++) {
            int want = (int)nearbyintf(x[32 * b + i] * (1.0f / a.d[b]));
            CHECK(a.q[32 * b + i] == want, "q[%d] = %d, want %d", 32 * b + i, a.q[32 * b + i], want);
            if (i < 16) s0 += want;
            else s1 += want;
        }
        CHECK(a.s16[2 * b] == s0 && a.s16[2 * b + 1] == s1, "block %d sums", b);
        CHECK(fabsf(a.s[b] - a.d[b] * (float)(s0 + s1)) <= 1e-6f * fabsf(a.s[b]) + 1e-9f, "block %d scaled sum", b);
    }
    tuna_q8_act_free(&a);
    x[70] = NAN;
    x[3] = INFINITY;
    REQUIRE(tuna_q8_act_quantize(&a, x, 1, 96, NULL) == TUNA_OK, "quantise");
    CHECK(isnan(a.d[0]) && isnan(a.d[2]) && !isnan(a.d[1]), "inf and NaN poison their blocks only");
    tuna_q8_act_free(&a);
}

TEST(refuses_bad_input) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = 1.0f;
    uint8_t buf[256];
    tuna_error err = {0};
    CHECK(tuna_quantize_row(TUNA_Q4_K, x, buf, 64, &err) == TUNA_ERR_INVALID, "64 is not whole Q4_K blocks");
    x[3] = NAN;
    CHECK(tuna_quantize_row(TUNA_Q8_0, x, buf, 32, &err) == TUNA_ERR_INVALID, "NaN refused");
    x[3] = INFINITY;
    CHECK(tuna_quantize_row(TUNA_Q4_0, x, buf, 32, &err) == TUNA_ERR_INVALID, "inf refused");
    CHECK(tuna_quantize_row(TUNA_I32, x, buf, 32, &err) == TUNA_ERR_UNSUPPORTED, "not a weight type");
    CHECK(tuna_dequantize_row(TUNA_I32, buf, x, 4) == -1, "dequantize refuses I32");
}

/* AVX2 kernel = scalar reference (same integer sums; float order differs),
 * and both = the f32 product of dequantised W with dequantised x. */
TEST(qgemv_avx2_matches_scalar) {
    const int64_t N = 37, K = 768;
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * 9 * K), *bias = malloc(sizeof(float) * N);
    for (int64_t i = 0; i < N * K; i++) w[i] = grand();
    for (int64_t i = 0; i < 9 * K; i++) x[i] = grand() * (i % 97 == 0 ? 8.0f : 1.0f);
    for (int64_t i = 0; i < N; i++) bias[i] = frand();
    float *y1 = malloc(sizeof(float) * 9 * N), *y2 = malloc(sizeof(float) * 9 * N), *ref = malloc(sizeof(float) * 9 * N);
    for (int t = 0; t < NQ; t++) {
        uint8_t *q = quantize_matrix(qtypes[t], w, N, K);
        float *wd = dequantize_matrix(qtypes[t], q, N, K);
        for (int64_t M = 1; M <= 9; M++) {
            tuna_q8_act a;
            REQUIRE(tuna_q8_act_quantize(&a, x, M, K, NULL) == TUNA_OK, "quantise x");
            const float *b = M % 2 ? bias : NULL;
            tuna_qgemv_scalar(y1, N, q, qtypes[t], &a, b, 0, N);
            tuna_qgemv_avx2(y2, N, q, qtypes[t], &a, b, 0, N);
            /* dequantised x, the values the integer sums stand for */
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    double s = b ? b[n] : 0;
                    for (int64_t k = 0; k < K; k++) s += (double)wd[n * K + k] * a.d[m * K / 32 + k / 32] * a.q[m * K + k];
                    ref[m * N + n] = (float)s;
                }
            double e_avx = test_max_relative_error(y2, y1, M * N), e_ref = test_max_relative_error(y1, ref, M * N);
            CHECK(e_avx < 2e-6, "%s M=%lld: AVX2 vs scalar %.3g", tuna_dtype_name(qtypes[t]), (long long)M, e_avx);
            CHECK(e_ref < 2e-6, "%s M=%lld: scalar vs dequantised %.3g", tuna_dtype_name(qtypes[t]), (long long)M, e_ref);
            tuna_q8_act_free(&a);
        }
        free(q);
        free(wd);
    }
    free(w), free(x), free(bias), free(y1), free(y2), free(ref);
}

static void naive(float *y, const float *x, const float *w, const float *b, int64_t M, int64_t N, int64_t K) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? b[n] : 0;
            for (int64_t k = 0; k < K; k++) s += (double)x[m * K + k] * w[n * K + k];
            y[m * N + n] = (float)s;
        }
}

/* tuna_matmul_forward picks the quantised kernels from the weight's dtype:
 * decode rows (integer dots, x quantised: ~0.5% error) and prefill rows
 * (dequantised W through OpenBLAS: f32 exact on the dequantised W). */
TEST(matmul_dispatch) {
    const int64_t N = 70, K = 512;
    int64_t Ms[] = {1, 2, 5, 8, 9, 64, 100};
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * 100 * K), *bias = malloc(sizeof(float) * N);
    float *y = malloc(sizeof(float) * 100 * N), *ref = malloc(sizeof(float) * 100 * N);
    for (int64_t i = 0; i < N * K; i++) w[i] = grand() * 0.05f;
    for (int64_t i = 0; i < 100 * K; i++) x[i] = grand();
    for (int64_t i = 0; i < N; i++) bias[i] = frand();
    for (int t = 0; t < NQ; t++) {
        tuna_tensor wt;
        int64_t shape[2] = {N, K};
        REQUIRE(tuna_tensor_alloc(&wt, qtypes[t], 2, shape, NULL) == TUNA_OK, "alloc");
        REQUIRE(tuna_quantize_rows(qtypes[t], w, wt.data, N, K, NULL, NULL) == TUNA_OK, "quantise");
        float *wd = dequantize_matrix(qtypes[t], wt.data, N, K);
        for (int threads = 1; threads <= 2; threads++) {
            tuna_threads pool = {threads};
            for (size_t i = 0; i < sizeof Ms / sizeof Ms[0]; i++) {
                int64_t M = Ms[i];
                const float *b = (M + threads) % 2 ? bias : NULL;
                tuna_error err = {0};
                REQUIRE(tuna_matmul_forward(y, x, &wt, b, M, K, &pool, &err) == TUNA_OK, "forward: %s", err.message);
                naive(ref, x, wd, b, M, N, K);
                double e = test_max_relative_error(y, ref, M * N);
                double tol = M <= TUNA_QMM_INT_MAX_M ? 2e-2 : 2e-6;
                CHECK(e < tol, "%s M=%lld threads=%d: %.3g", tuna_dtype_name(qtypes[t]), (long long)M, threads, e);
            }
        }
        /* grouped with a bf16 target: same results as one call each */
        tuna_tensor w16;
        REQUIRE(tuna_tensor_alloc(&w16, TUNA_BF16, 2, shape, NULL) == TUNA_OK, "alloc bf16");
        for (int64_t i = 0; i < N * K; i++) ((uint16_t *)w16.data)[i] = tuna_f32_to_bf16(w[i]);
        float *ya = malloc(sizeof(float) * 3 * N), *yb = malloc(sizeof(float) * 3 * N);
        float *sa = malloc(sizeof(float) * 3 * N), *sb = malloc(sizeof(float) * 3 * N);
        tuna_matmul_target targets[2] = {{ya, &wt, bias}, {yb, &w16, NULL}};
        tuna_threads pool = {2};
        REQUIRE(tuna_matmul_forward_group(targets, 2, x, 3, K, &pool, NULL) == TUNA_OK, "group");
        REQUIRE(tuna_matmul_forward(sa, x, &wt, bias, 3, K, &pool, NULL) == TUNA_OK, "single q");
        REQUIRE(tuna_matmul_forward(sb, x, &w16, NULL, 3, K, &pool, NULL) == TUNA_OK, "single bf16");
        CHECK(memcmp(ya, sa, sizeof(float) * 3 * N) == 0 && memcmp(yb, sb, sizeof(float) * 3 * N) == 0,
              "%s grouped = single", tuna_dtype_name(qtypes[t]));
        free(ya), free(yb), free(sa), free(sb);
        tuna_tensor_free(&w16);
        /* backward through the frozen quantised matrix: dx = dy W */
        float *dy = malloc(sizeof(float) * 7 * N), *dx = malloc(sizeof(float) * 7 * K), *dref = malloc(sizeof(float) * 7 * K);
        for (int64_t i = 0; i < 7 * N; i++) dy[i] = frand();
        for (int acc = 0; acc <= 1; acc++) {
            for (int64_t i = 0; i < 7 * K; i++) dx[i] = acc ? 1.0f : 99.0f;
            REQUIRE(tuna_matmul_backward_input(dx, dy, &wt, 7, acc, &pool, NULL) == TUNA_OK, "backward");
            for (int64_t m = 0; m < 7; m++)
                for (int64_t k = 0; k < K; k++) {
                    double s = acc ? 1.0 : 0.0;
                    for (int64_t n = 0; n < N; n++) s += (double)dy[m * N + n] * wd[n * K + k];
                    dref[m * K + k] = (float)s;
                }
            double e = test_max_relative_error(dx, dref, 7 * K);
            CHECK(e < 2e-6, "%s backward (accumulate %d): %.3g", tuna_dtype_name(qtypes[t]), acc, e);
        }
        /* embedding rows of a quantised table */
        int32_t ids[3] = {5, 0, 69};
        float *rows = malloc(sizeof(float) * 3 * K);
        REQUIRE(tuna_embedding_forward(rows, &wt, ids, 3, NULL) == TUNA_OK, "embedding");
        for (int r = 0; r < 3; r++) CHECK(memcmp(rows + r * K, wd + ids[r] * K, sizeof(float) * K) == 0, "row %d", ids[r]);
        int32_t bad = 70;
        CHECK(tuna_embedding_forward(rows, &wt, &bad, 1, NULL) == TUNA_ERR_INVALID, "id out of range");
        free(rows), free(dy), free(dx), free(dref), free(wd);
        tuna_tensor_free(&wt);
    }
    /* K not a multiple of the block: refused, never read out of bounds */
    tuna_tensor odd;
    int64_t s48[2] = {4, 64};
    REQUIRE(tuna_tensor_alloc(&odd, TUNA_Q8_0, 2, s48, NULL) == TUNA_OK, "alloc");
    odd.shape[1] = 48; /* as a hostile file could claim */
    tuna_error err = {0};
    CHECK(tuna_matmul_forward(y, x, &odd, NULL, 1, 48, NULL, &err) == TUNA_ERR_INVALID, "K=48 with Q8_0 refused");
    tuna_tensor_free(&odd);
    free(w), free(x), free(bias), free(y), free(ref);
}

/* The integer path is accurate to the 8-bit quantisation of x: compare decode
 * rows of a Q8_0 matmul with the exact f32 product of its dequantised W. */
TEST(integer_path_accuracy) {
    const int64_t N = 256, K = 1024;
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * K);
    float *y = malloc(sizeof(float) * N), *ref = malloc(sizeof(float) * N);
    for (int64_t i = 0; i < N * K; i++) w[i] = grand() * 0.03f;
    for (int64_t i = 0; i < K; i++) x[i] = grand();
    for (int t = 0; t < NQ; t++) {
        uint8_t *q = quantize_matrix(qtypes[t], w, N, K);
        float *wd = dequantize_matrix(qtypes[t], q, N, K);
        REQUIRE(tuna_qmm(y, x, q, qtypes[t], NULL, 1, N, K, TUNA_QMM_INT, NULL, NULL) == TUNA_OK, "int path");
        naive(ref, x, wd, NULL, 1, N, K);
        double e = rel_rmse(y, ref, N);
        CHECK(e < 0.01, "%s: the int path is within 1%% RMS of f32 (%.4f)", tuna_dtype_name(qtypes[t]), e);
        REQUIRE(tuna_qmm(y, x, q, qtypes[t], NULL, 1, N, K, TUNA_QMM_SGEMM, NULL, NULL) == TUNA_OK, "sgemm path");
        CHECK(rel_rmse(y, ref, N) < 1e-6, "%s: the sgemm path is f32-exact", tuna_dtype_name(qtypes[t]));
        free(q), free(wd);
    }
    free(w), free(x), free(y), free(ref);
}

int main(void) {
    RUN(block_sizes);
    RUN(q8_0_by_definition);
    RUN(q4_0_q5_0_by_definition);
    RUN(q4_k_layout);
    RUN(q6_k_layout);
    RUN(round_trip_error);
    RUN(dequantize_avx2_is_scalar);
    RUN(activation_quantisation);
    RUN(refuses_bad_input);
    RUN(qgemv_avx2_matches_scalar);
    RUN(matmul_dispatch);
    RUN(integer_path_accuracy);
    return test_summary();
}
