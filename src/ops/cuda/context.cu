/* CUDA context: stream, cuBLASLt handle, workspace. */
#include "ops/cuda/cuda_common.cuh"

#include <stdlib.h>

extern "C" tuna_cuda_ctx *tuna_cuda_create(char *msg, size_t msg_size) {
    tuna_cuda_ctx *ctx = (tuna_cuda_ctx *)calloc(1, sizeof *ctx);
    if (!ctx) {
        if (msg) snprintf(msg, msg_size, "out of host memory");
        return NULL;
    }
    ctx->workspace_size = (size_t)32 << 20;
    cudaError_t e = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc(&ctx->workspace, ctx->workspace_size);
    if (e != cudaSuccess) {
        if (msg) snprintf(msg, msg_size, "CUDA: %s", cudaGetErrorString(e));
        tuna_cuda_destroy(ctx);
        return NULL;
    }
    if (cublasLtCreate(&ctx->lt) != CUBLAS_STATUS_SUCCESS) {
        if (msg) snprintf(msg, msg_size, "cublasLtCreate failed");
        tuna_cuda_destroy(ctx);
        return NULL;
    }
    return ctx;
}

extern "C" void tuna_cuda_destroy(tuna_cuda_ctx *ctx) {
    if (!ctx) return;
    if (ctx->lt) cublasLtDestroy(ctx->lt);
    if (ctx->workspace) cudaFree(ctx->workspace);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    free(ctx);
}

extern "C" int tuna_cuda_sync(tuna_cuda_ctx *ctx) {
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    return e == cudaSuccess ? 0 : tuna_cuda_fail(ctx, "sync", cudaGetErrorString(e));
}

extern "C" const char *tuna_cuda_last_error(const tuna_cuda_ctx *ctx) {
    return ctx ? ctx->message : "no CUDA context";
}
