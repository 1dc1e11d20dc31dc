/* Read-only memory-mapped files: checkpoint weights stay in the page cache and
 * tensors point straight into the mapping (no copy, no conversion at load). */
#ifndef TUNA_CORE_MAPPED_FILE_H
#define TUNA_CORE_MAPPED_FILE_H

#include "core/status.h"

typedef struct {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
} tuna_mapped_file;

tuna_status tuna_mapped_file_open(tuna_mapped_file *f, const char *path, tuna_error *err);
void tuna_mapped_file_close(tuna_mapped_file *f);

/* Read a whole (small) file into a NUL-terminated malloc'd buffer; refuses files over max_bytes. */
tuna_status tuna_read_file(const char *path, size_t max_bytes, char **out, size_t *size, tuna_error *err);

/* Atomic write: write to PATH.tmp.PID, fsync, rename over PATH, fsync the directory.
 * write_fn is called with the open FILE* and must return TUNA_OK. */
#include <stdio.h>
typedef tuna_status (*tuna_write_fn)(FILE *out, void *ctx, tuna_error *err);
tuna_status tuna_write_file_atomic(const char *path, tuna_write_fn write_fn, void *ctx, tuna_error *err);

#endif
