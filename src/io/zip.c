/* ZIP reader for torch.save archives (PKWARE APPNOTE 6.3: end of central
 * directory, zip64 locator and record, central directory headers, local
 * headers). Every offset and size read from the file is range-checked before
 * use; nothing is trusted. */
#include "io/zip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_ZIP64_EOCD 0x06064b50u
#define SIG_ZIP64_LOCATOR 0x07064b50u

#define EOCD_SIZE 22
#define ZIP64_LOCATOR_SIZE 20
#define ZIP64_EOCD_SIZE 56
#define CENTRAL_SIZE 46
#define LOCAL_SIZE 30

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* [offset, offset + len) inside [0, size)? */
static int in_range(uint64_t offset, uint64_t len, uint64_t size) { return offset <= size && len <= size - offset; }

typedef struct {
    uint64_t entries, cd_size, cd_offset;
} central_directory;

/* The EOCD record is the last thing in the file, followed by a comment of up
 * to 65535 bytes: search backwards for a signature whose comment length fits. */
static tuna_status find_central_directory(const unsigned char *d, size_t size, central_directory *cd, tuna_error *err) {
    if (size < EOCD_SIZE) return tuna_fail(err, TUNA_ERR_FORMAT, "not a zip archive (%zu bytes)", size);
    size_t lowest = size > EOCD_SIZE + 65535 ? size - EOCD_SIZE - 65535 : 0;
    size_t eocd = (size_t)-1;
    for (size_t p = size - EOCD_SIZE + 1; p-- > lowest;) {
        if (rd32(d + p) == SIG_EOCD && p + EOCD_SIZE + rd16(d + p + 20) == size) { eocd = p; break; }
    }
    if (eocd == (size_t)-1) return tuna_fail(err, TUNA_ERR_FORMAT, "not a zip archive (no end of central directory)");
    const unsigned char *e = d + eocd;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0) return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "multi-disk zip archives are not supported");
    cd->entries = rd16(e + 10);
    cd->cd_size = rd32(e + 12);
    cd->cd_offset = rd32(e + 16);
    if (rd16(e + 8) != rd16(e + 10)) return tuna_fail(err, TUNA_ERR_FORMAT, "zip entry counts disagree");
    /* zip64: a locator sits right before the EOCD */
    if (eocd >= ZIP64_LOCATOR_SIZE && rd32(d + eocd - ZIP64_LOCATOR_SIZE) == SIG_ZIP64_LOCATOR) {
        const unsigned char *loc = d + eocd - ZIP64_LOCATOR_SIZE;
        uint64_t rec = rd64(loc + 8);
        if (!in_range(rec, ZIP64_EOCD_SIZE, eocd - ZIP64_LOCATOR_SIZE) || rd32(d + rec) != SIG_ZIP64_EOCD)
            return tuna_fail(err, TUNA_ERR_FORMAT, "bad zip64 end of central directory");
        const unsigned char *z = d + rec;
        if (rd32(z + 16) != 0 || rd32(z + 20) != 0) return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "multi-disk zip archives are not supported");
        if (rd64(z + 24) != rd64(z + 32)) return tuna_fail(err, TUNA_ERR_FORMAT, "zip64 entry counts disagree");
        cd->entries = rd64(z + 32);
        cd->cd_size = rd64(z + 40);
        cd->cd_offset = rd64(z + 48);
    } else if (cd->entries == 0xffff || cd->cd_size == 0xffffffffu || cd->cd_offset == 0xffffffffu) {
        return tuna_fail(err, TUNA_ERR_FORMAT, "zip needs zip64 records but has none");
    }
    if (!in_range(cd->cd_offset, cd->cd_size, size)) return tuna_fail(err, TUNA_ERR_FORMAT, "zip central directory out of range");
    if (cd->entries > cd->cd_size / CENTRAL_SIZE) return tuna_fail(err, TUNA_ERR_FORMAT, "zip central directory too small for %llu entries", (unsigned long long)cd->entries);
    return TUNA_OK;
}

/* Zip64 extended information (extra field 0x0001): the 64-bit values of the
 * fields that are 0xffffffff in the header, in this order. */
static tuna_status apply_zip64_extra(const unsigned char *extra, size_t len, uint64_t *size, uint64_t *csize,
                                     uint64_t *local, tuna_error *err) {
    size_t p = 0;
    while (p + 4 <= len) {
        uint16_t id = rd16(extra + p), n = rd16(extra + p + 2);
        if (p + 4 + n > len) return tuna_fail(err, TUNA_ERR_FORMAT, "zip extra field runs past its end");
        if (id == 0x0001) {
            size_t q = p + 4, end = p + 4 + n;
            uint64_t *fields[3] = {size, csize, local};
            for (int i = 0; i < 3; i++) {
                if (*fields[i] != 0xffffffffu) continue;
                if (q + 8 > end) return tuna_fail(err, TUNA_ERR_FORMAT, "zip64 extra field too short");
                *fields[i] = rd64(extra + q);
                q += 8;
            }
            return TUNA_OK;
        }
        p += 4 + (size_t)n;
    }
    if (*size == 0xffffffffu || *csize == 0xffffffffu || *local == 0xffffffffu)
        return tuna_fail(err, TUNA_ERR_FORMAT, "zip entry needs a zip64 extra field but has none");
    return TUNA_OK;
}

static int compare_entry_names(const void *a, const void *b) {
    return strcmp(((const tuna_zip_entry *)a)->name, ((const tuna_zip_entry *)b)->name);
}

static tuna_status parse_entry(const unsigned char *d, size_t size, size_t *pos, uint64_t cd_end, tuna_zip_entry *e,
                               tuna_error *err) {
    size_t p = *pos;
    if (!in_range(p, CENTRAL_SIZE, cd_end) || rd32(d + p) != SIG_CENTRAL)
        return tuna_fail(err, TUNA_ERR_FORMAT, "bad zip central directory header at %zu", p);
    const unsigned char *h = d + p;
    uint16_t flags = rd16(h + 8);
    uint16_t name_len = rd16(h + 28), extra_len = rd16(h + 30), comment_len = rd16(h + 32);
    if (!in_range(p + CENTRAL_SIZE, (uint64_t)name_len + extra_len + comment_len, cd_end))
        return tuna_fail(err, TUNA_ERR_FORMAT, "zip central directory header at %zu runs past the directory", p);
    const char *name = (const char *)h + CENTRAL_SIZE;
    if (name_len == 0 || memchr(name, 0, name_len)) return tuna_fail(err, TUNA_ERR_FORMAT, "bad zip member name");
    e->name = malloc((size_t)name_len + 1);
    if (!e->name) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    memcpy(e->name, name, name_len);
    e->name[name_len] = '\0';
    if (flags & 1) return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "zip member %s is encrypted", e->name);
    e->method = rd16(h + 10);
    if (e->method != 0 && e->method != 8)
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "zip member %s uses compression method %u (only stored and deflate)", e->name, e->method);
    e->crc32 = rd32(h + 16);
    uint64_t csize = rd32(h + 20), usize = rd32(h + 24), local = rd32(h + 42);
    TUNA_TRY(apply_zip64_extra(h + CENTRAL_SIZE + name_len, extra_len, &usize, &csize, &local, err));
    e->compressed_size = csize;
    e->size = usize;
    /* local header: its own name/extra lengths decide where the data starts */
    if (!in_range(local, LOCAL_SIZE, size) || rd32(d + local) != SIG_LOCAL)
        return tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: bad local header offset", e->name);
    uint64_t data = local + LOCAL_SIZE + rd16(d + local + 26) + rd16(d + local + 28);
    if (rd16(d + local + 26) != name_len || !in_range(local + LOCAL_SIZE, name_len, size) ||
        memcmp(d + local + LOCAL_SIZE, name, name_len) != 0)
        return tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: local header name differs", e->name);
    if (!in_range(data, csize, size)) return tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: data out of range", e->name);
    if (e->method == 0 && csize != usize)
        return tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: stored with different sizes", e->name);
    e->data_offset = data;
    *pos = p + CENTRAL_SIZE + name_len + extra_len + comment_len;
    return TUNA_OK;
}

tuna_status tuna_zip_parse(const void *data, size_t size, tuna_zip *zip, tuna_error *err) {
    memset(zip, 0, sizeof *zip);
    const unsigned char *d = data;
    central_directory cd = {0, 0, 0};
    TUNA_TRY(find_central_directory(d, size, &cd, err));
    zip->data = d;
    zip->size = size;
    zip->entries = calloc(cd.entries ? (size_t)cd.entries : 1, sizeof *zip->entries);
    if (!zip->entries) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    size_t pos = (size_t)cd.cd_offset;
    tuna_status s = TUNA_OK;
    for (uint64_t i = 0; i < cd.entries && s == TUNA_OK; i++) {
        s = parse_entry(d, size, &pos, cd.cd_offset + cd.cd_size, &zip->entries[zip->count], err);
        zip->count++; /* counted even on failure so its name is freed */
    }
    if (s == TUNA_OK) {
        qsort(zip->entries, zip->count, sizeof *zip->entries, compare_entry_names);
        for (size_t i = 1; i < zip->count && s == TUNA_OK; i++)
            if (strcmp(zip->entries[i - 1].name, zip->entries[i].name) == 0)
                s = tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s appears twice", zip->entries[i].name);
    }
    if (s != TUNA_OK) tuna_zip_free(zip);
    return s;
}

void tuna_zip_free(tuna_zip *zip) {
    if (!zip) return;
    for (size_t i = 0; i < zip->count; i++) free(zip->entries[i].name);
    free(zip->entries);
    memset(zip, 0, sizeof *zip);
}

const tuna_zip_entry *tuna_zip_find(const tuna_zip *zip, const char *name) {
    size_t lo = 0, hi = zip->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(zip->entries[mid].name, name);
        if (c == 0) return &zip->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* zlib's crc32 takes a uInt length: feed it in chunks. */
static uint32_t crc32_of(const unsigned char *p, uint64_t n) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

static tuna_status inflate_member(const tuna_zip *zip, const tuna_zip_entry *e, unsigned char *out, tuna_error *err) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return tuna_fail(err, TUNA_ERR_INTERNAL, "zlib init failed");
    const unsigned char *in = zip->data + e->data_offset;
    z.next_out = out; /* zlib refuses a NULL output even when it is empty */
    z.next_in = (Bytef *)in;
    uint64_t in_left = e->compressed_size, out_left = e->size;
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (z.avail_in == 0 && in_left) {
            z.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            z.next_in = (Bytef *)in;
            in += z.avail_in;
            in_left -= z.avail_in;
        }
        if (z.avail_out == 0 && out_left) {
            z.avail_out = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            z.next_out = out;
            out += z.avail_out;
            out_left -= z.avail_out;
        }
        uInt before_in = z.avail_in, before_out = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_BUF_ERROR || (rc == Z_OK && before_in == z.avail_in && before_out == z.avail_out)) break;
    }
    int complete = rc == Z_STREAM_END && z.avail_out == 0 && out_left == 0;
    inflateEnd(&z);
    if (!complete) return tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: corrupt deflate data or wrong size", e->name);
    return TUNA_OK;
}

tuna_status tuna_zip_read(const tuna_zip *zip, const tuna_zip_entry *e, uint64_t max_size, int check_stored_crc,
                          const unsigned char **bytes, void **owned, tuna_error *err) {
    *bytes = NULL;
    *owned = NULL;
    if (e->size > max_size)
        return tuna_fail(err, TUNA_ERR_LIMIT, "zip member %s is %llu bytes (limit %llu)", e->name,
                         (unsigned long long)e->size, (unsigned long long)max_size);
    if (e->method == 0) {
        if (check_stored_crc && crc32_of(zip->data + e->data_offset, e->size) != e->crc32)
            return tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: CRC mismatch", e->name);
        *bytes = zip->data + e->data_offset;
        return TUNA_OK;
    }
    /* deflate expands at most ~1032:1; a larger claim is a lie (or a bomb) */
    if (e->size / 1032 > e->compressed_size + 1)
        return tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: size %llu impossible for %llu compressed bytes", e->name,
                         (unsigned long long)e->size, (unsigned long long)e->compressed_size);
    if (e->size > SIZE_MAX - 64) return tuna_fail(err, TUNA_ERR_LIMIT, "zip member %s too large", e->name);
    /* 64-byte aligned so tensors viewing it are aligned like mmapped ones */
    size_t alloc = ((size_t)e->size + 63) & ~(size_t)63;
    unsigned char *out = aligned_alloc(64, alloc ? alloc : 64);
    if (!out) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory inflating %s (%llu bytes)", e->name, (unsigned long long)e->size);
    tuna_status s = inflate_member(zip, e, out, err);
    if (s == TUNA_OK && crc32_of(out, e->size) != e->crc32) s = tuna_fail(err, TUNA_ERR_FORMAT, "zip member %s: CRC mismatch", e->name);
    if (s != TUNA_OK) { free(out); return s; }
    *bytes = out;
    *owned = out;
    return TUNA_OK;
}
