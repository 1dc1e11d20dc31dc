/* RMSNorm, RoPE and SwiGLU on the GPU (same equations as src/ops/cpu). */
#include "ops/cuda/cuda_common.cuh"

/* One block of 256 threads per row: sum of squares by a shared-memory tree. */
static __global__ void rmsnorm_kernel(float *y, const float *x, const float *w, int dim, float eps) {
    __shared__ float partial[256];
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += xr[i] * xr[i];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if ((int)threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    float rstd = rsqrtf(partial[0] / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * rstd * (w ? w[i] : 1.0f);
}

extern "C" int tuna_cuda_rmsnorm(tuna_cuda_ctx *ctx, float *y, const float *x, const float *w,
                                 int64_t rows, int dim, float eps) {
    if (rows <= 0) return 0;
    if (dim <= 0 || rows > 0x7fffffff) return tuna_cuda_fail(ctx, "rmsnorm", "bad sizes");
    rmsnorm_kernel<<<(unsigned)rows, 256, 0, ctx->stream>>>(y, x, w, dim, eps);
    return tuna_cuda_check_launch(ctx, "rmsnorm");
}

/* One thread per (token, head, pair). Pair p is (x[p], x[p+D/2]) for
 * rotate-half and (x[2p], x[2p+1]) for interleaved; rotated by the table's
 * angle: a' = a c - b s, b' = a s + b c. */
static __global__ void rope_kernel(float *x, int64_t L, int heads, int head_dim,
                                   const uint8_t *mode, const float *cos_t, const float *sin_t) {
    int half = head_dim / 2;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= L * heads * half) return;
    int p = (int)(i % half);
    int64_t th = i / half; /* token * heads + head */
    int64_t t = th / heads;
    int m = mode[t];
    if (m == 0) return;
    float *xr = x + th * head_dim;
    int ia = m == 1 ? p : 2 * p, ib = m == 1 ? p + half : 2 * p + 1;
    float c = cos_t[t * half + p], s = sin_t[t * half + p];
    float a = xr[ia], b = xr[ib];
    xr[ia] = a * c - b * s;
    xr[ib] = a * s + b * c;
}

extern "C" int tuna_cuda_rope(tuna_cuda_ctx *ctx, float *x, int64_t L, int heads, int head_dim,
                              const uint8_t *mode, const float *cos_table, const float *sin_table) {
    if (head_dim <= 0 || head_dim % 2) return tuna_cuda_fail(ctx, "rope", "head_dim must be even");
    int64_t n = L * heads * (head_dim / 2);
    if (n <= 0) return 0;
    rope_kernel<<<(unsigned)((n + 255) / 256), 256, 0, ctx->stream>>>(x, L, heads, head_dim, mode,
                                                                       cos_table, sin_table);
    return tuna_cuda_check_launch(ctx, "rope");
}

static __global__ void swiglu_kernel(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" int tuna_cuda_swiglu(tuna_cuda_ctx *ctx, float *out, const float *gate, const float *up,
                                int64_t n) {
    if (n <= 0) return 0;
    swiglu_kernel<<<(unsigned)((n + 255) / 256), 256, 0, ctx->stream>>>(out, gate, up, n);
    return tuna_cuda_check_launch(ctx, "swiglu");
}
