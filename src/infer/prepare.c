#include "infer/prepare.h"
#include "io/image.h"

#include <stdio.h>
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

const char *tuna_model_dir(const char *given, char *buf, size_t cap) {
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

const char *tuna_tokenizer_for_model(const char *given, const char *model_dir, char *buf, size_t cap) {
    if (given) return given;
    snprintf(buf, cap, "%s/tokenizer.json", model_dir);
    if (is_file(buf)) return buf;
    snprintf(buf, cap, "%s/tokenizer.json.gz", model_dir);
    if (is_file(buf)) return buf;
    return tuna_tokenizer_default_path(buf, cap);
}

tuna_status tuna_load_model_and_tokenizer(const char *model_dir, const char *tokenizer_path, tuna_model *model,
                                          tuna_tokenizer **tokenizer, tuna_error *err) {
    char buf[4096];
    *tokenizer = NULL;
    TUNA_TRY(tuna_model_load(model_dir, model, err));
    /* a GGUF model carries its tokenizer.json: used unless -t names another */
    const char *embedded = tokenizer_path ? NULL : tuna_checkpoint_metadata(model->checkpoint, "tokenizer.huggingface.json");
    if (embedded) {
        tuna_status s = tuna_tokenizer_load_json(embedded, strlen(embedded), tokenizer, err);
        if (s != TUNA_OK) {
            tuna_model_free(model);
            return tuna_fail_context(err, s, "the tokenizer.huggingface.json metadata");
        }
        return TUNA_OK;
    }
    const char *tok = tuna_tokenizer_for_model(tokenizer_path, tuna_checkpoint_dir(model->checkpoint), buf, sizeof buf);
    tuna_status s = tok ? tuna_tokenizer_load(tok, tokenizer, err)
                        : tuna_fail(err, TUNA_ERR_IO, "no tokenizer found (give one with -t FILE)");
    if (s != TUNA_OK) tuna_model_free(model);
    return s;
}

tuna_status tuna_weight_dtype_from_name(const char *name, tuna_dtype *dtype, tuna_error *err) {
    if (strcmp(name, "f32") == 0) *dtype = TUNA_F32;
    else if (strcmp(name, "bf16") == 0) *dtype = TUNA_BF16;
    else return tuna_fail(err, TUNA_ERR_INVALID, "weight dtype %s: use f32 or bf16", name);
    return TUNA_OK;
}

void tuna_pick_image_size(int image_h, int image_w, int patch, int want_h, int want_w, int *height, int *width) {
    if (want_h > 0) {
        *height = want_h;
        *width = want_w;
    } else if (patch == 16) {
        tuna_image_pick_bucket(image_w, image_h, tuna_buckets_512, 5, height, width);
    } else {
        *height = image_h / patch * patch;
        *width = image_w / patch * patch;
    }
}

tuna_status tuna_prepare_image(const char *path, int patch, int want_h, int want_w, float **chw, int *height,
                               int *width, tuna_error *err) {
    tuna_image img = {0}, sized = {0};
    *chw = NULL;
    TUNA_TRY(tuna_image_decode_file(path, NULL, &img, err));
    tuna_pick_image_size(img.height, img.width, patch, want_h, want_w, height, width);
    tuna_status s = TUNA_OK;
    if (*height < patch || *width < patch || *height % patch || *width % patch)
        s = tuna_fail(err, TUNA_ERR_INVALID, "image size %dx%d is not a positive multiple of the patch size %d",
                      *height, *width, patch);
    if (s == TUNA_OK) s = tuna_image_resize_crop(&img, *height, *width, &sized, err);
    if (s == TUNA_OK) {
        *chw = malloc(sizeof(float) * 3 * (size_t)*height * *width);
        if (*chw) tuna_image_to_tensor(&sized, *chw);
        else s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for a %dx%d image", *height, *width);
    }
    tuna_image_free(&img);
    tuna_image_free(&sized);
    return s;
}
