#include "core/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Large files are mapped at a 2 MiB-aligned address with MADV_HUGEPAGE: file
 * offset and address then agree modulo 2 MiB, so a kernel whose page cache
 * holds the file in 2 MiB folios (ext4/xfs on Linux >= 6.x) can map them with
 * one TLB entry each instead of 512. Reading the weights of a decode step
 * touches every page once: with 4 KiB pages the page walks cost ~15% of the
 * step. A plain mapping is the fallback. */
enum { MAPPED_HUGE = 2u << 20 };
static void *map_aligned(int fd, size_t size) {
    if (size < 4 * (size_t)MAPPED_HUGE) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    size_t span = size + MAPPED_HUGE;
    unsigned char *area = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    uintptr_t start = ((uintptr_t)area + MAPPED_HUGE - 1) & ~(uintptr_t)(MAPPED_HUGE - 1);
    unsigned char *p = mmap((void *)start, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        munmap(area, span);
        return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    }
    /* give back the reservation around the mapping */
    if (p > area) munmap(area, (size_t)(p - area));
    size_t tail = (size_t)((area + span) - (p + size));
    if (tail) munmap(p + size, tail);
    madvise(p, size, MADV_HUGEPAGE);
    return p;
}

tuna_status tuna_mapped_file_open(tuna_mapped_file *f, const char *path, tuna_error *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tuna_fail(err, TUNA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tuna_fail(err, TUNA_ERR_IO, "%s is not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = map_aligned(fd, (size_t)st.st_size);
        if (p == MAP_FAILED) {
            close(fd);
            return tuna_fail(err, TUNA_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        }
        f->data = p;
        f->size = (size_t)st.st_size;
    }
    close(fd);
    return TUNA_OK;
}

void tuna_mapped_file_close(tuna_mapped_file *f) {
    if (f->data) munmap((void *)f->data, f->size);
    memset(f, 0, sizeof *f);
}

tuna_status tuna_read_file(const char *path, size_t max_bytes, char **out, size_t *size, tuna_error *err) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return tuna_fail(err, TUNA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { fclose(fp); return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory reading %s", path); }
    for (;;) {
        if (len == cap) {
            if (cap >= max_bytes) {
                free(buf); fclose(fp);
                return tuna_fail(err, TUNA_ERR_LIMIT, "%s is larger than %zu bytes", path, max_bytes);
            }
            cap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            char *grown = realloc(buf, cap + 1);
            if (!grown) { free(buf); fclose(fp); return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory reading %s", path); }
            buf = grown;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0) break;
    }
    int failed = ferror(fp);
    fclose(fp);
    if (failed) { free(buf); return tuna_fail(err, TUNA_ERR_IO, "read error on %s", path); }
    buf[len] = '\0';
    *out = buf;
    if (size) *size = len;
    return TUNA_OK;
}

static void fsync_directory_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
    free(copy);
}

tuna_status tuna_write_file_atomic(const char *path, tuna_write_fn write_fn, void *ctx, tuna_error *err) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        tuna_status s = tuna_fail(err, TUNA_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    tuna_status s = write_fn(fp, ctx, err);
    if (s == TUNA_OK && fflush(fp) != 0) s = tuna_fail(err, TUNA_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (s == TUNA_OK && fsync(fileno(fp)) != 0) s = tuna_fail(err, TUNA_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
    if (fclose(fp) != 0 && s == TUNA_OK) s = tuna_fail(err, TUNA_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    if (s == TUNA_OK && rename(tmp, path) != 0)
        s = tuna_fail(err, TUNA_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (s != TUNA_OK) unlink(tmp);
    else fsync_directory_of(path);
    free(tmp);
    return s;
}
