/* `tuna serve` driven by real clients against an in-process server on the
 * bundled model:
 *   openai_python_client  the official `openai` Python package, unmodified
 *                         (tools/serve_openai_test.py, from the venv of
 *                         tools/setup_serve_venv.sh)
 *   playground_chromium   the playground page in headless Chromium (Debian
 *                         `chromium`): its #selftest streams a chat about a
 *                         drawn image and generates two images into the
 *                         gallery; the DOM must say "pass"; a screenshot is
 *                         saved to BUILD/tests/serve-playground.png
 * Each prints SKIP when its dependency is missing, and fails instead when
 * TUNA_REQUIRE_SERVE_CLIENTS is set (.ci/run installs both and sets it). */
#include "test.h"

#include "serve_client.h"

#include <sys/stat.h>
#include <sys/wait.h>

static serve_fixture F;

static int required(void) { return getenv("TUNA_REQUIRE_SERVE_CLIENTS") != NULL; }

static void own_dir(char *buf, size_t cap) {
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash) *slash = '\0';
}

static int run_logged(const char *cmd, const char *log) {
    char full[8192];
    snprintf(full, sizeof full, "%s > %s 2>&1", cmd, log);
    int rc = system(full);
    if (rc != 0) {
        snprintf(full, sizeof full, "tail -25 %s >&2", log);
        if (system(full) != 0) fprintf(stderr, "  (no log)\n");
    }
    return rc;
}

TEST(openai_python_client) {
    const char *py = getenv("TUNA_SERVE_PYTHON");
    if (!py) py = "out/venv-serve/bin/python";
    if (access(py, X_OK) != 0) {
        printf("  SKIP openai_python_client: no %s (run tools/setup_serve_venv.sh; CI does)\n", py);
        CHECK(!required(), "TUNA_REQUIRE_SERVE_CLIENTS is set but %s is missing", py);
        return;
    }
    char cmd[4096], log[256];
    snprintf(log, sizeof log, "/tmp/tuna-serve-openai.%d.log", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "%s tools/serve_openai_test.py --base-url http://127.0.0.1:%d/v1 --api-key test-key "
             "--image models/tuna2-small/demo/count.png",
             py, F.port);
    double t0 = client_now();
    int rc = run_logged(cmd, log);
    CHECK(rc == 0, "tools/serve_openai_test.py failed (status %d)", rc);
    if (rc == 0) printf("  openai client checks passed in %.1f s\n", client_now() - t0);
    unlink(log);
}

static const char *find_chromium(void) {
    static const char *names[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"};
    const char *env = getenv("TUNA_CHROMIUM");
    if (env) return access(env, X_OK) == 0 ? env : NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (access(names[i], X_OK) == 0) return names[i];
    return NULL;
}

TEST(playground_chromium) {
    const char *chromium = find_chromium();
    if (!chromium || access("/usr/bin/python3", X_OK) != 0) {
        printf("  SKIP playground_chromium: no chromium or python3 (apt-get install chromium; CI does)\n");
        CHECK(!required(), "TUNA_REQUIRE_SERVE_CLIENTS is set but chromium is missing");
        return;
    }
    char dir[4096], shot[4200], cmd[8192], log[256];
    own_dir(dir, sizeof dir);
    snprintf(shot, sizeof shot, "%s/serve-playground.png", dir);
    snprintf(log, sizeof log, "/tmp/tuna-serve-browser.%d.log", (int)getpid());
    unlink(shot);
    snprintf(cmd, sizeof cmd,
             "timeout 120 /usr/bin/python3 tools/serve_browser_test.py --chromium %s --url http://127.0.0.1:%d/ "
             "--screenshot %s",
             chromium, F.port, shot);
    double t0 = client_now();
    int rc = run_logged(cmd, log);
    CHECK(rc == 0, "tools/serve_browser_test.py failed (status %d)", rc);
    struct stat sb;
    CHECK(stat(shot, &sb) == 0 && sb.st_size > 10000, "screenshot %s", shot);
    if (rc == 0) printf("  chromium self-test passed in %.1f s; screenshot: %s\n", client_now() - t0, shot);
    unlink(log);
}

int main(void) {
    if (serve_fixture_load(&F) != 0) {
        printf("FAIL serve fixture\nRESULT passed=0 failed=1\n");
        return 1;
    }
    tuna_server_options o;
    tuna_server_default_options(&o);
    o.api_key = "test-key";
    if (serve_fixture_start(&F, 8, 64, &o) != 0) return 1;
    RUN(openai_python_client);
    serve_fixture_stop(&F);
    if (serve_fixture_start(&F, 8, 64, NULL) != 0) return 1;
    RUN(playground_chromium);
    serve_fixture_free(&F);
    return test_summary();
}
