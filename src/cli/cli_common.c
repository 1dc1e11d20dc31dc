#include "cli/cli_common.h"
#include "io/image.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int cli_parse_size(const char *text, int *height, int *width) {
    char extra;
    if (sscanf(text, "%dx%d%c", height, width, &extra) != 2 || *height <= 0 || *width <= 0 || *height > 16384 ||
        *width > 16384)
        return 1;
    return 0;
}

int cli_load_image(const char *path, int patch, int want_h, int want_w, float **chw, int *height, int *width,
                   const char *command) {
    tuna_error err = {0};
    if (tuna_prepare_image(path, patch, want_h, want_w, chw, height, width, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        return 1;
    }
    return 0;
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

void cli_progress_step(void *ctx, int step, int steps, double step_seconds) {
    cli_progress *p = ctx;
    p->total_seconds += step_seconds;
    int width = 30, filled = steps ? step * width / steps : width;
    double eta = p->total_seconds / step * (steps - step);
    fprintf(stderr, "\r%s %3d/%-3d [", p->label ? p->label : "", step, steps);
    for (int i = 0; i < width; i++) fputc(i < filled ? '=' : ' ', stderr);
    fprintf(stderr, "] %.2f s/step, ETA %.0f s   ", step_seconds, eta);
    if (step == steps) fputc('\n', stderr);
    fflush(stderr);
}
