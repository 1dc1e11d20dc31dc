/* safetensors files: read (mmap, zero copy) and write (atomic).
 *
 * Format (https://github.com/huggingface/safetensors): 8 bytes little-endian
 * header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets":
 * [begin, end]}, ..., "__metadata__": {str: str}}, then the data region. Offsets
 * are relative to the start of the data region. As in the Rust reference, the
 * byte ranges, sorted by begin, must tile the data region exactly (no gap, no
 * overlap, no trailing bytes). See docs/checkpoints.md for every rule checked.
 *
 * Tensors are read-only views into the mapping: dtype as stored, contiguous,
 * no conversion. They live as long as the tuna_safetensors they came from. */
#ifndef TUNA_IO_SAFETENSORS_H
#define TUNA_IO_SAFETENSORS_H

#include "core/mapped_file.h"
#include "core/status.h"

typedef struct {
    char *name;           /* owned, NUL-terminated */
    tuna_tensor tensor;   /* view into the data region (read-only memory) */
    size_t data_begin;    /* byte range relative to the data region */
    size_t data_end;
} tuna_safetensors_entry;

typedef struct {
    char *key, *value;    /* owned */
} tuna_safetensors_kv;

typedef struct {
    tuna_mapped_file file;              /* empty when parsed from memory */
    tuna_safetensors_entry *entries;    /* sorted by name (bsearch in _find) */
    size_t count;
    tuna_safetensors_kv *metadata;      /* "__metadata__", in file order */
    size_t metadata_count;
    size_t header_size;                 /* N, the JSON length */
} tuna_safetensors;

/* Hard limits on untrusted input (refused with TUNA_ERR_LIMIT). */
#define TUNA_SAFETENSORS_MAX_HEADER ((size_t)100000000) /* 100 MB, as the Rust library */

/* Parse a whole file held in memory. Tensors point into data, which the
 * caller keeps alive and unchanged while st is used. what names the source in
 * error messages (a path or "<memory>"). On failure st is left empty. */
tuna_status tuna_safetensors_parse(const void *data, size_t size, const char *what,
                                   tuna_safetensors *st, tuna_error *err);

/* mmap path and parse it; st owns the mapping. */
tuna_status tuna_safetensors_open(const char *path, tuna_safetensors *st, tuna_error *err);
void tuna_safetensors_close(tuna_safetensors *st);

/* NULL when absent. O(log n). */
const tuna_tensor *tuna_safetensors_find(const tuna_safetensors *st, const char *name);
const char *tuna_safetensors_metadata_get(const tuna_safetensors *st, const char *key);

/* Write n tensors (any strides: they are written contiguous, in row-major
 * order) under names[i], with optional string metadata given as a
 * NULL-terminated list {key0, value0, key1, value1, ..., NULL} (or NULL).
 * Names must be unique and not "__metadata__". The header is padded with
 * spaces to a multiple of 8 bytes, as the reference library does. Tensors
 * are laid out in the given order. Written via tuna_write_file_atomic:
 * on failure the previous file at path is untouched. */
tuna_status tuna_safetensors_write(const char *path, const tuna_tensor *tensors, const char *const *names,
                                   size_t n, const char *const *metadata, tuna_error *err);
/* The same bytes to an open stream (non-atomic; for tests and pipes). */
tuna_status tuna_safetensors_write_stream(FILE *out, const tuna_tensor *tensors, const char *const *names,
                                          size_t n, const char *const *metadata, tuna_error *err);

/* Sharded checkpoints: model.safetensors.index.json = {"metadata": {...},
 * "weight_map": {tensor name: shard file name}}. Shard names must be plain
 * file names (no '/', no ".."). */
typedef struct {
    char **names;        /* tensor names, owned */
    char **shards;       /* shard file name per tensor (points into shard_files) */
    size_t count;
    char **shard_files;  /* distinct shard file names, owned, in first-seen order */
    size_t shard_count;
} tuna_safetensors_index;

tuna_status tuna_safetensors_index_parse(const char *json, size_t len, const char *what,
                                         tuna_safetensors_index *index, tuna_error *err);
void tuna_safetensors_index_free(tuna_safetensors_index *index);

#endif
