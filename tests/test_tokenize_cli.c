/* `tuna tokenize` end to end: JSON lines in and out, error lines naming the line
 * number, exit status 1 when a line failed. Runs the `tuna` binary of the same
 * build directory as this test (BUILD/tests/.. /tuna). */
#include "test.h"

#include <sys/wait.h>
#include <unistd.h>

static char tuna_bin[4200];

static int run(const char *input, const char *args, char *out, size_t cap) {
    char in_path[] = "/tmp/tuna_test_tokenize_XXXXXX";
    int fd = mkstemp(in_path);
    if (fd < 0) return -1;
    if (write(fd, input, strlen(input)) != (ssize_t)strlen(input)) return -1;
    close(fd);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' tokenize %s < %s 2>/dev/null", tuna_bin, args, in_path);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, cap - 1, p) : 0;
    out[n] = 0;
    int status = p ? pclose(p) : -1;
    unlink(in_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(encode_lines) {
    char out[4096];
    int rc = run("{\"text\": \"Hello world\"}\n\n{\"text\": \"<|im_start|>user\\n<image>\"}\n", "", out, sizeof out);
    CHECK(rc == 0, "exit %d", rc);
    CHECK(strcmp(out, "{\"ids\":[9707,1879]}\n{\"ids\":[151644,872,198,151666]}\n") == 0, "got:\n%s", out);
}

TEST(decode_lines) {
    char out[4096];
    int rc = run("{\"ids\": [9707, 1879]}\n{\"ids\": [151644, 9707]}\n", "--decode --skip-special", out, sizeof out);
    CHECK(rc == 0, "exit %d", rc);
    CHECK(strcmp(out, "{\"text\":\"Hello world\"}\n{\"text\":\"Hello\"}\n") == 0, "got:\n%s", out);
}

TEST(bad_lines_get_error_lines_and_status_1) {
    char out[4096];
    int rc = run("{\"text\": \"a\"}\nnot json\n{\"ids\": [1]}\n{\"text\": \"b\"}\n", "", out, sizeof out);
    CHECK(rc == 1, "exit %d", rc);
    CHECK(strstr(out, "{\"ids\":[64]}\n{\"line\":2,\"error\":") == out, "got:\n%s", out);
    CHECK(strstr(out, "{\"line\":3,\"error\":") && strstr(out, "{\"ids\":[65]}\n"), "got:\n%s", out);
    rc = run("{\"ids\": [1, 999999]}\n{\"ids\": [1.5]}\n", "--decode", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "\"line\":1") && strstr(out, "\"line\":2"), "exit %d got:\n%s", rc, out);
    rc = run("", "--no-such-option", out, sizeof out);
    CHECK(rc == 2, "usage error exit %d", rc);
}

int main(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 1;
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(tuna_bin, sizeof tuna_bin, "%s/../tuna", exe);
    RUN(encode_lines);
    RUN(decode_lines);
    RUN(bad_lines_get_error_lines_and_status_1);
    return test_summary();
}
