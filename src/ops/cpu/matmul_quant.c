/* The quantised matmul y = x W^T (+ bias) for W of a block type (quant.h):
 * the integer GEMV path and the dequantise-for-OpenBLAS path, both cut into
 * column blocks that the dispatcher (matmul.c) splits over the pool. */
#include "ops/cpu/quant.h"
#include "ops/cpu/matmul_kernels.h"
#include "core/tensor.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Dequantised W handed to one sgemm call: at most this many bytes per thread
 * (the widened-bf16 path measured larger blocks to help: OpenBLAS repacks x
 * on every call), and at least 128 rows. */
enum { QMM_SGEMM_TOTAL_BYTES = 64 << 20, QMM_GEMV_BLOCK = 4, QMM_SGEMM_ALIGN = 32 };

static int sgemm_columns(const tuna_qmm_job *j, int64_t n_begin, int64_t n_end) {
    int64_t K = j->K, nb = j->sgemm_block_bytes / (int64_t)(sizeof(float) * K) / 16 * 16;
    if (nb < 128) nb = 128;
    if (nb > n_end - n_begin) nb = n_end - n_begin;
    float *block = malloc(sizeof(float) * (size_t)(nb * K));
    if (!block) return 1;
    size_t row_bytes = tuna_dtype_bytes_for(j->type, K);
    for (int64_t n0 = n_begin; n0 < n_end; n0 += nb) {
        int64_t count = n_end - n0 < nb ? n_end - n0 : nb;
        for (int64_t r = 0; r < count; r++)
            tuna_dequantize_row(j->type, (const uint8_t *)j->w + (size_t)(n0 + r) * row_bytes, block + r * K, K);
        tuna_sgemm_widened_block(j->y, j->x, block, j->bias, j->M, j->N, n0, count, K);
    }
    free(block);
    return 0;
}

void tuna_qmm_range(void *ctx, long begin, long end) {
    tuna_qmm_job *j = ctx;
    int64_t n_begin = begin * j->block, n_end = end * j->block;
    if (n_end > j->N) n_end = j->N;
    if (n_begin >= n_end) return;
    if (j->path == TUNA_QMM_SGEMM) {
        if (sgemm_columns(j, n_begin, n_end)) __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    j->gemv(j->y, j->N, j->w, j->type, &j->act, j->bias, n_begin, n_end);
}

tuna_status tuna_qmm_prepare(tuna_qmm_job *job, float *y, const float *x, const void *w, tuna_dtype type,
                             const float *bias, int64_t M, int64_t N, int64_t K, tuna_qmm_path path,
                             const tuna_threads *pool, long *units, tuna_error *err) {
    memset(job, 0, sizeof *job);
    int64_t block = tuna_dtype_block_size(type);
    if (!tuna_dtype_is_quantized(type))
        return tuna_fail(err, TUNA_ERR_INVALID, "quantised matmul: %s is not a block type", tuna_dtype_name(type));
    if (K % block)
        return tuna_fail(err, TUNA_ERR_INVALID, "quantised matmul: K = %lld is not a multiple of the %s block %lld",
                         (long long)K, tuna_dtype_name(type), (long long)block);
    if (path == TUNA_QMM_AUTO) {
        /* TUNA_QMM=int|sgemm forces one path for every product (measurements) */
        const char *force = getenv("TUNA_QMM");
        if (force && strcmp(force, "int") == 0) path = TUNA_QMM_INT;
        else if (force && strcmp(force, "sgemm") == 0) path = TUNA_QMM_SGEMM;
        else path = M <= TUNA_QMM_INT_MAX_M ? TUNA_QMM_INT : TUNA_QMM_SGEMM;
    }
    *job = (tuna_qmm_job){.y = y, .x = x, .w = w, .type = type, .bias = bias, .M = M, .N = N, .K = K, .path = path};
    int threads = pool && pool->count > 0 ? pool->count : 1;
    if (path == TUNA_QMM_INT) {
        TUNA_TRY(tuna_q8_act_quantize(&job->act, x, M, K, err));
        job->gemv = tuna_qgemv_kernel();
        job->block = QMM_GEMV_BLOCK;
    } else {
        job->block = QMM_SGEMM_ALIGN;
        job->sgemm_block_bytes = QMM_SGEMM_TOTAL_BYTES / (threads > 4 ? threads : 4);
    }
    *units = (long)((N + job->block - 1) / job->block);
    return TUNA_OK;
}

void tuna_qmm_release(tuna_qmm_job *job) { tuna_q8_act_free(&job->act); }

tuna_status tuna_qmm(float *y, const float *x, const void *w, tuna_dtype type, const float *bias, int64_t M,
                     int64_t N, int64_t K, tuna_qmm_path path, const tuna_threads *pool, tuna_error *err) {
    if (M <= 0) return TUNA_OK;
    tuna_qmm_job job;
    long units;
    TUNA_TRY(tuna_qmm_prepare(&job, y, x, w, type, bias, M, N, K, path, pool, &units, err));
    tuna_parallel_for(pool, units, tuna_qmm_range, &job);
    int failed = job.failed;
    tuna_qmm_release(&job);
    if (failed) return tuna_fail(err, TUNA_ERR_NOMEM, "quantised matmul: out of memory for a dequantised block");
    return TUNA_OK;
}
