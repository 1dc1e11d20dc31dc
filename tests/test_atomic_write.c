/* tuna_write_file_atomic (src/core/mapped_file.h) on every kind of output
 * path: regular files, symbolic links, FIFOs, character devices, directories,
 * "-" for standard output, planted temporary names; and inputs that are not
 * regular files refused at once (a FIFO never blocks a read). */
#include "test.h"
#include "core/mapped_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static tuna_status write_text(FILE *out, void *ctx, tuna_error *err) {
    if (fputs((const char *)ctx, out) < 0) return tuna_fail(err, TUNA_ERR_IO, "write failed");
    return TUNA_OK;
}

static tuna_status write_fails(FILE *out, void *ctx, tuna_error *err) {
    (void)ctx;
    fputs("partial", out);
    return tuna_fail(err, TUNA_ERR_IO, "failed on purpose");
}

static int file_is(const char *path, const char *want) {
    char *text = NULL;
    size_t n = 0;
    if (tuna_read_file(path, 1 << 20, &text, &n, NULL) != TUNA_OK) return 0;
    int same = n == strlen(want) && memcmp(text, want, n) == 0;
    free(text);
    return same;
}

/* Entries of dir other than . and .. */
static int entries(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

TEST(regular_file_replaced_whole_or_not_at_all) {
    char p[128];
    path_in(p, sizeof p, "a.txt");
    tuna_error err = {0};
    CHECK(tuna_write_file_atomic(p, write_text, "first", &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_write_file_atomic(p, write_text, "second", &err) == TUNA_OK, "%s", err.message);
    CHECK(file_is(p, "second"), "replaced");
    CHECK(tuna_write_file_atomic(p, write_fails, NULL, &err) != TUNA_OK, "a failing writer fails");
    CHECK(file_is(p, "second"), "and leaves the old content");
    CHECK(entries() == 1, "no temporary file left behind (%d entries)", entries());
    unlink(p);
}

TEST(symbolic_link_stays_and_its_target_is_written) {
    char target[128], link_path[128];
    path_in(target, sizeof target, "target.txt");
    path_in(link_path, sizeof link_path, "link.txt");
    tuna_error err = {0};
    REQUIRE(tuna_write_file_atomic(target, write_text, "old", &err) == TUNA_OK, "%s", err.message);
    REQUIRE(symlink("target.txt", link_path) == 0, "symlink: %s", strerror(errno));
    CHECK(tuna_write_file_atomic(link_path, write_text, "new", &err) == TUNA_OK, "%s", err.message);
    struct stat st;
    CHECK(lstat(link_path, &st) == 0 && S_ISLNK(st.st_mode), "the link is still a link");
    CHECK(file_is(target, "new"), "its target holds the new content");
    unlink(link_path);
    unlink(target);
    REQUIRE(symlink("nowhere/at/all", link_path) == 0, "symlink: %s", strerror(errno));
    CHECK(tuna_write_file_atomic(link_path, write_text, "x", &err) == TUNA_ERR_IO, "a link to nothing is refused");
    CHECK(lstat(link_path, &st) == 0 && S_ISLNK(st.st_mode), "and left alone");
    unlink(link_path);
}

TEST(planted_temporary_name_is_not_followed) {
    /* The old writer used the predictable PATH.tmp.PID: a link planted there
     * would have been followed. The temporary name is random now, and created
     * with O_EXCL | O_NOFOLLOW. */
    char p[128], planted[160], victim[128];
    path_in(p, sizeof p, "out.txt");
    path_in(victim, sizeof victim, "victim.txt");
    snprintf(planted, sizeof planted, "%s.tmp.%ld", p, (long)getpid());
    tuna_error err = {0};
    REQUIRE(tuna_write_file_atomic(victim, write_text, "precious", &err) == TUNA_OK, "%s", err.message);
    REQUIRE(symlink(victim, planted) == 0, "symlink: %s", strerror(errno));
    CHECK(tuna_write_file_atomic(p, write_text, "output", &err) == TUNA_OK, "%s", err.message);
    CHECK(file_is(victim, "precious"), "the planted link's target is untouched");
    CHECK(file_is(p, "output"), "the output is written");
    unlink(planted);
    unlink(victim);
    unlink(p);
}

TEST(fifo_is_written_in_place_or_refused) {
    char p[128];
    path_in(p, sizeof p, "fifo");
    REQUIRE(mkfifo(p, 0600) == 0, "mkfifo: %s", strerror(errno));
    tuna_error err = {0};
    CHECK(tuna_write_file_atomic(p, write_text, "x", &err) == TUNA_ERR_IO && strstr(err.message, "FIFO"),
          "no reader: refused at once (%s)", err.message);
    int fds[2];
    REQUIRE(pipe(fds) == 0, "pipe");
    pid_t child = fork();
    REQUIRE(child >= 0, "fork");
    if (child == 0) { /* the reader: copies what arrives on the FIFO into the pipe */
        close(fds[0]);
        int fd = open(p, O_RDONLY);
        char buf[64];
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf) : -1;
        if (n > 0 && write(fds[1], buf, (size_t)n) != n) _exit(2);
        _exit(n > 0 ? 0 : 1);
    }
    close(fds[1]);
    tuna_status s = TUNA_ERR_IO;
    for (int i = 0; i < 500 && s != TUNA_OK; i++) { /* until the child has opened its end */
        s = tuna_write_file_atomic(p, write_text, "through the fifo", &err);
        if (s != TUNA_OK) usleep(10000);
    }
    CHECK(s == TUNA_OK, "with a reader: written (%s)", err.message);
    char got[64] = {0};
    ssize_t n = read(fds[0], got, sizeof got - 1);
    close(fds[0]);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(n > 0 && strcmp(got, "through the fifo") == 0, "the reader got the bytes: '%s'", got);
    struct stat st;
    CHECK(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO is still a FIFO");
    unlink(p);
}

TEST(character_device_is_written_not_replaced) {
    /* A private copy of /dev/null (1, 3) when we may make one (root), else
     * /dev/null itself: either way it must stay a character device. */
    char p[128];
    path_in(p, sizeof p, "null");
    const char *dev = mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0 ? p : "/dev/null";
    tuna_error err = {0};
    CHECK(tuna_write_file_atomic(dev, write_text, "into the void", &err) == TUNA_OK, "%s: %s", dev, err.message);
    struct stat st;
    CHECK(stat(dev, &st) == 0 && S_ISCHR(st.st_mode), "%s is still a character device", dev);
    unlink(p);
}

TEST(directory_is_refused) {
    tuna_error err = {0};
    CHECK(tuna_write_file_atomic(dir, write_text, "x", &err) == TUNA_ERR_IO && strstr(err.message, "directory"),
          "%s", err.message);
}

TEST(dash_writes_standard_output) {
    char p[128];
    path_in(p, sizeof p, "stdout.txt");
    fflush(stdout);
    int saved = dup(STDOUT_FILENO), fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(saved >= 0 && fd >= 0, "dup/open");
    dup2(fd, STDOUT_FILENO);
    close(fd);
    tuna_error err = {0};
    tuna_status s = tuna_write_file_atomic("-", write_text, "to stdout", &err);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    CHECK(s == TUNA_OK, "%s", err.message);
    CHECK(file_is(p, "to stdout"), "the bytes went to standard output");
    unlink(p);
}

TEST(copy_file_atomic_copies_bytes) {
    char a[128], b[128];
    path_in(a, sizeof a, "src.bin");
    path_in(b, sizeof b, "dst.bin");
    tuna_error err = {0};
    REQUIRE(tuna_write_file_atomic(a, write_text, "payload", &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_copy_file_atomic(a, b, &err) == TUNA_OK && file_is(b, "payload"), "%s", err.message);
    CHECK(tuna_copy_file_atomic(dir, b, &err) != TUNA_OK && file_is(b, "payload"), "a directory is no source");
    unlink(a);
    unlink(b);
}

TEST(inputs_that_are_not_regular_files_are_refused_at_once) {
    char p[128];
    path_in(p, sizeof p, "in_fifo");
    REQUIRE(mkfifo(p, 0600) == 0, "mkfifo: %s", strerror(errno));
    alarm(10); /* a regression would block here forever */
    char *text = NULL;
    tuna_error err = {0};
    CHECK(tuna_read_file(p, 1024, &text, NULL, &err) == TUNA_ERR_IO && strstr(err.message, "not a regular file"),
          "read_file: %s", err.message);
    tuna_mapped_file f;
    CHECK(tuna_mapped_file_open(&f, p, &err) == TUNA_ERR_IO, "mapped_file: %s", err.message);
    CHECK(tuna_read_file("/dev/zero", 1024, &text, NULL, &err) == TUNA_ERR_IO, "a device: %s", err.message);
    CHECK(tuna_read_file(dir, 1024, &text, NULL, &err) == TUNA_ERR_IO, "a directory: %s", err.message);
    alarm(0);
    unlink(p);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/tuna_atomic_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(regular_file_replaced_whole_or_not_at_all);
    RUN(symbolic_link_stays_and_its_target_is_written);
    RUN(planted_temporary_name_is_not_followed);
    RUN(fifo_is_written_in_place_or_refused);
    RUN(character_device_is_written_not_replaced);
    RUN(directory_is_refused);
    RUN(dash_writes_standard_output);
    RUN(copy_file_atomic_copies_bytes);
    RUN(inputs_that_are_not_regular_files_are_refused_at_once);
    rmdir(dir);
    return test_summary();
}
