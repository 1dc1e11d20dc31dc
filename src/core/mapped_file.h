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

/* Inputs must be regular files: a FIFO, a device or a directory is refused at
 * once (never a blocking open or read). */

/* Read a whole (small) file into a NUL-terminated malloc'd buffer; refuses files over max_bytes. */
tuna_status tuna_read_file(const char *path, size_t max_bytes, char **out, size_t *size, tuna_error *err);

/* Write a file so that PATH holds either its old content or the whole new one:
 *  - a regular file (or none): written to PATH.tmp.<64 random bits>, created
 *    exclusively (O_EXCL | O_NOFOLLOW), fsync'd, renamed over PATH, directory
 *    fsync'd; on failure the temporary file is removed and PATH is untouched;
 *  - a symbolic link: its target is replaced, the link stays (a link to
 *    nothing is refused);
 *  - a character device (/dev/null, a terminal) or a FIFO: written in place,
 *    never replaced (a FIFO without a reader is refused, not waited for);
 *    a directory, block device or socket is refused;
 *  - "-": standard output.
 * write_fn is called with the open FILE* and must return TUNA_OK. */
#include <stdio.h>
typedef tuna_status (*tuna_write_fn)(FILE *out, void *ctx, tuna_error *err);
tuna_status tuna_write_file_atomic(const char *path, tuna_write_fn write_fn, void *ctx, tuna_error *err);
/* Copy the regular file from to the path to, written as tuna_write_file_atomic does. */
tuna_status tuna_copy_file_atomic(const char *from, const char *to, tuna_error *err);

#endif
