#include "core/tensor.h"
#include "core/dtype.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const struct {
    const char *name;
    size_t size;        /* bytes per element; 0 for block types */
    int64_t block;      /* elements per block */
    size_t block_bytes; /* bytes per block */
} dtype_table[TUNA_DTYPE_COUNT] = {
    [TUNA_F32] = {"F32", 4, 1, 4},     [TUNA_BF16] = {"BF16", 2, 1, 2}, [TUNA_F16] = {"F16", 2, 1, 2},
    [TUNA_I8] = {"I8", 1, 1, 1},       [TUNA_U8] = {"U8", 1, 1, 1},     [TUNA_I32] = {"I32", 4, 1, 4},
    [TUNA_I64] = {"I64", 8, 1, 8},     [TUNA_BOOL] = {"BOOL", 1, 1, 1}, [TUNA_F64] = {"F64", 8, 1, 8},
    [TUNA_I16] = {"I16", 2, 1, 2},
    /* ggml block layouts (ggml-common.h): Q8_0 = f16 d + 32 int8; Q4_0 = f16 d
     * + 16 bytes of nibbles; Q5_0 = f16 d + 4 bytes of fifth bits + 16 bytes
     * of nibbles; Q4_K = f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128
     * bytes of nibbles; Q6_K = 128 bytes low nibbles, 64 bytes high 2-bit
     * pairs, 16 int8 scales, f16 d. */
    [TUNA_Q8_0] = {"Q8_0", 0, 32, 34}, [TUNA_Q4_0] = {"Q4_0", 0, 32, 18}, [TUNA_Q5_0] = {"Q5_0", 0, 32, 22},
    [TUNA_Q4_K] = {"Q4_K", 0, 256, 144}, [TUNA_Q6_K] = {"Q6_K", 0, 256, 210},
};

size_t tuna_dtype_size(tuna_dtype t) {
    return (unsigned)t < TUNA_DTYPE_COUNT ? dtype_table[t].size : 0;
}

const char *tuna_dtype_name(tuna_dtype t) {
    return (unsigned)t < TUNA_DTYPE_COUNT ? dtype_table[t].name : "?";
}

int tuna_dtype_from_name(const char *name, tuna_dtype *out) {
    for (int i = 0; i < TUNA_DTYPE_COUNT; i++) {
        if (dtype_table[i].size && strcmp(dtype_table[i].name, name) == 0) {
            *out = (tuna_dtype)i;
            return 1;
        }
    }
    return 0;
}

int64_t tuna_dtype_block_size(tuna_dtype t) {
    return (unsigned)t < TUNA_DTYPE_COUNT ? dtype_table[t].block : 1;
}

size_t tuna_dtype_block_bytes(tuna_dtype t) {
    return (unsigned)t < TUNA_DTYPE_COUNT ? dtype_table[t].block_bytes : 0;
}

int tuna_dtype_is_quantized(tuna_dtype t) {
    return (unsigned)t < TUNA_DTYPE_COUNT && dtype_table[t].block > 1;
}

size_t tuna_dtype_bytes_for(tuna_dtype t, int64_t n) {
    int64_t block = tuna_dtype_block_size(t);
    return (size_t)(n / block) * tuna_dtype_block_bytes(t);
}

int64_t tuna_tensor_numel(const tuna_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tuna_tensor_nbytes(const tuna_tensor *t) {
    return tuna_dtype_bytes_for(t->dtype, tuna_tensor_numel(t));
}

int tuna_tensor_is_contiguous(const tuna_tensor *t) {
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expected) return 0;
        expected *= t->shape[i];
    }
    return 1;
}

void tuna_tensor_init_view(tuna_tensor *t, tuna_dtype dtype, int ndim, const int64_t *shape, void *data) {
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = stride;
        stride *= shape[i];
    }
    t->data = data;
    t->storage = TUNA_STORAGE_VIEW;
}

enum { TENSOR_HUGE_ALIGN = 2u << 20, TENSOR_HUGE_MIN = 8u << 20 };

tuna_status tuna_tensor_alloc(tuna_tensor *t, tuna_dtype dtype, int ndim, const int64_t *shape, tuna_error *err) {
    if (ndim < 0 || ndim > TUNA_MAX_DIMS) return tuna_fail(err, TUNA_ERR_INVALID, "tensor rank %d out of range", ndim);
    int64_t block = tuna_dtype_block_size(dtype);
    if (block > 1 && (ndim < 1 || shape[ndim - 1] % block != 0))
        return tuna_fail(err, TUNA_ERR_INVALID, "a %s tensor needs a last dimension that is a multiple of %lld",
                         tuna_dtype_name(dtype), (long long)block);
    size_t bytes = tuna_dtype_block_bytes(dtype);
    if (!bytes) return tuna_fail(err, TUNA_ERR_INVALID, "tensor dtype %d out of range", (int)dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return tuna_fail(err, TUNA_ERR_INVALID, "negative dimension %lld", (long long)shape[i]);
        size_t count = (size_t)(i == ndim - 1 ? shape[i] / block : shape[i]);
        if (tuna_mul_overflows(bytes, count, &bytes))
            return tuna_fail(err, TUNA_ERR_LIMIT, "tensor size overflows");
    }
    /* Large tensors (weights converted at load, activations of long
     * sequences) on 2 MiB boundaries with MADV_HUGEPAGE: a GEMV streaming
     * through a gigabyte of weights otherwise takes a TLB miss every 4 KiB. */
    size_t align = bytes >= TENSOR_HUGE_MIN ? TENSOR_HUGE_ALIGN : 64;
    size_t rounded = (bytes + align - 1) & ~(align - 1);
    void *data = aligned_alloc(align, rounded ? rounded : 64);
    if (!data) return tuna_fail(err, TUNA_ERR_NOMEM, "cannot allocate %zu bytes for a tensor", bytes);
    if (align == TENSOR_HUGE_ALIGN) madvise(data, rounded, MADV_HUGEPAGE);
    memset(data, 0, rounded ? rounded : 64);
    tuna_tensor_init_view(t, dtype, ndim, shape, data);
    t->storage = TUNA_STORAGE_OWNED;
    return TUNA_OK;
}

void tuna_tensor_free(tuna_tensor *t) {
    if (t && t->storage == TUNA_STORAGE_OWNED) free(t->data);
    if (t) memset(t, 0, sizeof *t);
}

tuna_tensor tuna_tensor_slice_rows(const tuna_tensor *t, int64_t begin, int64_t end) {
    tuna_tensor v = *t;
    v.storage = TUNA_STORAGE_VIEW;
    v.shape[0] = end - begin;
    v.data = (char *)t->data + tuna_dtype_bytes_for(t->dtype, begin * t->stride[0]);
    return v;
}

float tuna_tensor_get_f32(const tuna_tensor *t, int64_t i) {
    const void *p = t->data;
    switch (t->dtype) {
    case TUNA_F32: return ((const float *)p)[i];
    case TUNA_BF16: return tuna_bf16_to_f32(((const uint16_t *)p)[i]);
    case TUNA_F16: return tuna_f16_to_f32(((const uint16_t *)p)[i]);
    case TUNA_F64: return (float)((const double *)p)[i];
    case TUNA_I8: return ((const int8_t *)p)[i];
    case TUNA_U8: case TUNA_BOOL: return ((const uint8_t *)p)[i];
    case TUNA_I16: return ((const int16_t *)p)[i];
    case TUNA_I32: return (float)((const int32_t *)p)[i];
    case TUNA_I64: return (float)((const int64_t *)p)[i];
    default: return 0.0f;
    }
}

tuna_status tuna_tensor_to_f32(const tuna_tensor *src, tuna_tensor *dst, tuna_error *err) {
    if (tuna_dtype_is_quantized(src->dtype))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "a %s tensor is widened by dequantising its rows (src/ops)",
                         tuna_dtype_name(src->dtype));
    TUNA_TRY(tuna_tensor_alloc(dst, TUNA_F32, src->ndim, src->shape, err));
    int64_t n = tuna_tensor_numel(src);
    float *out = dst->data;
    for (int64_t i = 0; i < n; i++) out[i] = tuna_tensor_get_f32(src, i);
    return TUNA_OK;
}

const char *tuna_tensor_shape_string(const tuna_tensor *t, char *buf, size_t size) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, size - used, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}
