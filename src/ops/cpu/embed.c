/* Input embeddings (SPEC sections 1, 3): token rows, image patches as a GEMM,
 * the sinusoidal time embedding. */
#include "ops/ops.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/cpu/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void tuna_im2col_patches(float *cols, const float *image, int C, int H, int W, int p) {
    int gw = W / p, gh = H / p;
    int64_t width = (int64_t)C * p * p;
    for (int gy = 0; gy < gh; gy++) {
        for (int gx = 0; gx < gw; gx++) {
            float *dst = cols + ((int64_t)gy * gw + gx) * width;
            for (int c = 0; c < C; c++)
                for (int ky = 0; ky < p; ky++) {
                    const float *src = image + ((int64_t)c * H + (int64_t)gy * p + ky) * W + (int64_t)gx * p;
                    memcpy(dst, src, (size_t)p * sizeof(float));
                    dst += p;
                }
        }
    }
}

tuna_status tuna_patch_embed_forward(float *y, const float *images, int n_images, int C, int H,
                                     int W, int p, const tuna_tensor *weight, const float *bias,
                                     const tuna_threads *pool, tuna_error *err) {
    if (n_images < 0 || C <= 0 || p <= 0 || H <= 0 || W <= 0 || H % p || W % p)
        return tuna_fail(err, TUNA_ERR_INVALID,
                         "patch embed: image %dx%d is not a multiple of patch %d", H, W, p);
    if (!weight || weight->ndim != 4 || weight->shape[1] != C || weight->shape[2] != p ||
        weight->shape[3] != p)
        return tuna_fail(err, TUNA_ERR_INVALID, "patch embed: weight must be [d, %d, %d, %d]", C, p, p);
    int64_t d = weight->shape[0], width = (int64_t)C * p * p;
    int64_t n = (int64_t)(H / p) * (W / p);
    float *cols = malloc((size_t)(n * width) * sizeof(float));
    if (!cols) return tuna_fail(err, TUNA_ERR_NOMEM, "patch embed: out of memory");
    tuna_status st = TUNA_OK;
    for (int i = 0; i < n_images && st == TUNA_OK; i++) {
        tuna_im2col_patches(cols, images + (int64_t)i * C * H * W, C, H, W, p);
        st = tuna_matmul_forward_raw(y + (int64_t)i * n * d, cols, weight->data, weight->dtype,
                                     bias, n, d, width, pool, err);
    }
    free(cols);
    return st;
}

void tuna_timestep_embedding(float *out, const float *t, int64_t n, int dim, double max_period) {
    int half = dim / 2;
    /* freqs in f32 as the reference: exp(-ln(max_period) * arange(half) / half) */
    float neg_log = (float)-log(max_period);
    for (int64_t i = 0; i < n; i++) {
        float *o = out + i * dim;
        for (int j = 0; j < half; j++) {
            float freq = expf(neg_log * (float)j / (float)half);
            float arg = t[i] * freq;
            o[j] = (float)cos((double)arg);
            o[half + j] = (float)sin((double)arg);
        }
        if (dim % 2) o[dim - 1] = 0.0f;
    }
}

tuna_status tuna_embedding_forward(float *out, const tuna_tensor *table, const int32_t *ids,
                                   int64_t n, tuna_error *err) {
    if (!table || table->ndim != 2 || !table->data)
        return tuna_fail(err, TUNA_ERR_INVALID, "embedding: table must be a 2-D tensor");
    int64_t V = table->shape[0], dim = table->shape[1];
    for (int64_t i = 0; i < n; i++) {
        int64_t id = ids[i];
        if (id < 0 || id >= V)
            return tuna_fail(err, TUNA_ERR_INVALID, "embedding: token id %lld at %lld is outside [0, %lld)",
                             (long long)id, (long long)i, (long long)V);
        float *o = out + i * dim;
        switch (table->dtype) {
        case TUNA_F32:
            memcpy(o, (const float *)table->data + id * dim, (size_t)dim * sizeof(float));
            break;
        case TUNA_BF16: {
            const uint16_t *r = (const uint16_t *)table->data + id * dim;
            for (int64_t k = 0; k < dim; k++) o[k] = tuna_bf16_to_f32(r[k]);
            break;
        }
        case TUNA_F16: {
            const uint16_t *r = (const uint16_t *)table->data + id * dim;
            for (int64_t k = 0; k < dim; k++) o[k] = tuna_f16_to_f32(r[k]);
            break;
        }
        default:
            /* a quantised table: the row's blocks dequantised (row lengths are whole blocks) */
            if (!tuna_dtype_is_quantized(table->dtype) || dim % tuna_dtype_block_size(table->dtype) ||
                tuna_dequantize_row(table->dtype, (const uint8_t *)table->data + tuna_dtype_bytes_for(table->dtype, id * dim),
                                    o, dim) != 0)
                return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "embedding: table dtype %s not supported",
                                 tuna_dtype_name(table->dtype));
        }
    }
    return TUNA_OK;
}

void tuna_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t n,
                             int64_t dim) {
    for (int64_t i = 0; i < n; i++) {
        float *row = dtable + (int64_t)ids[i] * dim;
        for (int64_t k = 0; k < dim; k++) row[k] += dout[i * dim + k];
    }
}

void tuna_unpatchify(float *image, const float *slots, int channels, int height, int width) {
    size_t plane = (size_t)height * width;
    for (size_t pixel = 0; pixel < plane; pixel++)
        for (int c = 0; c < channels; c++) image[c * plane + pixel] = slots[pixel * channels + c];
}

void tuna_patchify_labels(float *slots, const float *image, int channels, int height, int width) {
    size_t plane = (size_t)height * width;
    for (size_t pixel = 0; pixel < plane; pixel++)
        for (int c = 0; c < channels; c++) slots[pixel * channels + c] = image[c * plane + pixel];
}
