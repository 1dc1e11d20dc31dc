#include "core/tensor.h"
#include "core/dtype.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[TUNA_DTYPE_COUNT] = {
    [TUNA_F32] = {"F32", 4},  [TUNA_BF16] = {"BF16", 2}, [TUNA_F16] = {"F16", 2},
    [TUNA_I8] = {"I8", 1},    [TUNA_U8] = {"U8", 1},     [TUNA_I32] = {"I32", 4},
    [TUNA_I64] = {"I64", 8},  [TUNA_BOOL] = {"BOOL", 1}, [TUNA_F64] = {"F64", 8},
    [TUNA_I16] = {"I16", 2},
};

size_t tuna_dtype_size(tuna_dtype t) {
    return (unsigned)t < TUNA_DTYPE_COUNT ? dtype_table[t].size : 0;
}

const char *tuna_dtype_name(tuna_dtype t) {
    return (unsigned)t < TUNA_DTYPE_COUNT ? dtype_table[t].name : "?";
}

int tuna_dtype_from_name(const char *name, tuna_dtype *out) {
    for (int i = 0; i < TUNA_DTYPE_COUNT; i++) {
        if (dtype_table[i].name && strcmp(dtype_table[i].name, name) == 0) {
            *out = (tuna_dtype)i;
            return 1;
        }
    }
    return 0;
}

int64_t tuna_tensor_numel(const tuna_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tuna_tensor_nbytes(const tuna_tensor *t) {
    return (size_t)tuna_tensor_numel(t) * tuna_dtype_size(t->dtype);
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
    size_t bytes = tuna_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return tuna_fail(err, TUNA_ERR_INVALID, "negative dimension %lld", (long long)shape[i]);
        if (tuna_mul_overflows(bytes, (size_t)shape[i], &bytes))
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
    v.data = (char *)t->data + (size_t)(begin * t->stride[0]) * tuna_dtype_size(t->dtype);
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
