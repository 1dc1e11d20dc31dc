/* Tensors: shape bookkeeping, allocation, views. See tuna_tensor in tuna.h. */
#ifndef TUNA_CORE_TENSOR_H
#define TUNA_CORE_TENSOR_H

#include "tuna.h"
#include "core/status.h"

/* Number of elements (product of shape); 1 for ndim 0. */
int64_t tuna_tensor_numel(const tuna_tensor *t);
/* Bytes of the data: numel elements, or numel/block blocks for a block type. */
size_t tuna_tensor_nbytes(const tuna_tensor *t);
/* Bytes of n consecutive elements of dtype t (n a multiple of its block). */
size_t tuna_dtype_bytes_for(tuna_dtype t, int64_t n);
int tuna_tensor_is_contiguous(const tuna_tensor *t);

/* Fill shape/stride for a contiguous tensor over existing data (a view). */
void tuna_tensor_init_view(tuna_tensor *t, tuna_dtype dtype, int ndim, const int64_t *shape, void *data);

/* Allocate a zeroed contiguous tensor (64-byte aligned). Freed by tuna_tensor_free. */
tuna_status tuna_tensor_alloc(tuna_tensor *t, tuna_dtype dtype, int ndim, const int64_t *shape, tuna_error *err);
void tuna_tensor_free(tuna_tensor *t);

/* A view of rows [begin, end) along dimension 0. */
tuna_tensor tuna_tensor_slice_rows(const tuna_tensor *t, int64_t begin, int64_t end);

/* Element i (flat, contiguous tensors) converted to f32, for tests and tools
 * (0 for block types: dequantise rows with tuna_dequantize_row, src/ops). */
float tuna_tensor_get_f32(const tuna_tensor *t, int64_t i);

/* Copy src into a newly allocated F32 tensor of the same shape (any float dtype). */
tuna_status tuna_tensor_to_f32(const tuna_tensor *src, tuna_tensor *dst, tuna_error *err);

/* "[2, 3, 4]" into buf. */
const char *tuna_tensor_shape_string(const tuna_tensor *t, char *buf, size_t size);

#endif
