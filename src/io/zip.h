/* Read-only ZIP archives (what torch.save writes): central directory, zip64,
 * members stored (returned as views into the archive) or deflated (inflated
 * with zlib into an owned buffer, size-checked against the directory and the
 * CRC). No encryption, no multi-disk archives, no data descriptors needed. */
#ifndef TUNA_IO_ZIP_H
#define TUNA_IO_ZIP_H

#include "core/status.h"

#include <stdint.h>

typedef struct {
    char *name;              /* owned, NUL-terminated */
    uint16_t method;         /* 0 stored, 8 deflated */
    uint32_t crc32;
    uint64_t compressed_size;
    uint64_t size;           /* uncompressed */
    uint64_t data_offset;    /* of the member's bytes in the archive (after its local header) */
} tuna_zip_entry;

typedef struct {
    const unsigned char *data; /* the archive bytes (not owned) */
    size_t size;
    tuna_zip_entry *entries;
    size_t count;
} tuna_zip;

tuna_status tuna_zip_parse(const void *data, size_t size, tuna_zip *zip, tuna_error *err);
void tuna_zip_free(tuna_zip *zip);

const tuna_zip_entry *tuna_zip_find(const tuna_zip *zip, const char *name);

/* The bytes of a member. Stored: *bytes points into the archive and *owned is
 * NULL. Deflated: inflated into a malloc'd buffer returned in *owned (the
 * caller frees it; *bytes == *owned). Members larger than max_size are refused
 * (TUNA_ERR_LIMIT). The CRC-32 is checked for deflated members and, when
 * check_stored_crc is set, for stored ones (costs a pass over the bytes). */
tuna_status tuna_zip_read(const tuna_zip *zip, const tuna_zip_entry *entry, uint64_t max_size,
                          int check_stored_crc, const unsigned char **bytes, void **owned, tuna_error *err);

#endif
