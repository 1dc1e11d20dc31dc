/* ggml's block-quantised weights (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K): row
 * quantisers and dequantisers, the 8-bit quantisation of activations, and the
 * integer dot products the quantised matmuls are built from.
 *
 * Layouts are exactly ggml's (ggml-common.h), so GGUF files written by either
 * side hold the same bytes; the quantisers follow ggml's reference ones
 * (quantize_row_*_ref, no importance matrix), so Q8_0 / Q4_0 / Q5_0 bytes are
 * identical and Q4_K / Q6_K use the same weighted least-squares searches
 * (make_qkx2 for Q4_K's scale and min per 32, make_qx with x^2 weights for
 * Q6_K's scale per 16). Per block of 32 (Q8_0, Q4_0, Q5_0):
 *     Q8_0  w = d q,         q int8            (d = amax / 127)
 *     Q4_0  w = d (q - 8),   q in [0, 15]      (d = max / -8, max the signed extreme)
 *     Q5_0  w = d (q - 16),  q in [0, 31]      (d = max / -16)
 * per super-block of 256:
 *     Q4_K  w = d sc_j q - dmin m_j, q in [0, 15], sub-block j of 32, sc_j, m_j 6-bit
 *     Q6_K  w = d sc_j (q - 32),     q in [0, 63], sub-block j of 16, sc_j int8
 * with d, dmin f16.
 *
 * Activations for the integer products: a row of x is cut in blocks of 32,
 * each quantised symmetrically, dx = amax/127, qx = round(x/dx) (nearest even),
 * with the sums of qx per 16 kept for the weights' offsets and minima. A dot
 * product of a weight row with such an x row is then, per block b,
 *     sum_i w_i x_i  ~=  d_w dx_b sum_i q_i qx_i  (+ offset terms),
 * integer multiply-adds inside the block, one float multiply-add per block. */
#ifndef TUNA_OPS_CPU_QUANT_H
#define TUNA_OPS_CPU_QUANT_H

#include <stdint.h>

#include "tuna.h"
#include "core/status.h"
#include "core/threads.h"

/* Elements per x-quantisation block. */
#define TUNA_Q8_BLOCK 32

/* dst = n floats (n a multiple of the type's block) in type: a block type, or
 * F32 / F16 / BF16 (rounded to nearest even). dst holds
 * tuna_dtype_bytes_for(type, n) bytes. Fails on a non-finite input value, a
 * length that is not a multiple of the block, or a type it cannot write. */
tuna_status tuna_quantize_row(tuna_dtype type, const float *x, void *dst, int64_t n, tuna_error *err);

/* rows x K floats into rows of type, split over the pool. */
tuna_status tuna_quantize_rows(tuna_dtype type, const float *x, void *dst, int64_t rows, int64_t K,
                               const tuna_threads *pool, tuna_error *err);

/* y = n elements of src (type a block type or F32 / F16 / BF16) as f32.
 * Returns 0, or -1 for a type it cannot read (y untouched). The AVX2 version
 * (block types only) gives the same values as the scalar one. */
int tuna_dequantize_row(tuna_dtype type, const void *src, float *y, int64_t n);
int tuna_dequantize_row_scalar(tuna_dtype type, const void *src, float *y, int64_t n);
int tuna_dequantize_row_avx2(tuna_dtype type, const void *src, float *y, int64_t n);

/* Rows [r0, r1) of a [rows, K] matrix of type into y[(r1-r0), K], over the pool. */
void tuna_dequantize_rows(tuna_dtype type, const void *src, float *y, int64_t r0, int64_t r1, int64_t K,
                          const tuna_threads *pool);

/* ---- quantised activations -------------------------------------------------- */

typedef struct {
    int8_t *q;    /* [rows, K] */
    float *d;     /* [rows, K/32]: the scale of each block of 32 */
    float *s;     /* [rows, K/32]: d * (sum of q over the block) */
    int16_t *s16; /* [rows, K/16]: sum of q over each 16 */
    int64_t rows, K;
} tuna_q8_act;

/* Quantise x[rows, K] (K a multiple of 32). Allocates; free with tuna_q8_act_free. */
tuna_status tuna_q8_act_quantize(tuna_q8_act *a, const float *x, int64_t rows, int64_t K, tuna_error *err);
void tuna_q8_act_free(tuna_q8_act *a);

/* ---- dot products of quantised weight rows with quantised x rows ---------------
 * y[m * y_stride + n] = dot(W row n, x row m) (+ bias[n]) for m < a->rows and
 * n in [n_begin, n_end), W [N, K] of a block type. The scalar kernel is the
 * reference; the AVX2 one handles up to 4 x rows per pass over a weight row
 * (the row stays in L1). */
void tuna_qgemv_scalar(float *y, int64_t y_stride, const void *w, tuna_dtype type, const tuna_q8_act *a,
                       const float *bias, int64_t n_begin, int64_t n_end);
void tuna_qgemv_avx2(float *y, int64_t y_stride, const void *w, tuna_dtype type, const tuna_q8_act *a,
                     const float *bias, int64_t n_begin, int64_t n_end);

/* The matmul's kernel for this build/CPU: AVX2 where compiled in, else scalar.
 * TUNA_ISA=scalar selects the scalar kernel (tests, comparisons). */
typedef void (*tuna_qgemv_fn)(float *, int64_t, const void *, tuna_dtype, const tuna_q8_act *, const float *,
                              int64_t, int64_t);
tuna_qgemv_fn tuna_qgemv_kernel(void);

/* ---- the quantised matmul (called by the dispatcher in matmul.c) ---------------
 *     y[M,N] = x[M,K] W^T (+ bias), W [N,K] of a block type, K a multiple of its block.
 * Two ways, chosen by rows of x (docs/kernels.md has the measurements):
 *   TUNA_QMM_INT:   x quantised to 8 bits per block of 32, integer dot products
 *                   (tuna_qgemv_*), weight rows streamed once (decode);
 *   TUNA_QMM_SGEMM: blocks of W rows dequantised to f32 for OpenBLAS sgemm
 *                   (exact products of the dequantised weights; prefill). */
typedef enum { TUNA_QMM_AUTO = 0, TUNA_QMM_INT, TUNA_QMM_SGEMM } tuna_qmm_path;

/* Rows of x up to which AUTO takes the integer path (bench_quant, 2 threads,
 * 4096x4096: the integer dots win at M = 16 (Q8_0 44 vs 22 GFLOP/s, Q4_K 69 vs
 * 29), tie at M = 64, lose at M = 512 (43 vs 88, 61 vs 90)). */
#define TUNA_QMM_INT_MAX_M 32

typedef struct {
    float *y;
    const float *x;
    const void *w;
    tuna_dtype type;
    const float *bias;
    int64_t M, N, K;
    tuna_qmm_path path;
    int64_t block;             /* output columns per unit of parallel work */
    int64_t sgemm_block_bytes; /* dequantised W per thread for the sgemm path */
    tuna_q8_act act;           /* the quantised x of the integer path */
    tuna_qgemv_fn gemv;
    int failed;
} tuna_qmm_job;

/* Fills job (quantising x for the integer path); *units gets the count of
 * units for tuna_qmm_range. Fails on K not a multiple of the block or out of
 * memory. Release with tuna_qmm_release. */
tuna_status tuna_qmm_prepare(tuna_qmm_job *job, float *y, const float *x, const void *w, tuna_dtype type,
                             const float *bias, int64_t M, int64_t N, int64_t K, tuna_qmm_path path,
                             const tuna_threads *pool, long *units, tuna_error *err);
void tuna_qmm_range(void *ctx, long begin, long end);
void tuna_qmm_release(tuna_qmm_job *job);

/* The whole product with an explicit path (benchmarks, tests). */
tuna_status tuna_qmm(float *y, const float *x, const void *w, tuna_dtype type, const float *bias, int64_t M,
                     int64_t N, int64_t K, tuna_qmm_path path, const tuna_threads *pool, tuna_error *err);

#endif
