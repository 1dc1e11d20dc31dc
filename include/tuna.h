/* Tuna-2 engine: public C API.
 *
 * The library is organised as src/core (tensors, memory, threads, errors),
 * src/ops (kernels), src/io (files), src/text (tokenizer), src/model (the
 * Tuna-2 graph), src/infer, src/train and src/serve. This header holds what a
 * program embedding the engine needs; module headers under src/ hold the rest. */
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
    TUNA_DTYPE_COUNT /* quantised types are added before this */
} tuna_dtype;

size_t tuna_dtype_size(tuna_dtype t);
const char *tuna_dtype_name(tuna_dtype t);          /* "F32", "BF16", ... (safetensors) */
int tuna_dtype_from_name(const char *name, tuna_dtype *out); /* 1 on success */

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
