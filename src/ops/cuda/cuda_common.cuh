/* Shared between the CUDA translation units: the context and error helpers. */
#ifndef TUNA_OPS_CUDA_COMMON_CUH
#define TUNA_OPS_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdio.h>

#include "ops/cuda/cuda_ops.h"

struct tuna_cuda_ctx {
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_size;
    char message[256];
};

/* Record a failure in ctx and return 1. */
static inline int tuna_cuda_fail(tuna_cuda_ctx *ctx, const char *what, const char *detail) {
    if (ctx) snprintf(ctx->message, sizeof ctx->message, "%s: %s", what, detail);
    return 1;
}

static inline int tuna_cuda_check_launch(tuna_cuda_ctx *ctx, const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : tuna_cuda_fail(ctx, what, cudaGetErrorString(e));
}

#endif
