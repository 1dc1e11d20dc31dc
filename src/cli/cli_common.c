#include "cli/cli_common.h"
#include "io/image.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const char *cli_model_path(const char *given, char *buf, size_t cap) {
    if (given) return given;
    const char *env = getenv("TUNA_MODEL");
    if (env && *env) return env;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(buf, cap, "%s/../models/tuna2-small", exe);
        if (is_directory(buf)) return buf;
    }
    snprintf(buf, cap, "models/tuna2-small");
    return buf;
}

static const char *tokenizer_path(const char *given, const char *model_dir, char *buf, size_t cap) {
    if (given) return given;
    snprintf(buf, cap, "%s/tokenizer.json", model_dir);
    if (is_file(buf)) return buf;
    snprintf(buf, cap, "%s/tokenizer.json.gz", model_dir);
    if (is_file(buf)) return buf;
    return tuna_tokenizer_default_path(buf, cap);
}

int cli_load_model(const char *model_arg, const char *tokenizer_arg, tuna_model *model, tuna_tokenizer **tokenizer,
                   const char *command) {
    char model_buf[4096], tok_buf[4096];
    const char *dir = cli_model_path(model_arg, model_buf, sizeof model_buf);
    tuna_error err = {0};
    if (tuna_model_load(dir, model, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        if (!model_arg) fprintf(stderr, "tuna %s: give a model with -m DIR (or set TUNA_MODEL)\n", command);
        return 1;
    }
    const char *tok = tokenizer_path(tokenizer_arg, is_directory(dir) ? dir : ".", tok_buf, sizeof tok_buf);
    if (!tok) {
        fprintf(stderr, "tuna %s: no tokenizer found (give one with -t FILE)\n", command);
        tuna_model_free(model);
        return 1;
    }
    if (tuna_tokenizer_load(tok, tokenizer, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        tuna_model_free(model);
        return 1;
    }
    return 0;
}

int cli_apply_dtype(tuna_model *model, const char *dtype_name, const char *command) {
    if (!dtype_name) return 0;
    tuna_dtype dtype;
    if (strcmp(dtype_name, "f32") == 0) dtype = TUNA_F32;
    else if (strcmp(dtype_name, "bf16") == 0) dtype = TUNA_BF16;
    else {
        fprintf(stderr, "tuna %s: --dtype %s: use f32 or bf16\n", command, dtype_name);
        return 1;
    }
    tuna_error err = {0};
    if (tuna_model_set_weight_dtype(model, dtype, &err) != TUNA_OK) {
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

static void pick_size(const tuna_image *img, int patch, int want_h, int want_w, int *height, int *width) {
    if (want_h > 0) {
        *height = want_h;
        *width = want_w;
    } else if (patch == 16) {
        tuna_image_pick_bucket(img->width, img->height, tuna_buckets_512, 5, height, width);
    } else {
        *height = img->height / patch * patch;
        *width = img->width / patch * patch;
    }
}

int cli_load_image(const char *path, int patch, int want_h, int want_w, float **chw, int *height, int *width,
                   const char *command) {
    tuna_error err = {0};
    tuna_image img = {0}, sized = {0};
    if (tuna_image_decode_file(path, NULL, &img, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        return 1;
    }
    pick_size(&img, patch, want_h, want_w, height, width);
    if (*height < patch || *width < patch || *height % patch || *width % patch) {
        fprintf(stderr, "tuna %s: image size %dx%d is not a positive multiple of the patch size %d\n", command,
                *height, *width, patch);
        tuna_image_free(&img);
        return 1;
    }
    int rc = 0;
    if (tuna_image_resize_crop(&img, *height, *width, &sized, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", command, err.message);
        rc = 1;
    } else {
        *chw = malloc(sizeof(float) * 3 * (size_t)*height * *width);
        if (*chw) tuna_image_to_tensor(&sized, *chw);
        else rc = 1;
    }
    tuna_image_free(&img);
    tuna_image_free(&sized);
    return rc;
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
