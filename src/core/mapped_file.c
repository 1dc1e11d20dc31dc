#include "core/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
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

/* Open a file for reading, refusing anything but a regular file before a read
 * could block: O_NONBLOCK makes opening a FIFO return at once (and is a no-op
 * for regular files), so a FIFO or a device given as an input is an error
 * instead of a hang. */
static tuna_status open_regular(const char *path, int *fd_out, tuna_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return tuna_fail(err, TUNA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tuna_fail(err, TUNA_ERR_IO, "%s is not a regular file", path);
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    *fd_out = fd;
    return TUNA_OK;
}

tuna_status tuna_mapped_file_open(tuna_mapped_file *f, const char *path, tuna_error *err) {
    memset(f, 0, sizeof *f);
    int fd;
    TUNA_TRY(open_regular(path, &fd, err));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return tuna_fail(err, TUNA_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
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
    int fd;
    TUNA_TRY(open_regular(path, &fd, err));
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        return tuna_fail(err, TUNA_ERR_NOMEM, "cannot read %s: %s", path, strerror(errno));
    }
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

static tuna_status write_stream(FILE *fp, const char *name, tuna_write_fn write_fn, void *ctx, tuna_error *err) {
    tuna_status s = write_fn(fp, ctx, err);
    if (s == TUNA_OK && fflush(fp) != 0) s = tuna_fail(err, TUNA_ERR_IO, "cannot write %s: %s", name, strerror(errno));
    return s;
}

/* A non-regular file that exists (a character device such as /dev/null or a
 * terminal, a FIFO): written in place, never replaced. A FIFO is opened
 * without blocking first, so one without a reader is an error, not a hang. */
static tuna_status write_in_place(const char *path, const struct stat *st, tuna_write_fn write_fn, void *ctx,
                                  tuna_error *err) {
    if (!S_ISCHR(st->st_mode) && !S_ISFIFO(st->st_mode))
        return tuna_fail(err, TUNA_ERR_IO, "refusing to write to %s: not a regular file, FIFO or character device",
                         path);
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | (S_ISFIFO(st->st_mode) ? O_NONBLOCK : 0));
    if (fd < 0)
        return tuna_fail(err, TUNA_ERR_IO, "cannot open %s: %s", path,
                         errno == ENXIO ? "no process reads the FIFO" : strerror(errno));
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        close(fd);
        return tuna_fail(err, TUNA_ERR_NOMEM, "cannot write %s: %s", path, strerror(errno));
    }
    tuna_status s = write_stream(fp, path, write_fn, ctx, err);
    if (fclose(fp) != 0 && s == TUNA_OK) s = tuna_fail(err, TUNA_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return s;
}

/* PATH.tmp.XXXXXXXXXXXXXXXX with 64 random bits, created exclusively (O_EXCL,
 * never following a link): nobody can predict the name or plant a file or a
 * symbolic link there first. Mode 0666 less the umask, as a plain create. */
static tuna_status create_temp(const char *target, char *tmp, size_t cap, FILE **out, tuna_error *err) {
    for (int attempt = 0; attempt < 64; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ull + (uint64_t)attempt;
        snprintf(tmp, cap, "%s.tmp.%016llx", target, (unsigned long long)r);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return tuna_fail(err, TUNA_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        *out = fdopen(fd, "wb");
        if (*out) return TUNA_OK;
        close(fd);
        unlink(tmp);
        return tuna_fail(err, TUNA_ERR_NOMEM, "cannot write %s: %s", tmp, strerror(errno));
    }
    return tuna_fail(err, TUNA_ERR_IO, "cannot create a temporary file beside %s", target);
}

tuna_status tuna_write_file_atomic(const char *path, tuna_write_fn write_fn, void *ctx, tuna_error *err) {
    if (strcmp(path, "-") == 0) return write_stream(stdout, "standard output", write_fn, ctx, err);
    /* A symbolic link stays: its target is what gets replaced. */
    char *resolved = NULL;
    const char *target = path;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        resolved = realpath(path, NULL);
        if (!resolved)
            return tuna_fail(err, TUNA_ERR_IO, "%s is a symbolic link to nothing that exists (%s)", path,
                             strerror(errno));
        target = resolved;
    }
    tuna_status s = TUNA_OK;
    int exists = stat(target, &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) {
        s = tuna_fail(err, TUNA_ERR_IO, "%s is a directory", path);
    } else if (exists && !S_ISREG(st.st_mode)) {
        s = write_in_place(target, &st, write_fn, ctx, err);
    } else {
        size_t n = strlen(target) + 32;
        char *tmp = malloc(n);
        FILE *fp = NULL;
        s = tmp ? create_temp(target, tmp, n, &fp, err) : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        if (s == TUNA_OK) {
            s = write_stream(fp, tmp, write_fn, ctx, err);
            if (s == TUNA_OK && fsync(fileno(fp)) != 0)
                s = tuna_fail(err, TUNA_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
            if (fclose(fp) != 0 && s == TUNA_OK)
                s = tuna_fail(err, TUNA_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
            if (s == TUNA_OK && rename(tmp, target) != 0)
                s = tuna_fail(err, TUNA_ERR_IO, "cannot rename %s to %s: %s", tmp, target, strerror(errno));
            if (s != TUNA_OK) unlink(tmp);
            else fsync_directory_of(target);
        }
        free(tmp);
    }
    free(resolved);
    return s;
}

static tuna_status copy_bytes(FILE *out, void *ctx, tuna_error *err) {
    const tuna_mapped_file *f = ctx;
    if (f->size && fwrite(f->data, 1, f->size, out) != f->size) return tuna_fail(err, TUNA_ERR_IO, "write failed");
    return TUNA_OK;
}

tuna_status tuna_copy_file_atomic(const char *from, const char *to, tuna_error *err) {
    tuna_mapped_file f;
    TUNA_TRY(tuna_mapped_file_open(&f, from, err));
    tuna_status s = tuna_write_file_atomic(to, copy_bytes, &f, err);
    tuna_mapped_file_close(&f);
    return s;
}
