/* Tuna-2 engine: public C API.
 *
 * The library is organised as src/core (tensors, memory, threads, errors),
 * src/ops (kernels), src/io (files), src/text (tokenizer), src/model (the
 * Tuna-2 graph), src/infer (input preparation, understanding, generation),
 * src/train, src/eval and src/serve (the HTTP server). This header holds what
 * a program embedding the engine needs; module headers under src/ hold the
 * rest. */
#ifndef TUNA_H
#define TUNA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */
typedef enum {
    TUNA_OK = 0,
    TUNA_ERR_IO,          /* open/read/write/mmap failed */
    TUNA_ERR_FORMAT,      /* the bytes are not what the format says */
    TUNA_ERR_NOMEM,       /* allocation failed */
    TUNA_ERR_INVALID,     /* bad argument or option */
    TUNA_ERR_UNSUPPORTED, /* valid, but not something the engine does */
    TUNA_ERR_LIMIT,       /* absurd size refused (decompression bombs etc.) */
    TUNA_ERR_INTERNAL,
} tuna_status;

typedef struct {
    tuna_status code;
    char message[512];
} tuna_error;

const char *tuna_status_name(tuna_status s);

/* ---- element types ----------------------------------------------------- */
typedef enum {
    TUNA_F32 = 0,
    TUNA_BF16,
    TUNA_F16,
    TUNA_I8,
    TUNA_U8,
    TUNA_I32,
    TUNA_I64,
    TUNA_BOOL,
    TUNA_F64,
    TUNA_I16,
    /* ggml's block-quantised types (GGUF), byte layouts exactly ggml's. A
     * tensor of one has its shape in elements, the last dimension K a
     * multiple of the block; each row is K/block blocks. See docs/quantization.md. */
    TUNA_Q8_0, /*  32 weights in  34 bytes: f16 d, int8 q[32];             w = d q        */
    TUNA_Q4_0, /*  32 weights in  18 bytes: f16 d, 4-bit q[32];            w = d (q - 8)  */
    TUNA_Q5_0, /*  32 weights in  22 bytes: f16 d, 5-bit q[32];            w = d (q - 16) */
    TUNA_Q4_K, /* 256 weights in 144 bytes: 8 x 32 with 6-bit scale/min;   w = d s q - m  */
    TUNA_Q6_K, /* 256 weights in 210 bytes: 16 x 16 with int8 scales;      w = d s (q - 32) */
    TUNA_DTYPE_COUNT
} tuna_dtype;

/* Bytes per element; 0 for the block types (use the block helpers). */
size_t tuna_dtype_size(tuna_dtype t);
const char *tuna_dtype_name(tuna_dtype t);          /* "F32", "BF16", ..., "Q4_K" */
/* A safetensors element-type name ("F32", ...) to its dtype; 1 on success.
 * Block types are not element types and are never matched. */
int tuna_dtype_from_name(const char *name, tuna_dtype *out);
/* Elements per block: 1 for element types, 32 (Q8_0, Q4_0, Q5_0) or 256 (Q4_K, Q6_K). */
int64_t tuna_dtype_block_size(tuna_dtype t);
/* Bytes per block (the element size for element types). */
size_t tuna_dtype_block_bytes(tuna_dtype t);
int tuna_dtype_is_quantized(tuna_dtype t);

/* ---- tensors ----------------------------------------------------------- */
#define TUNA_MAX_DIMS 8

typedef enum {
    TUNA_STORAGE_VIEW = 0, /* data belongs to someone else (arena, parent, mmap) */
    TUNA_STORAGE_OWNED,    /* data was malloc'd for this tensor; freed with it */
} tuna_storage;

/* A strided n-dimensional array. shape[0] is the outermost dimension;
 * stride is in elements. A tensor made by tuna_tensor_* is contiguous. */
typedef struct {
    tuna_dtype dtype;
    int ndim;
    int64_t shape[TUNA_MAX_DIMS];
    int64_t stride[TUNA_MAX_DIMS];
    void *data;
    tuna_storage storage;
} tuna_tensor;

#ifdef __cplusplus
}
#endif
#endif
