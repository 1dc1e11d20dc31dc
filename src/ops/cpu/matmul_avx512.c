/* bf16 / f16 weight matmul kernels, AVX-512F (built with AVX-512 flags, chosen
 * at run time by matmul.c only when tuna_cpu_detect() reports AVX-512).
 * Same algorithms as matmul_avx2.c with 16-lane vectors:
 *   GEMV: 4 weight rows x up to 3 x rows per pass, 16 weights widened per load.
 *   GEMM: micro-tile of 32 rows of y (2 zmm along M) x 12 columns: 24
 *         accumulators; per k, 2 loads of xT and 12 weight broadcasts.
 *
 * Not used: vdpbf16ps (AVX-512-BF16). It multiplies bf16 x bf16, so the
 * activations would have to be rounded to bf16, breaking the engine's f32
 * compute contract (SPEC section 9); splitting x into hi+lo bf16 halves restores
 * ~16 bits but costs two dot instructions, which is no faster than widening W
 * and one f32 FMA. */
#include "ops/cpu/matmul_kernels.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

static inline __attribute__((always_inline)) __m512 load16_w16(const uint16_t *p, int kind) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (kind == TUNA_W16_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
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

/* ---- GEMV ---------------------------------------------------------------- */

/* 4 weight rows (n..n+4) against MB (1..3, a compile-time constant after
 * inlining) rows of x. Accumulators are named scalars, not arrays, so they
 * live in registers: 12 of them at MB=3. */
static inline __attribute__((always_inline)) void gemv_block4(float *y, const float *x,
                                                              const uint16_t *w, int kind,
                                                              const float *bias, int64_t N,
                                                              int64_t K, int64_t n, int64_t m,
                                                              int mb) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    const uint16_t *w0 = w + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
    const float *x0 = x + m * K, *x1 = x0 + (mb > 1 ? K : 0), *x2 = x0 + (mb > 2 ? 2 * K : 0);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 v0 = load16_w16(w0 + k, kind), v1 = load16_w16(w1 + k, kind);
        __m512 v2 = load16_w16(w2 + k, kind), v3 = load16_w16(w3 + k, kind);
        __m512 xv = _mm512_loadu_ps(x0 + k);
        a00 = _mm512_fmadd_ps(v0, xv, a00); a10 = _mm512_fmadd_ps(v1, xv, a10);
        a20 = _mm512_fmadd_ps(v2, xv, a20); a30 = _mm512_fmadd_ps(v3, xv, a30);
        if (mb > 1) {
            xv = _mm512_loadu_ps(x1 + k);
            a01 = _mm512_fmadd_ps(v0, xv, a01); a11 = _mm512_fmadd_ps(v1, xv, a11);
            a21 = _mm512_fmadd_ps(v2, xv, a21); a31 = _mm512_fmadd_ps(v3, xv, a31);
        }
        if (mb > 2) {
            xv = _mm512_loadu_ps(x2 + k);
            a02 = _mm512_fmadd_ps(v0, xv, a02); a12 = _mm512_fmadd_ps(v1, xv, a12);
            a22 = _mm512_fmadd_ps(v2, xv, a22); a32 = _mm512_fmadd_ps(v3, xv, a32);
        }
    }
    __m512 acc[3][4] = {{a00, a10, a20, a30}, {a01, a11, a21, a31}, {a02, a12, a22, a32}};
    const uint16_t *wr[4] = {w0, w1, w2, w3};
    const float *xr[3] = {x0, x1, x2};
    for (int j = 0; j < mb; j++)
        for (int r = 0; r < 4; r++) {
            float s = _mm512_reduce_add_ps(acc[j][r]);
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
        __m512 a = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) a = _mm512_fmadd_ps(load16_w16(wr + k, kind), _mm512_loadu_ps(xr + k), a);
        float s = _mm512_reduce_add_ps(a);
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

int tuna_gemv_w16_avx512(float *y, const float *x, const uint16_t *w, int kind,
                         const float *bias, int64_t M, int64_t N, int64_t K, int64_t n_begin,
                         int64_t n_end) {
    if (kind == TUNA_W16_BF16)
        gemv_kind(y, x, w, TUNA_W16_BF16, bias, M, N, K, n_begin, n_end);
    else
        gemv_kind(y, x, w, TUNA_W16_F16, bias, M, N, K, n_begin, n_end);
    return 0;
}

/* ---- GEMM ---------------------------------------------------------------- */

enum { GEMM_MR = 32, GEMM_NR = 12, GEMM_KC = 256, GEMM_NC = 96 };

static void widen_block(float *wf, const uint16_t *w, int kind, int64_t K, int64_t n0, int nc,
                        int64_t k0, int kc) {
    for (int r = 0; r < nc; r++) {
        const uint16_t *src = w + (n0 + r) * K + k0;
        float *dst = wf + (int64_t)r * kc;
        int k = 0;
        if (kind == TUNA_W16_BF16) {
            for (; k + 16 <= kc; k += 16) _mm512_storeu_ps(dst + k, load16_w16(src + k, TUNA_W16_BF16));
        } else {
            for (; k + 16 <= kc; k += 16) _mm512_storeu_ps(dst + k, load16_w16(src + k, TUNA_W16_F16));
        }
        for (; k < kc; k++) dst[k] = w16_to_f32(src[k], kind);
    }
}

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

static void micro_kernel(float *y, int64_t N, const float *xt, const float *wf, int64_t wstride,
                         int kc, int64_t m0, int mvalid, int64_t n0, int nr) {
    __m512 c[GEMM_NR][2];
    const float *wr[GEMM_NR];
#pragma GCC unroll 12
    for (int r = 0; r < GEMM_NR; r++) {
        c[r][0] = _mm512_setzero_ps();
        c[r][1] = _mm512_setzero_ps();
        wr[r] = wf + (r < nr ? r : 0) * wstride;
    }
    for (int k = 0; k < kc; k++) {
        __m512 a0 = _mm512_load_ps(xt + k * GEMM_MR);
        __m512 a1 = _mm512_load_ps(xt + k * GEMM_MR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < GEMM_NR; r++) {
            __m512 b = _mm512_set1_ps(wr[r][k]);
            c[r][0] = _mm512_fmadd_ps(a0, b, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(a1, b, c[r][1]);
        }
    }
    float tile[GEMM_NR][GEMM_MR] __attribute__((aligned(64)));
#pragma GCC unroll 12
    for (int r = 0; r < GEMM_NR; r++) {
        _mm512_store_ps(tile[r], c[r][0]);
        _mm512_store_ps(tile[r] + 16, c[r][1]);
    }
    for (int i = 0; i < mvalid; i++) {
        float *yr = y + (m0 + i) * N + n0;
        for (int r = 0; r < nr; r++) yr[r] += tile[r][i];
    }
}

int tuna_gemm_w16_avx512(float *y, const float *x, const uint16_t *w, int kind,
                         const float *bias, int64_t M, int64_t N, int64_t K, int64_t n_begin,
                         int64_t n_end) {
    int64_t panels = (M + GEMM_MR - 1) / GEMM_MR;
    float *xt = aligned_alloc(64, (size_t)panels * GEMM_KC * GEMM_MR * sizeof(float));
    float *wf = aligned_alloc(64, (size_t)GEMM_NC * GEMM_KC * sizeof(float));
    if (!xt || !wf) {
        free(xt);
        free(wf);
        return -1;
    }
    for (int64_t m = 0; m < M; m++) {
        float *yr = y + m * N;
        for (int64_t n = n_begin; n < n_end; n++) yr[n] = bias ? bias[n] : 0.0f;
    }
    for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {
        int kc = K - k0 >= GEMM_KC ? GEMM_KC : (int)(K - k0);
        pack_x(xt, x, M, K, k0, kc);
        for (int64_t nb = n_begin; nb < n_end; nb += GEMM_NC) {
            int nc = n_end - nb >= GEMM_NC ? GEMM_NC : (int)(n_end - nb);
            widen_block(wf, w, kind, K, nb, nc, k0, kc);
            for (int64_t p = 0; p < panels; p++) {
                int64_t m0 = p * GEMM_MR;
                int mvalid = M - m0 >= GEMM_MR ? GEMM_MR : (int)(M - m0);
                const float *xp = xt + p * (int64_t)kc * GEMM_MR;
                for (int s = 0; s < nc; s += GEMM_NR) {
                    int nr = nc - s >= GEMM_NR ? GEMM_NR : nc - s;
                    micro_kernel(y, N, xp, wf + (int64_t)s * kc, kc, kc, m0, mvalid, nb + s, nr);
                }
            }
        }
    }
    free(xt);
    free(wf);
    return 0;
}
