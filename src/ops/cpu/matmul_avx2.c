/* bf16 / f16 weight matmul kernels, AVX2 + FMA + F16C (x86-64-v3 baseline).
 *
 *     y[M,N] = x[M,K] @ W^T (+ bias),  W [N,K] 16-bit, columns [n_begin, n_end)
 *
 * GEMV (M <= 8, decode): memory-bound. Streams each weight row once, widening
 * 8 weights at a time to f32 in registers, and FMAs them against up to 3 rows of
 * x per pass (x rows stay in L1). 4 weight rows per step give 4 independent
 * streams for the prefetcher.
 *
 * GEMM (M > 8): compute-bound. The output is produced transposed in registers:
 * the micro-kernel holds a tile of 16 rows of y (2 vectors along M) by 6
 * columns, and per k broadcasts 6 f32 weights and loads 16 x values:
 *     acc[r][m0..m0+16) += W[n0+r][k] * xT[k][m0..m0+16)
 * so the weights need only a cheap, contiguous widening (a KC x NC block of W
 * into a per-thread f32 buffer that stays in L2, never the whole matrix),
 * and x is transposed once per K block into panels xT[k][16] (zero padded).
 */
#include "ops/cpu/matmul_kernels.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* ---- widening loads ------------------------------------------------------ */

static inline __attribute__((always_inline)) __m256 load8_w16(const uint16_t *p, int kind) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (kind == TUNA_W16_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

static inline float w16_to_f32(uint16_t h, int kind) {
    if (kind == TUNA_W16_BF16) {
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    return _cvtsh_ss(h);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- GEMV ---------------------------------------------------------------- */

/* 4 weight rows (n..n+4) against MB (1..3, a compile-time constant after
 * inlining) rows of x. Accumulators are named scalars, not arrays, so they
 * live in registers: 12 of them at MB=3. */
static inline __attribute__((always_inline)) void gemv_block4(float *y, const float *x,
                                                              const uint16_t *w, int kind,
                                                              const float *bias, int64_t N,
                                                              int64_t K, int64_t n, int64_t m,
                                                              int mb) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    const uint16_t *w0 = w + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    const float *x0 = x + m * K, *x1 = x0 + (mb > 1 ? K : 0), *x2 = x0 + (mb > 2 ? 2 * K : 0);
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 v0 = load8_w16(w0 + k, kind), v1 = load8_w16(w1 + k, kind);
        __m256 v2 = load8_w16(w2 + k, kind), v3 = load8_w16(w3 + k, kind);
        __m256 xv = _mm256_loadu_ps(x0 + k);
        a00 = _mm256_fmadd_ps(v0, xv, a00); a10 = _mm256_fmadd_ps(v1, xv, a10);
        a20 = _mm256_fmadd_ps(v2, xv, a20); a30 = _mm256_fmadd_ps(v3, xv, a30);
        if (mb > 1) {
            xv = _mm256_loadu_ps(x1 + k);
            a01 = _mm256_fmadd_ps(v0, xv, a01); a11 = _mm256_fmadd_ps(v1, xv, a11);
            a21 = _mm256_fmadd_ps(v2, xv, a21); a31 = _mm256_fmadd_ps(v3, xv, a31);
        }
        if (mb > 2) {
            xv = _mm256_loadu_ps(x2 + k);
            a02 = _mm256_fmadd_ps(v0, xv, a02); a12 = _mm256_fmadd_ps(v1, xv, a12);
            a22 = _mm256_fmadd_ps(v2, xv, a22); a32 = _mm256_fmadd_ps(v3, xv, a32);
        }
    }
    __m256 acc[3][4] = {{a00, a10, a20, a30}, {a01, a11, a21, a31}, {a02, a12, a22, a32}};
    const uint16_t *wr[4] = {w0, w1, w2, w3};
    const float *xr[3] = {x0, x1, x2};
    for (int j = 0; j < mb; j++)
        for (int r = 0; r < 4; r++) {
            float s = hsum8(acc[j][r]);
            for (int64_t kk = k; kk < K; kk++) s += w16_to_f32(wr[r][kk], kind) * xr[j][kk];
            if (bias) s += bias[n + r];
            y[(m + j) * N + n + r] = s;
        }
}

/* One weight row against every row of x (tail rows of the N range). */
static void gemv_row1(float *y, const float *x, const uint16_t *w, int kind, const float *bias,
                      int64_t M, int64_t N, int64_t K, int64_t n) {
    const uint16_t *wr = w + n * K;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * K;
        __m256 a = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) a = _mm256_fmadd_ps(load8_w16(wr + k, kind), _mm256_loadu_ps(xr + k), a);
        float s = hsum8(a);
        for (; k < K; k++) s += w16_to_f32(wr[k], kind) * xr[k];
        y[m * N + n] = s + (bias ? bias[n] : 0.0f);
    }
}

static inline __attribute__((always_inline)) void gemv_kind(float *y, const float *x,
                                                            const uint16_t *w, int kind,
                                                            const float *bias, int64_t M,
                                                            int64_t N, int64_t K, int64_t n_begin,
                                                            int64_t n_end) {
    int64_t n = n_begin;
    for (; n + 4 <= n_end; n += 4) {
        for (int64_t m = 0; m < M; m += 3) {
            int64_t mb = M - m;
            if (mb >= 3) gemv_block4(y, x, w, kind, bias, N, K, n, m, 3);
            else if (mb == 2) gemv_block4(y, x, w, kind, bias, N, K, n, m, 2);
            else gemv_block4(y, x, w, kind, bias, N, K, n, m, 1);
        }
    }
    for (; n < n_end; n++) gemv_row1(y, x, w, kind, bias, M, N, K, n);
}

void tuna_gemv_w16_avx2(float *y, const float *x, const uint16_t *w, int kind, const float *bias,
                        int64_t M, int64_t N, int64_t K, int64_t n_begin, int64_t n_end) {
    if (kind == TUNA_W16_BF16)
        gemv_kind(y, x, w, TUNA_W16_BF16, bias, M, N, K, n_begin, n_end);
    else
        gemv_kind(y, x, w, TUNA_W16_F16, bias, M, N, K, n_begin, n_end);
}

/* ---- GEMM ---------------------------------------------------------------- */

enum {
    GEMM_MR = 16,  /* rows of y per micro-tile (2 x 8 lanes) */
    GEMM_NR = 6,   /* columns of y per micro-tile */
    GEMM_KC = 128, /* K block */
    GEMM_NC = 96,  /* columns whose widened weights share the L2 buffer */
    GEMM_NO = 512, /* columns whose y^T accumulator ct is kept across the K loop */
};

/* Widen W[n0..n0+nc)[k0..k0+kc) into wf[nc][kc] (row stride kc). */
static void widen_block(float *wf, const uint16_t *w, int kind, int64_t K, int64_t n0, int nc,
                        int64_t k0, int kc) {
    for (int r = 0; r < nc; r++) {
        const uint16_t *src = w + (n0 + r) * K + k0;
        float *dst = wf + (int64_t)r * kc;
        int k = 0;
        if (kind == TUNA_W16_BF16) {
            for (; k + 8 <= kc; k += 8) _mm256_storeu_ps(dst + k, load8_w16(src + k, TUNA_W16_BF16));
        } else {
            for (; k + 8 <= kc; k += 8) _mm256_storeu_ps(dst + k, load8_w16(src + k, TUNA_W16_F16));
        }
        for (; k < kc; k++) dst[k] = w16_to_f32(src[k], kind);
    }
}

/* xT panels: for each group of 16 rows of x, [kc][16] floats, zero padded past M. */
static void pack_x(float *xt, const float *x, int64_t M, int64_t K, int64_t k0, int kc) {
    int64_t panels = (M + GEMM_MR - 1) / GEMM_MR;
    for (int64_t p = 0; p < panels; p++) {
        float *dst = xt + p * (int64_t)kc * GEMM_MR;
        for (int i = 0; i < GEMM_MR; i++) {
            int64_t m = p * GEMM_MR + i;
            if (m < M) {
                const float *src = x + m * K + k0;
                for (int k = 0; k < kc; k++) dst[k * GEMM_MR + i] = src[k];
            } else {
                for (int k = 0; k < kc; k++) dst[k * GEMM_MR + i] = 0.0f;
            }
        }
    }
}

/* acc (16 x 6) = sum_k xT[k][0..16) * wf[r][k];  then ct[r][0..16) += acc_r for r < nr. */
static void micro_kernel(float *ct, int64_t ctstride, const float *xt, const float *wf,
                         int64_t wstride, int kc, int nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    const float *w0 = wf;
    const float *w1 = wf + (nr > 1 ? 1 : 0) * wstride;
    const float *w2 = wf + (nr > 2 ? 2 : 0) * wstride;
    const float *w3 = wf + (nr > 3 ? 3 : 0) * wstride;
    const float *w4 = wf + (nr > 4 ? 4 : 0) * wstride;
    const float *w5 = wf + (nr > 5 ? 5 : 0) * wstride;
    for (int k = 0; k < kc; k++) {
        __m256 a0 = _mm256_load_ps(xt + k * GEMM_MR);
        __m256 a1 = _mm256_load_ps(xt + k * GEMM_MR + 8);
        __m256 b;
        b = _mm256_broadcast_ss(w0 + k); c00 = _mm256_fmadd_ps(a0, b, c00); c01 = _mm256_fmadd_ps(a1, b, c01);
        b = _mm256_broadcast_ss(w1 + k); c10 = _mm256_fmadd_ps(a0, b, c10); c11 = _mm256_fmadd_ps(a1, b, c11);
        b = _mm256_broadcast_ss(w2 + k); c20 = _mm256_fmadd_ps(a0, b, c20); c21 = _mm256_fmadd_ps(a1, b, c21);
        b = _mm256_broadcast_ss(w3 + k); c30 = _mm256_fmadd_ps(a0, b, c30); c31 = _mm256_fmadd_ps(a1, b, c31);
        b = _mm256_broadcast_ss(w4 + k); c40 = _mm256_fmadd_ps(a0, b, c40); c41 = _mm256_fmadd_ps(a1, b, c41);
        b = _mm256_broadcast_ss(w5 + k); c50 = _mm256_fmadd_ps(a0, b, c50); c51 = _mm256_fmadd_ps(a1, b, c51);
    }
    /* ct is y transposed, [n][mpad]: whole vectors, no scatter */
    float *t0 = ct, *t1 = ct + (nr > 1 ? 1 : 0) * ctstride, *t2 = ct + (nr > 2 ? 2 : 0) * ctstride;
    float *t3 = ct + (nr > 3 ? 3 : 0) * ctstride, *t4 = ct + (nr > 4 ? 4 : 0) * ctstride;
    float *t5 = ct + (nr > 5 ? 5 : 0) * ctstride;
    _mm256_store_ps(t0, _mm256_add_ps(_mm256_load_ps(t0), c00)); _mm256_store_ps(t0 + 8, _mm256_add_ps(_mm256_load_ps(t0 + 8), c01));
    if (nr > 5) { _mm256_store_ps(t5, _mm256_add_ps(_mm256_load_ps(t5), c50)); _mm256_store_ps(t5 + 8, _mm256_add_ps(_mm256_load_ps(t5 + 8), c51)); }
    if (nr > 4) { _mm256_store_ps(t4, _mm256_add_ps(_mm256_load_ps(t4), c40)); _mm256_store_ps(t4 + 8, _mm256_add_ps(_mm256_load_ps(t4 + 8), c41)); }
    if (nr > 3) { _mm256_store_ps(t3, _mm256_add_ps(_mm256_load_ps(t3), c30)); _mm256_store_ps(t3 + 8, _mm256_add_ps(_mm256_load_ps(t3 + 8), c31)); }
    if (nr > 2) { _mm256_store_ps(t2, _mm256_add_ps(_mm256_load_ps(t2), c20)); _mm256_store_ps(t2 + 8, _mm256_add_ps(_mm256_load_ps(t2 + 8), c21)); }
    if (nr > 1) { _mm256_store_ps(t1, _mm256_add_ps(_mm256_load_ps(t1), c10)); _mm256_store_ps(t1 + 8, _mm256_add_ps(_mm256_load_ps(t1 + 8), c11)); }
}

int tuna_gemm_w16_avx2(float *y, const float *x, const uint16_t *w, int kind, const float *bias,
                       int64_t M, int64_t N, int64_t K, int64_t n_begin, int64_t n_end) {
    int64_t panels = (M + GEMM_MR - 1) / GEMM_MR, mpad = panels * GEMM_MR;
    float *xt = aligned_alloc(64, (size_t)panels * GEMM_KC * GEMM_MR * sizeof(float));
    float *wf = aligned_alloc(64, (size_t)GEMM_NC * GEMM_KC * sizeof(float));
    float *ct = aligned_alloc(64, (size_t)GEMM_NO * (size_t)mpad * sizeof(float));
    if (!xt || !wf || !ct) {
        free(xt);
        free(wf);
        free(ct);
        return -1;
    }
    /* outer blocks of GEMM_NO columns: ct (y^T for them) stays in L2/L3 */
    for (int64_t no = n_begin; no < n_end; no += GEMM_NO) {
        int64_t ncols = n_end - no < GEMM_NO ? n_end - no : GEMM_NO;
        for (int64_t c = 0; c < ncols; c++) {
            float b = bias ? bias[no + c] : 0.0f;
            for (int64_t m = 0; m < mpad; m++) ct[c * mpad + m] = b;
        }
        for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
            int kc = K - k0 >= GEMM_KC ? GEMM_KC : (int)(K - k0);
            pack_x(xt, x, M, K, k0, kc);
            for (int64_t nb = 0; nb < ncols; nb += GEMM_NC) {
                int nc = ncols - nb >= GEMM_NC ? GEMM_NC : (int)(ncols - nb);
                widen_block(wf, w, kind, K, no + nb, nc, k0, kc);
                /* a strip of 6 widened weight rows stays in L1 while the xT
                 * panels stream past it as one long sequential read */
                for (int s = 0; s < nc; s += GEMM_NR) {
                    int nr = nc - s >= GEMM_NR ? GEMM_NR : nc - s;
                    for (int64_t p = 0; p < panels; p++)
                        micro_kernel(ct + (nb + s) * mpad + p * GEMM_MR, mpad,
                                     xt + p * (int64_t)kc * GEMM_MR, wf + (int64_t)s * kc, kc, kc, nr);
                }
            }
        }
        for (int64_t m = 0; m < M; m++) {
            float *yr = y + m * N + no;
            for (int64_t c = 0; c < ncols; c++) yr[c] = ct[c * mpad + m];
        }
    }
    free(xt);
    free(wf);
    free(ct);
    return 0;
}
