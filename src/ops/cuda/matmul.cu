/* bf16 matmul through cuBLASLt: y[M,N] f32 = x[M,K] bf16 @ W[N,K]^T bf16.
 *
 * cuBLASLt is column-major. A row-major [R,C] matrix is a column-major [C,R]
 * one, so the row-major product y = x W^T is, column-major,
 *     y^T [N,M] = op_T(W as [K,N]) * (x as [K,M])
 * i.e. A = W with transa = T (ld K), B = x with transb = N (ld K), C = D = y (ld N). */
#include "ops/cuda/cuda_common.cuh"

#include <cuda_bf16.h>

static __global__ void add_bias_kernel(float *y, const float *bias, int M, int N) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (int64_t)M * N) y[i] += bias[i % N];
}

static __global__ void f32_to_bf16_kernel(__nv_bfloat16 *out, const float *in, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

extern "C" int tuna_cuda_f32_to_bf16(tuna_cuda_ctx *ctx, uint16_t *out, const float *in, int64_t n) {
    if (n <= 0) return 0;
    f32_to_bf16_kernel<<<(unsigned)((n + 255) / 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)out, in, n);
    return tuna_cuda_check_launch(ctx, "f32_to_bf16");
}

extern "C" int tuna_cuda_matmul_bf16(tuna_cuda_ctx *ctx, float *y, const uint16_t *x,
                                     const uint16_t *w, const float *bias, int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0) return tuna_cuda_fail(ctx, "matmul", "bad sizes");
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t a = NULL, b = NULL, c = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    int rc = 1;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    const float alpha = 1.0f, beta = 0.0f;
    if (cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) goto done;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, K, N, K) != CUBLAS_STATUS_SUCCESS) goto done;
    if (cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, K, M, K) != CUBLAS_STATUS_SUCCESS) goto done;
    if (cublasLtMatrixLayoutCreate(&c, CUDA_R_32F, N, M, N) != CUBLAS_STATUS_SUCCESS) goto done;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) goto done;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                         &ctx->workspace_size, sizeof ctx->workspace_size);
    if (cublasLtMatmulAlgoGetHeuristic(ctx->lt, op, a, b, c, c, pref, 1, &heur, &found) !=
            CUBLAS_STATUS_SUCCESS || found == 0) {
        tuna_cuda_fail(ctx, "matmul", "no cuBLASLt algorithm for this shape");
        goto done;
    }
    if (cublasLtMatmul(ctx->lt, op, &alpha, w, a, x, b, &beta, y, c, y, c, &heur.algo,
                       ctx->workspace, ctx->workspace_size, ctx->stream) != CUBLAS_STATUS_SUCCESS) {
        tuna_cuda_fail(ctx, "matmul", "cublasLtMatmul failed");
        goto done;
    }
    if (bias) {
        int64_t n = (int64_t)M * N;
        add_bias_kernel<<<(unsigned)((n + 255) / 256), 256, 0, ctx->stream>>>(y, bias, M, N);
        if (tuna_cuda_check_launch(ctx, "matmul bias")) goto done;
    }
    rc = 0;
done:
    if (rc && ctx->message[0] == 0) tuna_cuda_fail(ctx, "matmul", "cuBLASLt setup failed");
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}
