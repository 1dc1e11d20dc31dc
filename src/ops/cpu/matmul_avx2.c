/* bf16 / f16 weight matmul kernels, AVX2 + FMA + F16C (x86-64-v3 baseline).
 *
 *     y[M,N] = x[M,K] @ W^T (+ bias),  W [N,K] 16-bit, columns [n_begin, n_end)
 *
 * GEMV (M <= 8, decode): memory-bound. Streams the weight rows once, in
 * memory order with a software prefetch, widening bf16 to f32 in registers
 * (see the GEMV section), against up to 4 rows of x per pass (x stays in L1).
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
#include "ops/cpu/vec_math.h"

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

/* ---- GEMV ----------------------------------------------------------------
 * Memory-bound (decode): every weight byte comes from DRAM once, so the
 * kernel is shaped for the memory system, not the FMA units:
 *  - weight rows are read one after another, so a thread's range of rows is
 *    one linear stream (reading 4 short rows side by side, as before, made 4
 *    streams restarting every few KB and reached ~65% of the bandwidth);
 *  - a software prefetch GEMV_PREFETCH bytes ahead on that stream keeps
 *    enough misses in flight for the two cores;
 *  - bf16 widening costs two instructions per 16 weights: loaded as 8 u32
 *    lanes, lane i holds w[2i] in its low half and w[2i+1] in its high half,
 *        f32(w[2i])   = lane << 16,     f32(w[2i+1]) = lane & 0xffff0000,
 *    so x is split once per call into even and odd halves of each block of 16
 *    (xs[16b + i] = x[16b + 2i], xs[16b + 8 + i] = x[16b + 2i + 1]) and
 *        y[n] = sum_b  even(W[n], b) . xs[16b..16b+8) + odd(W[n], b) . xs[16b+8..16b+16).
 *  - f16 weights widen in order (vcvtph2ps) against x as it is; f32 weights
 *    (what `tuna train` writes, `--dtype f32`) take the same path without
 *    widening, instead of OpenBLAS's M=1 sgemm (about a third of the bandwidth).
 * Up to 4 rows of x are handled per pass over a weight row; more rows reread
 * the row from L1. */
enum { GEMV_PREFETCH = 1024, GEMV_XROWS = 4 };

/* The 16 weights row[k..k+16) as f32, paired with the x layout of the kind:
 * bf16 even / odd elements (split x), f16 and f32 in order. */
static inline __attribute__((always_inline)) void gemv_widen16(const void *row, int64_t k, int kind, __m256 *we,
                                                               __m256 *wo) {
    if (kind == TUNA_W_F32) {
        *we = _mm256_loadu_ps((const float *)row + k);
        *wo = _mm256_loadu_ps((const float *)row + k + 8);
    } else if (kind == TUNA_W16_BF16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
        *we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        *wo = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
    } else {
        *we = load8_w16((const uint16_t *)row + k, kind);
        *wo = load8_w16((const uint16_t *)row + k + 8, kind);
    }
}

static inline __attribute__((always_inline)) void gemv_prefetch(const void *row, int64_t k, int kind) {
    size_t element = kind == TUNA_W_F32 ? sizeof(float) : sizeof(uint16_t);
    _mm_prefetch((const char *)row + (size_t)k * element + GEMV_PREFETCH, _MM_HINT_T0);
}

/* One weight row against rows m0..m0+mb of x (mb 1..4, constant after
 * inlining). xs: the x rows as the kernel reads them (split layout for bf16,
 * row stride xs_stride); x: the rows as given, for the k >= K16 tail.
 * Each x row has two accumulator chains (even, odd); one x row alone gets
 * four (32 weights per step), or the FMA latency, not memory, would bound a
 * bf16 row: 32 bytes per 2 dependent FMAs of ~4 cycles is under 20 GB/s. */
static inline __attribute__((always_inline)) void gemv_row(float *y, const float *xs, int64_t xs_stride,
                                                           const float *x, const void *row, int kind,
                                                           const float *bias, int64_t N, int64_t K,
                                                           int64_t K16, int64_t n, int64_t m0, int mb) {
    __m256 e0 = _mm256_setzero_ps(), o0 = e0, e1 = e0, o1 = e0, e2 = e0, o2 = e0, e3 = e0, o3 = e0;
    const float *x0 = xs + m0 * xs_stride, *x1 = x0 + xs_stride, *x2 = x1 + xs_stride, *x3 = x2 + xs_stride;
    __m256 we, wo;
    int64_t k = 0;
    if (mb == 1)
        for (; k + 32 <= K16; k += 32) {
            gemv_prefetch(row, k, kind);
            if (kind == TUNA_W_F32) gemv_prefetch(row, k + 16, kind);
            gemv_widen16(row, k, kind, &we, &wo);
            e0 = _mm256_fmadd_ps(we, _mm256_loadu_ps(x0 + k), e0);
            o0 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(x0 + k + 8), o0);
            gemv_widen16(row, k + 16, kind, &we, &wo);
            e1 = _mm256_fmadd_ps(we, _mm256_loadu_ps(x0 + k + 16), e1);
            o1 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(x0 + k + 24), o1);
        }
    for (; k < K16; k += 16) {
        if (kind == TUNA_W_F32 || (k & 31) == 0) gemv_prefetch(row, k, kind);
        gemv_widen16(row, k, kind, &we, &wo);
        e0 = _mm256_fmadd_ps(we, _mm256_loadu_ps(x0 + k), e0);
        o0 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(x0 + k + 8), o0);
        if (mb > 1) {
            e1 = _mm256_fmadd_ps(we, _mm256_loadu_ps(x1 + k), e1);
            o1 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(x1 + k + 8), o1);
        }
        if (mb > 2) {
            e2 = _mm256_fmadd_ps(we, _mm256_loadu_ps(x2 + k), e2);
            o2 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(x2 + k + 8), o2);
        }
        if (mb > 3) {
            e3 = _mm256_fmadd_ps(we, _mm256_loadu_ps(x3 + k), e3);
            o3 = _mm256_fmadd_ps(wo, _mm256_loadu_ps(x3 + k + 8), o3);
        }
    }
    __m256 acc[GEMV_XROWS] = {_mm256_add_ps(e0, o0), _mm256_add_ps(e1, o1), _mm256_add_ps(e2, o2),
                              _mm256_add_ps(e3, o3)};
    if (mb == 1) acc[0] = _mm256_add_ps(acc[0], acc[1]);
    const uint16_t *wr = row;
    const float *wf = row;
    for (int j = 0; j < mb; j++) {
        const float *xr = x + (m0 + j) * K;
        float s = hsum8(acc[j]);
        for (int64_t kk = K16; kk < K; kk++) s += (kind == TUNA_W_F32 ? wf[kk] : w16_to_f32(wr[kk], kind)) * xr[kk];
        y[(m0 + j) * N + n] = s + (bias ? bias[n] : 0.0f);
    }
}

static inline __attribute__((always_inline)) void gemv_rows(float *y, const float *xs, int64_t xs_stride,
                                                            const float *x, const void *w, int kind,
                                                            const float *bias, int64_t M, int64_t N,
                                                            int64_t K, int64_t n_begin, int64_t n_end) {
    int64_t K16 = K & ~(int64_t)15;
    size_t element = kind == TUNA_W_F32 ? sizeof(float) : sizeof(uint16_t);
    for (int64_t n = n_begin; n < n_end; n++) {
        const void *wr = (const char *)w + (size_t)(n * K) * element;
        for (int64_t m = 0; m < M; m += GEMV_XROWS) {
            switch (M - m >= GEMV_XROWS ? GEMV_XROWS : M - m) {
            case 4: gemv_row(y, xs, xs_stride, x, wr, kind, bias, N, K, K16, n, m, 4); break;
            case 3: gemv_row(y, xs, xs_stride, x, wr, kind, bias, N, K, K16, n, m, 3); break;
            case 2: gemv_row(y, xs, xs_stride, x, wr, kind, bias, N, K, K16, n, m, 2); break;
            default: gemv_row(y, xs, xs_stride, x, wr, kind, bias, N, K, K16, n, m, 1); break;
            }
        }
    }
}

void tuna_gemv_f32_avx2(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t N,
                        int64_t K, int64_t n_begin, int64_t n_end) {
    gemv_rows(y, x, K, x, w, TUNA_W_F32, bias, M, N, K, n_begin, n_end);
}

/* xs[m][16b + i] = x[m][16b + 2i], xs[m][16b + 8 + i] = x[m][16b + 2i + 1] for the K16 columns. */
static void split_even_odd(float *xs, const float *x, int64_t M, int64_t K, int64_t K16) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t b = 0; b < K16; b += 16)
            for (int i = 0; i < 8; i++) {
                xs[m * K16 + b + i] = x[m * K + b + 2 * i];
                xs[m * K16 + b + 8 + i] = x[m * K + b + 2 * i + 1];
            }
}

int tuna_gemv_w16_avx2(float *y, const float *x, const uint16_t *w, int kind, const float *bias,
                       int64_t M, int64_t N, int64_t K, int64_t n_begin, int64_t n_end) {
    if (kind != TUNA_W16_BF16) {
        gemv_rows(y, x, K, x, w, TUNA_W16_F16, bias, M, N, K, n_begin, n_end);
        return 0;
    }
    int64_t K16 = K & ~(int64_t)15;
    float *xs = malloc(sizeof(float) * (size_t)(M * K16 + 1));
    if (!xs) return 1;
    split_even_odd(xs, x, M, K, K16);
    gemv_rows(y, xs, K16, x, w, TUNA_W16_BF16, bias, M, N, K, n_begin, n_end);
    free(xs);
    return 0;
}

/* ---- widening ------------------------------------------------------------ */

void tuna_widen_w16_avx2(float *dst, const uint16_t *src, int64_t n, int kind) {
    int64_t i = 0;
    if (kind == TUNA_W16_BF16)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_w16(src + i, TUNA_W16_BF16));
    else
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_w16(src + i, TUNA_W16_F16));
    for (; i < n; i++) dst[i] = w16_to_f32(src[i], kind);
}

/* ---- GEMM ---------------------------------------------------------------- */

enum {
    GEMM_MR = 16,  /* rows of y per micro-tile (2 x 8 lanes) */
    GEMM_NR = 6,   /* columns of y per micro-tile */
    GEMM_KC = 256, /* K block */
    GEMM_NC = 96,  /* columns whose widened weights share the L2 buffer */
    GEMM_NO = 512, /* columns whose y^T accumulator ct is kept across the K loop */
    GEMM_SG = 3,   /* strips sharing one xT panel while both sit in L1 */
};

/* Widen W[n0..n0+nc)[k0..k0+kc) into wf[nc][kc] (row stride kc). */
static void widen_block(float *wf, const uint16_t *w, int kind, int64_t K, int64_t n0, int nc,
                        int64_t k0, int kc) {
    for (int r = 0; r < nc; r++) tuna_widen_w16_avx2(wf + (int64_t)r * kc, w + (n0 + r) * K + k0, kc, kind);
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
#pragma GCC unroll 4
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
                for (int sg = 0; sg < nc; sg += GEMM_NR * GEMM_SG) {
                    int sg_end = nc - sg >= GEMM_NR * GEMM_SG ? sg + GEMM_NR * GEMM_SG : nc;
                    for (int64_t p = 0; p < panels; p++)
                        for (int s = sg; s < sg_end; s += GEMM_NR) {
                            int nr = nc - s >= GEMM_NR ? GEMM_NR : nc - s;
                            micro_kernel(ct + (nb + s) * mpad + p * GEMM_MR, mpad,
                                         xt + p * (int64_t)kc * GEMM_MR, wf + (int64_t)s * kc, kc, kc, nr);
                        }
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
