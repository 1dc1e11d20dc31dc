/* Omni-mask attention on the GPU: a simple tiled kernel with an online softmax.
 *
 * Block = 4 warps = 4 consecutive queries of one q head. Keys/values are
 * staged through shared memory in tiles of 32 rows, shared by the 4 warps.
 * Per tile, lane j of a warp scores key j (q . k_j, q in shared memory), the
 * warp reduces max/sum with shuffles, then every lane accumulates its D/32
 * output dimensions over the 32 keys. As on the CPU, the visible keys of a
 * query form a prefix [0, vis(i)) (SPEC section 3), so the mask is one integer
 * per query. */
#include "ops/cuda/cuda_common.cuh"

#include <math.h>

enum { ATT_WARPS = 4, ATT_TILE = 32, ATT_MAX_D = 128, ATT_MAX_SEGMENTS = 64 };

struct att_segments {
    int64_t offset[ATT_MAX_SEGMENTS];
    int64_t length[ATT_MAX_SEGMENTS];
    int n;
};

static __device__ int64_t visible_end(const att_segments &segs, int64_t i, int64_t Lk) {
    int64_t end = i + 1;
    for (int s = 0; s < segs.n; s++) {
        int64_t a = segs.offset[s], b = a + segs.length[s];
        if (i >= a && i < b && b > end) end = b;
    }
    return end < Lk ? end : Lk;
}

static __global__ void attention_kernel(float *out, const float *q, const float *k, const float *v,
                                        int Lq, int q_start, int Lk, int Hq, int Hkv, int D,
                                        float scale, att_segments segs) {
    __shared__ float ks[ATT_TILE][ATT_MAX_D + 1];
    __shared__ float vs[ATT_TILE][ATT_MAX_D];
    __shared__ float qs[ATT_WARPS][ATT_MAX_D];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int64_t row = (int64_t)blockIdx.x * ATT_WARPS + warp;
    const bool active = row < Lq;
    const int64_t qstride = (int64_t)Hq * D, kvstride = (int64_t)Hkv * D;

    int64_t vis = 0;
    if (active) {
        vis = visible_end(segs, q_start + row, Lk);
        for (int d = lane; d < D; d += 32) qs[warp][d] = q[row * qstride + (int64_t)h * D + d] * scale;
    }
    /* the block walks to the largest prefix of its queries */
    __shared__ int64_t block_vis[ATT_WARPS];
    if (lane == 0) block_vis[warp] = vis;
    __syncthreads();
    int64_t kmax = 0;
    for (int w = 0; w < ATT_WARPS; w++) kmax = block_vis[w] > kmax ? block_vis[w] : kmax;

    float acc[ATT_MAX_D / 32];
    for (int u = 0; u < ATT_MAX_D / 32; u++) acc[u] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    for (int64_t k0 = 0; k0 < kmax; k0 += ATT_TILE) {
        __syncthreads(); /* previous tile fully consumed */
        for (int idx = threadIdx.x; idx < ATT_TILE * D; idx += blockDim.x) {
            int r = idx / D, d = idx % D;
            int64_t key = k0 + r;
            float kv = 0.0f, vv = 0.0f;
            if (key < Lk) {
                kv = k[key * kvstride + (int64_t)kvh * D + d];
                vv = v[key * kvstride + (int64_t)kvh * D + d];
            }
            ks[r][d] = kv;
            vs[r][d] = vv;
        }
        __syncthreads();
        if (!active || k0 >= vis) continue;
        float s = -INFINITY;
        if (k0 + lane < vis) {
            s = 0.0f;
            for (int d = 0; d < D; d++) s += qs[warp][d] * ks[lane][d];
        }
        float tile_max = s;
        for (int off = 16; off > 0; off /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
        float m_new = fmaxf(m, tile_max);
        float p = k0 + lane < vis ? expf(s - m_new) : 0.0f;
        float psum = p;
        for (int off = 16; off > 0; off /= 2) psum += __shfl_xor_sync(0xffffffffu, psum, off);
        float corr = expf(m - m_new); /* 0 on the first tile (m = -inf) */
        l = l * corr + psum;
        m = m_new;
        for (int u = 0; u < ATT_MAX_D / 32; u++) acc[u] *= corr;
        for (int j = 0; j < ATT_TILE; j++) {
            float pj = __shfl_sync(0xffffffffu, p, j);
            for (int u = 0; u < ATT_MAX_D / 32; u++) {
                int d = lane + 32 * u;
                if (d < D) acc[u] += pj * vs[j][d];
            }
        }
    }
    if (!active) return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int u = 0; u < ATT_MAX_D / 32; u++) {
        int d = lane + 32 * u;
        if (d < D) out[row * qstride + (int64_t)h * D + d] = acc[u] * inv;
    }
}

extern "C" int tuna_cuda_attention(tuna_cuda_ctx *ctx, float *out, const float *q, const float *k,
                                   const float *v, int Lq, int q_start, int Lk, int Hq, int Hkv,
                                   int D, float scale, const int64_t *segments, int n_segments) {
    if (Lq < 0 || Lk < 0 || q_start < 0 || Hq <= 0 || Hkv <= 0 || Hq % Hkv || D <= 0 ||
        D > ATT_MAX_D)
        return tuna_cuda_fail(ctx, "attention", "bad shape (D must be <= 128, Hq a multiple of Hkv)");
    if (n_segments < 0 || n_segments > ATT_MAX_SEGMENTS)
        return tuna_cuda_fail(ctx, "attention", "at most 64 segments");
    if (Lq == 0) return 0;
    att_segments segs;
    segs.n = n_segments;
    for (int s = 0; s < n_segments; s++) {
        segs.offset[s] = segments[2 * s];
        segs.length[s] = segments[2 * s + 1];
    }
    if (scale == 0.0f) scale = 1.0f / sqrtf((float)D);
    dim3 grid((unsigned)((Lq + ATT_WARPS - 1) / ATT_WARPS), (unsigned)Hq);
    attention_kernel<<<grid, ATT_WARPS * 32, 0, ctx->stream>>>(out, q, k, v, Lq, q_start, Lk, Hq,
                                                               Hkv, D, scale, segs);
    return tuna_cuda_check_launch(ctx, "attention");
}
