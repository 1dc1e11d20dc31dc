/* Matmul dispatcher: y = x @ W^T (+ bias) for a PyTorch-layout weight W [N,K].
 *
 * F32 weights go to OpenBLAS (cblas_sgemm, row-major, W transposed), single-threaded
 * and called by each of our threads on its slice (sgemm_split).
 * BF16/F16 weights go to our kernels (matmul_avx2.c / matmul_avx512.c): GEMV for
 * M <= TUNA_MATMUL_GEMV_MAX_M, tiled GEMM above, and from TUNA_MATMUL_SGEMM_MIN_M
 * rows blocks of W widened to f32 for OpenBLAS; the columns of y are split over
 * the thread pool. The ISA is chosen per call from tuna_cpu_detect() (cpuid is
 * cheap next to any matmul), which honours TUNA_ISA=avx2. */
#include "ops/ops.h"
#include "ops/cpu/matmul_kernels.h"
#include "ops/cpu/quant.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/tensor.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* both kernels: non-zero when their scratch allocation failed */
typedef int (*gemm_fn)(float *, const float *, const uint16_t *, int, const float *, int64_t,
                       int64_t, int64_t, int64_t, int64_t);

const char *tuna_matmul_isa(void) {
    tuna_cpu_features f = tuna_cpu_detect();
    return f.avx512f ? "avx512" : "avx2-fma";
}

/* A product for our kernels, by rows of x: the streaming GEMV (M <= 8; f32,
 * bf16, f16 weights), the tiled 16-bit GEMM (8 < M < 64), W widened for
 * OpenBLAS (M >= 64, bf16/f16). */
typedef struct {
    float *y;
    const float *x;
    const void *w; /* uint16_t for the 16-bit kinds, float for TUNA_W_F32 (GEMV only) */
    int kind;
    const float *bias;
    int64_t M, N, K;
    int64_t block; /* columns per unit of parallel work */
    int64_t sgemm_block_bytes; /* widened W per thread for the OpenBLAS path */
    gemm_fn gemm; /* the tiled GEMM of the CPU's ISA */
    int failed;
} kernel_job;

/* Many rows of x (prefill, the flow head over all patches): the product is
 * compute-bound and OpenBLAS's f32 kernels beat our 16-bit GEMM by 25-40% at
 * the LLM's shapes (bench/bench_kernels). So blocks of up to 16 MB of f32 W
 * (nb rows) are widened to f32 and multiplied by OpenBLAS:
 *     y[:, n0:n0+nb] = x @ f32(W[n0:n0+nb, :])^T (+ bias)
 * Widening costs one pass over the block per M rows of x: under 1% at M >= 64.
 * Blocks are large because OpenBLAS packs all of x again on every call (0.5B
 * prefill: 1 MB blocks 163, 4 MB 172, 16 MB 179 tokens/s); at least 128 rows,
 * at most 16 MB per thread and 64 MB for all the threads together. */
enum { W16_SGEMM_TOTAL_BYTES = 64 << 20 }; /* over max(threads, 4): 16 MB per thread at most */

static int w16_sgemm_columns(const kernel_job *j, int64_t n_begin, int64_t n_end) {
    int64_t K = j->K, nb = j->sgemm_block_bytes / (int64_t)(sizeof(float) * K) / 16 * 16;
    if (nb < 128) nb = 128;
    if (nb > n_end - n_begin) nb = n_end - n_begin;
    float *block = malloc(sizeof(float) * (size_t)(nb * K));
    if (!block) return 1;
    for (int64_t n0 = n_begin; n0 < n_end; n0 += nb) {
        int64_t count = n_end - n0 < nb ? n_end - n0 : nb;
        tuna_widen_w16_avx2(block, (const uint16_t *)j->w + n0 * K, count * K, j->kind);
        tuna_sgemm_widened_block(j->y, j->x, block, j->bias, j->M, j->N, n0, count, K);
    }
    free(block);
    return 0;
}

/* y[:, n0:n0+count] = x block^T (+ bias): block is `count` rows of W widened
 * to f32 [count, K]; y is [M, N]. The bias goes in first as sgemm's beta = 1
 * term. Shared by the 16-bit and the block-quantised products. */
void tuna_sgemm_widened_block(float *y, const float *x, const float *block, const float *bias, int64_t M, int64_t N,
                              int64_t n0, int64_t count, int64_t K) {
    if (bias)
        for (int64_t m = 0; m < M; m++) memcpy(y + m * N + n0, bias + n0, sizeof(float) * (size_t)count);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)count, (int)K, 1.0f, x, (int)K, block, (int)K,
                bias ? 1.0f : 0.0f, y + n0, (int)N);
}

static void kernel_range(void *ctx, long begin, long end) {
    kernel_job *j = ctx;
    int64_t n_begin = begin * j->block;
    int64_t n_end = end * j->block;
    if (n_end > j->N) n_end = j->N;
    if (n_begin >= n_end) return;
    if (j->kind == TUNA_W_F32) {
        tuna_gemv_f32_avx2(j->y, j->x, j->w, j->bias, j->M, j->N, j->K, n_begin, n_end);
        return;
    }
    if (j->M >= TUNA_MATMUL_SGEMM_MIN_M) {
        if (w16_sgemm_columns(j, n_begin, n_end)) __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    /* the GEMV is the AVX2 one on every CPU: memory-bound, no gain from wider vectors */
    gemm_fn kernel = j->M <= TUNA_MATMUL_GEMV_MAX_M ? tuna_gemv_w16_avx2 : j->gemm;
    if (kernel(j->y, j->x, j->w, j->kind, j->bias, j->M, j->N, j->K, n_begin, n_end))
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
}

static void add_bias_rows_range(float *y, const float *bias, int64_t M, int64_t N) {
    for (int64_t m = 0; m < M; m++) memcpy(y + m * N, bias, (size_t)N * sizeof(float));
}

/* ---- f32 GEMMs through OpenBLAS, split over our pool --------------------
 * OpenBLAS is asked to run single-threaded and each of our threads calls it on
 * its own slice of the output: one set of threads instead of OpenBLAS's
 * pthreads spinning beside our OpenMP team (which halved throughput under load).
 *
 * The three products, row-major:
 *   FORWARD:  C[M,N]  = A[M,K] B[N,K]^T      sliced over the N columns of C
 *   INPUT:    C[M,K] (+)= A[M,N] B[N,K]      sliced over the K columns of C
 *   WEIGHT:   C[N,K] += A[M,N]^T B[M,K]      sliced over the N rows of C      */
typedef enum { SGEMM_FORWARD, SGEMM_INPUT, SGEMM_WEIGHT } sgemm_kind;

typedef struct {
    sgemm_kind kind;
    float *c;
    const float *a, *b;
    int64_t M, N, K;
    float beta;
    int64_t lda;   /* row stride of A */
    int64_t chunk; /* output columns (rows for WEIGHT) per unit of work */
    int64_t extent;
} sgemm_job;

static void sgemm_range(void *ctx, long begin, long end) {
    sgemm_job *j = ctx;
    int64_t lo = begin * j->chunk, hi = end * j->chunk;
    if (hi > j->extent) hi = j->extent;
    if (lo >= hi) return;
    int n = (int)(hi - lo);
    switch (j->kind) {
    case SGEMM_FORWARD:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->M, n, (int)j->K, 1.0f, j->a, (int)j->lda,
                    j->b + lo * j->K, (int)j->K, j->beta, j->c + lo, (int)j->N);
        break;
    case SGEMM_INPUT:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->M, n, (int)j->N, 1.0f, j->a, (int)j->lda,
                    j->b + lo, (int)j->K, j->beta, j->c + lo, (int)j->K);
        break;
    case SGEMM_WEIGHT:
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, (int)j->K, (int)j->M, 1.0f, j->a + lo, (int)j->lda,
                    j->b, (int)j->K, 1.0f, j->c + lo * j->K, (int)j->K);
        break;
    }
}

/* A job whose units are slices of at least 64 columns, multiples of 16, one
 * per thread; *units gets their count. */
static sgemm_job sgemm_job_make(const tuna_threads *pool, sgemm_kind kind, float *c, const float *a, int64_t lda,
                                const float *b, int64_t M, int64_t N, int64_t K, float beta, long *units) {
    sgemm_job job = {kind, c, a, b, M, N, K, beta, lda, 0, kind == SGEMM_INPUT ? K : N};
    int threads = pool ? pool->count : 1;
    int64_t chunk = (job.extent + threads - 1) / threads;
    chunk = (chunk + 15) / 16 * 16;
    job.chunk = chunk < 64 ? 64 : chunk;
    *units = (long)((job.extent + job.chunk - 1) / job.chunk);
    return job;
}

static void sgemm_split(const tuna_threads *pool, sgemm_kind kind, float *c, const float *a, int64_t lda,
                        const float *b, int64_t M, int64_t N, int64_t K, float beta) {
    long units;
    sgemm_job job = sgemm_job_make(pool, kind, c, a, lda, b, M, N, K, beta, &units);
    tuna_parallel_for(pool, units, sgemm_range, &job);
}

/* The forward product y = x w^T + bias cut into units of parallel work:
 * F32 weights as OpenBLAS column slices (the bias written into y first, then
 * beta = 1) except for the few rows of a decode step (our streaming GEMV),
 * BF16/F16 weights as our kernels' column blocks. The caller has checked the
 * dtype. */
typedef struct {
    tuna_range_fn fn;
    long units;
    union {
        sgemm_job sgemm;
        kernel_job kernel;
        tuna_qmm_job quant; /* block-quantised W (matmul_quant.c) */
    } job;
} forward_part;

/* Quantised weights (Q8_0, Q4_K, ...) have their own kernels (quant.h); the
 * integer path quantises x here, so this can fail. */
static tuna_status forward_part_init(forward_part *part, float *y, const float *x, const void *w, tuna_dtype w_dtype,
                                     const float *bias, int64_t M, int64_t N, int64_t K, const tuna_threads *pool,
                                     tuna_error *err) {
    if (tuna_dtype_is_quantized(w_dtype)) {
        part->fn = tuna_qmm_range;
        return tuna_qmm_prepare(&part->job.quant, y, x, w, w_dtype, bias, M, N, K, TUNA_QMM_AUTO, pool, &part->units,
                                err);
    }
    if (w_dtype == TUNA_F32 && M > TUNA_MATMUL_GEMV_MAX_M) {
        if (bias) add_bias_rows_range(y, bias, M, N);
        part->fn = sgemm_range;
        part->job.sgemm = sgemm_job_make(pool, SGEMM_FORWARD, y, x, K, (const float *)w, M, N, K, bias ? 1.0f : 0.0f,
                                         &part->units);
        return TUNA_OK;
    }
    tuna_cpu_features f = tuna_cpu_detect();
    part->fn = kernel_range;
    part->job.kernel = (kernel_job){
        .y = y, .x = x, .w = w, .kind = w_dtype == TUNA_F32 ? TUNA_W_F32 : w_dtype == TUNA_BF16 ? TUNA_W16_BF16 : TUNA_W16_F16,
        .bias = bias, .M = M, .N = N, .K = K,
        .block = M <= TUNA_MATMUL_GEMV_MAX_M ? 4 : TUNA_GEMM_N_ALIGN,
        .sgemm_block_bytes = W16_SGEMM_TOTAL_BYTES / (pool && pool->count > 4 ? pool->count : 4),
        .gemm = f.avx512f ? tuna_gemm_w16_avx512 : tuna_gemm_w16_avx2,
        .failed = 0,
    };
    part->units = (long)((N + part->job.kernel.block - 1) / part->job.kernel.block);
    return TUNA_OK;
}

static int forward_part_failed(const forward_part *part) {
    return (part->fn == kernel_range && part->job.kernel.failed) || (part->fn == tuna_qmm_range && part->job.quant.failed);
}

static void forward_part_release(forward_part *part) {
    if (part->fn == tuna_qmm_range) tuna_qmm_release(&part->job.quant);
}

static int weight_dtype_supported(tuna_dtype d) {
    return d == TUNA_F32 || d == TUNA_BF16 || d == TUNA_F16 || tuna_dtype_is_quantized(d);
}

tuna_status tuna_matmul_forward_raw(float *y, const float *x, const void *w, tuna_dtype w_dtype,
                                    const float *bias, int64_t M, int64_t N, int64_t K,
                                    const tuna_threads *pool, tuna_error *err) {
    if (M < 0 || N <= 0 || K <= 0 || !y || !x || !w)
        return tuna_fail(err, TUNA_ERR_INVALID, "matmul: bad sizes M=%lld N=%lld K=%lld",
                         (long long)M, (long long)N, (long long)K);
    if (M == 0) return TUNA_OK;
    if (!weight_dtype_supported(w_dtype))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "matmul: weight dtype %s not supported",
                         tuna_dtype_name(w_dtype));
    forward_part part;
    TUNA_TRY(forward_part_init(&part, y, x, w, w_dtype, bias, M, N, K, pool, err));
    tuna_parallel_for(pool, part.units, part.fn, &part.job);
    int failed = forward_part_failed(&part);
    forward_part_release(&part);
    if (failed) return tuna_fail(err, TUNA_ERR_NOMEM, "matmul: out of memory for kernel scratch");
    return TUNA_OK;
}

static tuna_status check_weight(const tuna_tensor *weight, const char *what, tuna_error *err) {
    if (!weight || weight->ndim != 2 || !weight->data)
        return tuna_fail(err, TUNA_ERR_INVALID, "%s: weight must be a 2-D tensor [N,K]", what);
    if (!tuna_tensor_is_contiguous(weight))
        return tuna_fail(err, TUNA_ERR_INVALID, "%s: weight must be contiguous", what);
    return TUNA_OK;
}

/* A 2-D contiguous weight [N, K] for an input with K columns. */
static tuna_status check_forward_weight(const tuna_tensor *weight, int64_t K, tuna_error *err) {
    TUNA_TRY(check_weight(weight, "matmul", err));
    if (weight->shape[1] != K)
        return tuna_fail(err, TUNA_ERR_INVALID, "matmul: x has K=%lld but weight is [%lld, %lld]",
                         (long long)K, (long long)weight->shape[0], (long long)weight->shape[1]);
    return TUNA_OK;
}

tuna_status tuna_matmul_forward(float *y, const float *x, const tuna_tensor *weight,
                                const float *bias, int64_t M, int64_t K,
                                const tuna_threads *pool, tuna_error *err) {
    TUNA_TRY(check_forward_weight(weight, K, err));
    return tuna_matmul_forward_raw(y, x, weight->data, weight->dtype, bias, M, weight->shape[0], K,
                                   pool, err);
}

/* ---- grouped products ----------------------------------------------------
 * Each target is cut into units exactly as tuna_matmul_forward cuts it (w16
 * column blocks, or sgemm column slices); the units of all targets are
 * numbered one after another and split over the pool in one region. */
typedef struct {
    forward_part parts[TUNA_MATMUL_GROUP_MAX];
    int count;
} group_job;

static void group_range(void *ctx, long begin, long end) {
    group_job *g = ctx;
    long first = 0;
    for (int i = 0; i < g->count && first < end; i++) {
        forward_part *p = &g->parts[i];
        long lo = begin > first ? begin - first : 0, hi = end - first < p->units ? end - first : p->units;
        if (lo < hi) p->fn(&p->job, lo, hi);
        first += p->units;
    }
}

static tuna_status group_check(const tuna_matmul_target *t, int64_t K, tuna_error *err) {
    TUNA_TRY(check_forward_weight(t->weight, K, err));
    tuna_dtype d = t->weight->dtype;
    if (!weight_dtype_supported(d))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "matmul: weight dtype %s not supported", tuna_dtype_name(d));
    return TUNA_OK;
}

tuna_status tuna_matmul_forward_group(const tuna_matmul_target *targets, int count, const float *x, int64_t M,
                                      int64_t K, const tuna_threads *pool, tuna_error *err) {
    if (count < 0 || count > TUNA_MATMUL_GROUP_MAX || M < 0 || K <= 0 || !x)
        return tuna_fail(err, TUNA_ERR_INVALID, "grouped matmul: bad arguments");
    for (int i = 0; i < count; i++) TUNA_TRY(group_check(&targets[i], K, err));
    if (M == 0 || count == 0) return TUNA_OK;
    group_job g = {.count = 0};
    long total = 0;
    tuna_status st = TUNA_OK;
    for (int i = 0; i < count && st == TUNA_OK; i++) {
        const tuna_matmul_target *t = &targets[i];
        st = forward_part_init(&g.parts[i], t->y, x, t->weight->data, t->weight->dtype, t->bias, M, t->weight->shape[0],
                               K, pool, err);
        if (st == TUNA_OK) {
            g.count++;
            total += g.parts[i].units;
        }
    }
    if (st == TUNA_OK) tuna_parallel_for(pool, total, group_range, &g);
    int failed = 0;
    for (int i = 0; i < g.count; i++) {
        failed |= forward_part_failed(&g.parts[i]);
        forward_part_release(&g.parts[i]);
    }
    if (st == TUNA_OK && failed) st = tuna_fail(err, TUNA_ERR_NOMEM, "matmul: out of memory for kernel scratch");
    return st;
}

/* ---- backward ------------------------------------------------------------ */

typedef struct {
    float *dst;
    const uint16_t *src;
    int bf16;
} widen_job;

static void widen_range(void *ctx, long begin, long end) {
    widen_job *j = ctx;
    tuna_widen_w16_avx2(j->dst + begin, j->src + begin, end - begin, j->bf16 ? TUNA_W16_BF16 : TUNA_W16_F16);
}

tuna_status tuna_matmul_backward_input(float *dx, const float *dy, const tuna_tensor *weight,
                                       int64_t M, int accumulate,
                                       const tuna_threads *pool, tuna_error *err) {
    TUNA_TRY(check_weight(weight, "matmul backward", err));
    int64_t N = weight->shape[0], K = weight->shape[1];
    if (M <= 0) return TUNA_OK;
    if (weight->dtype == TUNA_F32) {
        sgemm_split(pool, SGEMM_INPUT, dx, dy, N, (const float *)weight->data, M, N, K, accumulate ? 1.0f : 0.0f);
        return TUNA_OK;
    }
    int quantized = tuna_dtype_is_quantized(weight->dtype);
    if (weight->dtype != TUNA_BF16 && weight->dtype != TUNA_F16 && !quantized)
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "matmul backward: weight dtype %s not supported",
                         tuna_dtype_name(weight->dtype));
    if (quantized && K % tuna_dtype_block_size(weight->dtype))
        return tuna_fail(err, TUNA_ERR_INVALID, "matmul backward: K = %lld is not a multiple of the %s block",
                         (long long)K, tuna_dtype_name(weight->dtype));
    /* Widen (or dequantise: a frozen quantised matrix stays quantised in
     * training) blocks of rows of W (about 4 MB each) and accumulate
     * dx += dy[:, n0:n1] @ W[n0:n1, :] block by block. */
    int64_t rows = (int64_t)(1 << 20) / K;
    if (rows < 16) rows = 16;
    if (rows > N) rows = N;
    float *buf = malloc((size_t)rows * (size_t)K * sizeof(float));
    if (!buf) return tuna_fail(err, TUNA_ERR_NOMEM, "matmul backward: out of memory");
    if (!accumulate) memset(dx, 0, (size_t)M * (size_t)K * sizeof(float));
    const uint16_t *w = weight->data;
    for (int64_t n0 = 0; n0 < N; n0 += rows) {
        int64_t nb = N - n0 < rows ? N - n0 : rows;
        if (quantized) {
            tuna_dequantize_rows(weight->dtype, weight->data, buf, n0, n0 + nb, K, pool);
        } else {
            widen_job job = {buf, w + n0 * K, weight->dtype == TUNA_BF16};
            tuna_parallel_for(pool, (long)(nb * K), widen_range, &job);
        }
        /* dx += dy[:, n0:n0+nb] @ buf (dy's rows are N apart) */
        sgemm_split(pool, SGEMM_INPUT, dx, dy + n0, N, buf, M, nb, K, 1.0f);
    }
    free(buf);
    return TUNA_OK;
}

void tuna_matmul_backward_weight(float *dW, float *dbias, const float *dy, const float *x,
                                 int64_t M, int64_t N, int64_t K, const tuna_threads *pool) {
    if (M <= 0) return;
    sgemm_split(pool, SGEMM_WEIGHT, dW, dy, N, x, M, N, K, 1.0f);
    if (dbias)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) dbias[n] += dy[m * N + n];
}
