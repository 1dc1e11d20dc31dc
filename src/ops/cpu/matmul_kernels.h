/* Internal interface between the matmul dispatcher (matmul.c) and the
 * ISA-specific kernels for 16-bit weights (matmul_avx2.c, matmul_avx512.c).
 *
 * Each kernel computes the output columns [n_begin, n_end) of
 *     y[M,N] = x[M,K] @ W^T (+ bias)
 * with W [N,K] stored as bf16 (kind 0) or f16 (kind 1), reading W in place.
 * The dispatcher splits N over threads and calls the kernel once per thread.
 * GEMM kernels allocate their own (small, cache-sized) f32 panel, the AVX2
 * GEMV a copy of x in the order its bf16 widening needs (M*K floats); both
 * return non-zero only when that allocation fails. */
#ifndef TUNA_OPS_CPU_MATMUL_KERNELS_H
#define TUNA_OPS_CPU_MATMUL_KERNELS_H

#include <stdint.h>

enum { TUNA_W16_BF16 = 0, TUNA_W16_F16 = 1, TUNA_W_F32 = 2 /* the GEMV only */ };

/* Rows of x at or below this use the streaming GEMV kernel. */
#define TUNA_MATMUL_GEMV_MAX_M 8
/* Rows of x from which blocks of W are widened to f32 for OpenBLAS sgemm
 * (matmul.c); the tiled 16-bit GEMM covers the rows between. */
#define TUNA_MATMUL_SGEMM_MIN_M 64

int tuna_gemv_w16_avx2(float *y, const float *x, const uint16_t *w, int kind, const float *bias,
                       int64_t M, int64_t N, int64_t K, int64_t n_begin, int64_t n_end);
int tuna_gemm_w16_avx2(float *y, const float *x, const uint16_t *w, int kind, const float *bias,
                       int64_t M, int64_t N, int64_t K, int64_t n_begin, int64_t n_end);

int tuna_gemm_w16_avx512(float *y, const float *x, const uint16_t *w, int kind,
                         const float *bias, int64_t M, int64_t N, int64_t K, int64_t n_begin,
                         int64_t n_end);

/* The same streaming GEMV for f32 weights (y columns [n_begin, n_end)). */
void tuna_gemv_f32_avx2(float *y, const float *x, const float *w, const float *bias, int64_t M, int64_t N,
                        int64_t K, int64_t n_begin, int64_t n_end);

/* dst[i] = src[i] widened to f32, i < n (AVX2 + F16C). */
void tuna_widen_w16_avx2(float *dst, const uint16_t *src, int64_t n, int kind);
/* y[:, n0:n0+count] = x block^T (+ bias[n0:]) by OpenBLAS, block = rows of W widened to f32 [count, K]. */
void tuna_sgemm_widened_block(float *y, const float *x, const float *block, const float *bias, int64_t M, int64_t N,
                              int64_t n0, int64_t count, int64_t K);

/* Granularity of the N split for GEMM (the micro-kernel's width, both ISAs). */
#define TUNA_GEMM_N_ALIGN 32

#endif
