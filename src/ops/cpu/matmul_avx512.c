/* bf16 / f16 weight matmul kernels, AVX-512F (built with AVX-512 flags, chosen
 * at run time by matmul.c only when tuna_cpu_detect() reports AVX-512).
 * The tiled GEMM of matmul_avx2.c with 16-lane vectors (the rows of x between
 * the GEMV and the OpenBLAS path). The GEMV is matmul_avx2.c's on every CPU:
 * it is bound by memory, not by the vector width.
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
