#include "cli/cli_common.h"
#include "io/image.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_load_model(const char *model_arg, const char *tokenizer_arg, tuna_model *model, tuna_tokenizer **tokenizer,
                   const char *command) {
    char buf[4096];
    const char *dir = tuna_model_dir(model_arg, buf, sizeof buf);
    tuna_error err = {0};
    if (tuna_load_model_and_tokenizer(dir, tokenizer_arg, model, tokenizer, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        struct stat st;
        if (!model_arg && stat(dir, &st) != 0)
            fprintf(stderr, "tuna %s: give a model with -m DIR (or set TUNA_MODEL)\n", command);
        return 1;
    }
    return 0;
}

int cli_apply_dtype(tuna_model *model, const char *dtype_name, const char *command) {
    if (!dtype_name) return 0;
    tuna_dtype dtype;
    tuna_error err = {0};
    if (tuna_weight_dtype_from_name(dtype_name, &dtype, &err) != TUNA_OK ||
        tuna_model_set_weight_dtype(model, dtype, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: --dtype %s: %s\n", command, dtype_name, err.message);
        return 1;
    }
    return 0;
}

static int bad_value(const char *command, const char *option, const char *text, const char *why) {
    fprintf(stderr, "tuna %s: %s '%s': %s\n", command, option, text, why);
    return 2;
}

int cli_i64(const char *command, const char *option, const char *text, long long min, long long max,
            long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*text || isspace((unsigned char)*text) || *end) return bad_value(command, option, text, "not an integer");
    if (errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "tuna %s: %s '%s': out of range [%lld, %lld]\n", command, option, text, min, max);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_int(const char *command, const char *option, const char *text, long long min, long long max, int *out) {
    long long v;
    if (min < INT_MIN) min = INT_MIN;
    if (max > INT_MAX) max = INT_MAX;
    if (cli_i64(command, option, text, min, max, &v)) return 2;
    *out = (int)v;
    return 0;
}

int cli_seed(const char *command, const char *option, const char *text, unsigned long long *out) {
    if (!*text || strspn(text, "0123456789") != strlen(text))
        return bad_value(command, option, text, "a seed is a non-negative integer");
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno == ERANGE) return bad_value(command, option, text, "out of range [0, 2^64-1]");
    *out = v;
    return 0;
}

int cli_float(const char *command, const char *option, const char *text, double min, double max, float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (!*text || isspace((unsigned char)*text) || *end) return bad_value(command, option, text, "not a number");
    if (!isfinite(v) || errno == ERANGE) return bad_value(command, option, text, "not a finite number");
    if (v < min || v > max) {
        fprintf(stderr, "tuna %s: %s '%s': out of range [%g, %g]\n", command, option, text, min, max);
        return 2;
    }
    *out = (float)v;
    return 0;
}

int cli_parse_size(const char *text, int *height, int *width) {
    char extra;
    int w, h;
    if (sscanf(text, "%dx%d%c", &w, &h, &extra) != 2 || w <= 0 || h <= 0 || w > CLI_MAX_SIDE || h > CLI_MAX_SIDE ||
        strspn(text, "0123456789x") != strlen(text))
        return 1;
    *height = h;
    *width = w;
    return 0;
}

int cli_size(const char *command, const char *text, int *width, int *height, int *native) {
    if (strcmp(text, "native") == 0) {
        *native = 1;
        return 0;
    }
    const char *x = strchr(text, 'x');
    char w[32];
    if (!x || (size_t)(x - text) >= sizeof w) return bad_value(command, "--size", text, "use WxH (e.g. 512x384) or native");
    snprintf(w, sizeof w, "%.*s", (int)(x - text), text);
    if (cli_int(command, "--size width", w, 1, CLI_MAX_SIDE, width) ||
        cli_int(command, "--size height", x + 1, 1, CLI_MAX_SIDE, height))
        return 2;
    *native = 0;
    return 0;
}

int cli_load_image(const char *path, const tuna_config *config, const tuna_image_request *want, float **chw,
                   int *height, int *width, const char *command) {
    tuna_error err = {0};
    if (tuna_prepare_image(path, config, want, chw, height, width, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        return 1;
    }
    return 0;
}

int cli_check_output(const char *command, const char *path) {
    if (strcmp(path, "-") == 0) return 0;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "tuna %s: output %s is a directory\n", command, path);
        return 1;
    }
    if (stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) return 0; /* written in place */
    char *copy = strdup(path);
    if (!copy) return 1;
    char *slash = strrchr(copy, '/');
    const char *dir = slash ? (slash == copy ? "/" : (*slash = '\0', copy)) : ".";
    int rc = 0;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "tuna %s: output directory %s does not exist\n", command, dir);
        rc = 1;
    } else if (access(dir, W_OK) != 0) {
        fprintf(stderr, "tuna %s: output directory %s is not writable\n", command, dir);
        rc = 1;
    }
    free(copy);
    return rc;
}

int cli_check_output_dir(const char *command, const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0 && mkdir(dir, 0755) != 0) {
        fprintf(stderr, "tuna %s: cannot create %s: %s\n", command, dir, strerror(errno));
        return 1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK) != 0) {
        fprintf(stderr, "tuna %s: %s is not a writable directory\n", command, dir);
        return 1;
    }
    return 0;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cli_save_image(const char *path, const float *chw, int height, int width, const char *command) {
    tuna_error err = {0};
    tuna_image img = {0};
    tuna_status s = tuna_image_from_tensor(chw, height, width, &img, &err);
    if (s == TUNA_OK) s = tuna_image_write_png(path, &img, &err);
    tuna_image_free(&img);
    if (s != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        return 1;
    }
    return 0;
}

void cli_indexed_path(const char *path, int k, int n, char *buf, size_t cap) {
    if (n <= 1) {
        snprintf(buf, cap, "%s", path);
        return;
    }
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) {
        snprintf(buf, cap, "%s-%d", path, k);
        return;
    }
    snprintf(buf, cap, "%.*s-%d%s", (int)(dot - path), path, k, dot);
}

void cli_progress_begin(cli_progress *p, int quiet) {
    p->total_seconds = 0;
    p->quiet = quiet;
    p->tty = isatty(STDERR_FILENO);
    p->last_percent = -1;
    p->last_print = cli_now();
}

void cli_progress_step(void *ctx, int step, int steps, double step_seconds) {
    cli_progress *p = ctx;
    p->total_seconds += step_seconds;
    if (p->quiet) return;
    double eta = step ? p->total_seconds / step * (steps - step) : 0;
    const char *label = p->label ? p->label : "";
    if (!p->tty) { /* a log: a plain line every 10% (or 5 s), and the last step */
        int percent = steps ? step * 100 / steps : 100;
        double now = cli_now();
        if (step == steps || percent / 10 > p->last_percent / 10 || now - p->last_print >= 5) {
            fprintf(stderr, "%s: step %d/%d, %.2f s/step, ETA %.0f s\n", label, step, steps, step_seconds, eta);
            p->last_percent = percent;
            p->last_print = now;
        }
        return;
    }
    int width = 30, filled = steps ? step * width / steps : width;
    fprintf(stderr, "\r%s %3d/%-3d [", label, step, steps);
    for (int i = 0; i < width; i++) fputc(i < filled ? '=' : ' ', stderr);
    fprintf(stderr, "] %.2f s/step, ETA %.0f s   ", step_seconds, eta);
    if (step == steps) fputc('\n', stderr);
    fflush(stderr);
}
