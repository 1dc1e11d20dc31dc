/* GGUF files (ggml's model format, version 3; version 2 is read too): read
 * (mmap, zero copy, every field checked) and write (atomic, streamed).
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value
 * count; the key/values (u64-length string key, u32 value type, value; arrays
 * are u32 element type, u64 count, elements; strings u64 length + bytes); the
 * tensor infos (name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml
 * type, u64 offset into the data section); padding to general.alignment
 * (u32, default 32); the data section, each tensor at its aligned offset.
 *
 * Tensors come out as read-only tuna_tensor views with the shape in our
 * order (outermost first: ne reversed) and the dtype mapped from ggml's type
 * (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K and the integer types; any
 * other ggml type is refused with its number). docs/checkpoints.md lists every
 * check the reader makes. */
#ifndef TUNA_IO_GGUF_H
#define TUNA_IO_GGUF_H

#include "core/mapped_file.h"
#include "core/status.h"

#include <stdio.h>

/* GGUF value types (the file's numbers). */
typedef enum {
    TUNA_GGUF_UINT8 = 0,
    TUNA_GGUF_INT8 = 1,
    TUNA_GGUF_UINT16 = 2,
    TUNA_GGUF_INT16 = 3,
    TUNA_GGUF_UINT32 = 4,
    TUNA_GGUF_INT32 = 5,
    TUNA_GGUF_FLOAT32 = 6,
    TUNA_GGUF_BOOL = 7,
    TUNA_GGUF_STRING = 8,
    TUNA_GGUF_ARRAY = 9,
    TUNA_GGUF_UINT64 = 10,
    TUNA_GGUF_INT64 = 11,
    TUNA_GGUF_FLOAT64 = 12,
} tuna_gguf_type;

typedef struct {
    char *key;             /* owned, NUL-terminated */
    tuna_gguf_type type;
    /* scalars: the value widened; BOOL is 0/1 in u */
    uint64_t u;
    int64_t i;
    double f;
    char *str;             /* STRING: owned copy, NUL-terminated (str_len bytes before it) */
    size_t str_len;
    tuna_gguf_type array_type; /* ARRAY: element type and count; the elements */
    uint64_t array_count;      /* stay in the mapping at array_data (validated) */
    const unsigned char *array_data;
} tuna_gguf_kv;

typedef struct {
    char *name;            /* owned */
    tuna_tensor tensor;    /* view into the data section */
    uint32_t ggml_type;
    uint64_t offset;       /* relative to the data section */
    size_t nbytes;
} tuna_gguf_entry;

typedef struct {
    tuna_mapped_file file; /* empty when parsed from memory */
    uint32_t version;
    tuna_gguf_kv *kv;      /* in file order */
    size_t kv_count;
    tuna_gguf_entry *entries; /* sorted by name */
    size_t count;
    size_t alignment;
    size_t data_offset;    /* start of the data section in the file */
} tuna_gguf;

/* Limits on untrusted input (TUNA_ERR_LIMIT beyond them). */
#define TUNA_GGUF_MAX_KEY 65535        /* bytes of a key or tensor name */
#define TUNA_GGUF_MAX_ALIGNMENT (1u << 24)

/* Parse a whole file held in memory (kept alive and unchanged while g is
 * used). what names the source in messages (NULL: "<memory>"). On failure g
 * is left empty. */
tuna_status tuna_gguf_parse(const void *data, size_t size, const char *what, tuna_gguf *g, tuna_error *err);
tuna_status tuna_gguf_open(const char *path, tuna_gguf *g, tuna_error *err);
void tuna_gguf_close(tuna_gguf *g);

const tuna_tensor *tuna_gguf_find(const tuna_gguf *g, const char *name); /* NULL when absent */
const tuna_gguf_kv *tuna_gguf_get(const tuna_gguf *g, const char *key);  /* NULL when absent */
/* A STRING value, NULL when absent or of another type. */
const char *tuna_gguf_get_string(const tuna_gguf *g, const char *key, size_t *len);

/* ggml type number <-> dtype; 0 when there is no counterpart. */
int tuna_gguf_dtype_from_ggml(uint32_t ggml_type, tuna_dtype *out);
int tuna_gguf_ggml_from_dtype(tuna_dtype dtype, uint32_t *out);

/* ---- writing ------------------------------------------------------------- */

/* A metadata value to write: STRING (str, NUL-terminated or str_len bytes
 * when str_len > 0), the integer types (u or i), FLOAT32/FLOAT64 (f), BOOL (u). */
typedef struct {
    const char *key;
    tuna_gguf_type type;
    const char *str;
    size_t str_len;
    uint64_t u;
    int64_t i;
    double f;
} tuna_gguf_value;

/* A tensor to write: name (< 64 bytes, ggml's limit), dtype, shape in our
 * order (outermost first, at most 4 dims, a block type's last dim a multiple
 * of its block). Its bytes come from data when non-NULL (contiguous), else
 * from fill(ctx, index, buffer) called once with a buffer of the tensor's
 * size, so a converter never holds more than one converted tensor. */
typedef struct {
    const char *name;
    tuna_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
} tuna_gguf_tensor_in;

typedef tuna_status (*tuna_gguf_fill_fn)(void *ctx, size_t index, void *buffer, tuna_error *err);

/* Write version 3 with alignment 32 to path atomically (tuna_write_file_atomic). */
tuna_status tuna_gguf_write(const char *path, const tuna_gguf_value *kv, size_t n_kv, const tuna_gguf_tensor_in *tensors,
                            size_t n, tuna_gguf_fill_fn fill, void *ctx, tuna_error *err);
/* The same bytes to an open stream. */
tuna_status tuna_gguf_write_stream(FILE *out, const tuna_gguf_value *kv, size_t n_kv, const tuna_gguf_tensor_in *tensors,
                                   size_t n, tuna_gguf_fill_fn fill, void *ctx, tuna_error *err);

#endif
