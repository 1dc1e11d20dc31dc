/* CUDA kernels of the Tuna-2 engine: host-side C interface.
 *
 * Built by `make cuda` into build/cuda/libtuna_cuda.so (nvcc, cuBLASLt). The
 * same equations and layouts as the CPU kernels in src/ops/ops.h; every pointer
 * below is a DEVICE pointer unless said otherwise, activations are f32, and all
 * work is queued on the context's stream (call tuna_cuda_sync to wait).
 * Functions return 0 on success, or non-zero with a message in ctx (see
 * tuna_cuda_last_error). */
#ifndef TUNA_OPS_CUDA_OPS_H
#define TUNA_OPS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tuna_cuda_ctx tuna_cuda_ctx;

/* Create a context on the current device (a stream, a cuBLASLt handle and a
 * 32 MB workspace). Returns NULL on failure with the reason in msg. */
tuna_cuda_ctx *tuna_cuda_create(char *msg, size_t msg_size);
void tuna_cuda_destroy(tuna_cuda_ctx *ctx);
int tuna_cuda_sync(tuna_cuda_ctx *ctx);
const char *tuna_cuda_last_error(const tuna_cuda_ctx *ctx);

/* y[M,N] (f32) = x[M,K] @ W^T (+ bias[N]); x and W [N,K] bf16 (PyTorch Linear
 * layout), f32 accumulation (cuBLASLt, CUBLAS_COMPUTE_32F). bias may be NULL. */
int tuna_cuda_matmul_bf16(tuna_cuda_ctx *ctx, float *y, const uint16_t *x, const uint16_t *w,
                          const float *bias, int M, int N, int K);

/* f32 -> bf16 (round to nearest even), n elements, e.g. to feed the matmul. */
int tuna_cuda_f32_to_bf16(tuna_cuda_ctx *ctx, uint16_t *out, const float *in, int64_t n);

/* RMSNorm rows: y = x / sqrt(mean(x^2) + eps) * w (w may be NULL); in place ok. */
int tuna_cuda_rmsnorm(tuna_cuda_ctx *ctx, float *y, const float *x, const float *w, int64_t rows,
                      int dim, float eps);

/* RoPE in place on x [L, heads, head_dim] from a plan copied to the device:
 * mode [L] (0 none, 1 rotate-half, 2 interleaved), cos/sin [L, head_dim/2],
 * exactly the tables of tuna_rope_plan (the 3D minus sign is in the table). */
int tuna_cuda_rope(tuna_cuda_ctx *ctx, float *x, int64_t L, int heads, int head_dim,
                   const uint8_t *mode, const float *cos_table, const float *sin_table);

/* out = silu(gate) * up, n elements. */
int tuna_cuda_swiglu(tuna_cuda_ctx *ctx, float *out, const float *gate, const float *up, int64_t n);

/* Omni-mask attention: q [Lq, Hq, D] (positions q_start..), k, v [Lk, Hkv, D],
 * out [Lq, Hq, D]; key j visible to position i iff j <= i or both lie in one of
 * the segments (offset, length pairs, a HOST array of n_segments, at most 64).
 * D <= 128 (the LLM and head use 128 and 64),
 * Hq a multiple of Hkv, scale 0 means 1/sqrt(D). */
int tuna_cuda_attention(tuna_cuda_ctx *ctx, float *out, const float *q, const float *k,
                        const float *v, int Lq, int q_start, int Lk, int Hq, int Hkv, int D,
                        float scale, const int64_t *segments, int n_segments);

#ifdef __cplusplus
}
#endif
#endif
