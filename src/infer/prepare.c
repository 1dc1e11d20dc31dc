#include "infer/prepare.h"
#include "infer/prompts.h"
#include "model/layout.h"
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
    tuna_status s;
    /* a GGUF model carries its tokenizer.json: used unless -t names another */
    const char *embedded =
        tokenizer_path ? NULL : tuna_checkpoint_metadata(model->checkpoint, "tokenizer.huggingface.json");
    if (embedded) {
        s = tuna_tokenizer_load_json(embedded, strlen(embedded), tokenizer, err);
        if (s != TUNA_OK) tuna_fail_context(err, s, "the tokenizer.huggingface.json metadata");
    } else {
        const char *tok =
            tuna_tokenizer_for_model(tokenizer_path, tuna_checkpoint_dir(model->checkpoint), buf, sizeof buf);
        s = tok ? tuna_tokenizer_load(tok, tokenizer, err)
                : tuna_fail(err, TUNA_ERR_IO, "no tokenizer found (give one with -t FILE)");
        if (s == TUNA_OK) s = tuna_tokenizer_check_model(*tokenizer, &model->config, err);
        if (s != TUNA_OK && tok) tuna_fail_context(err, s, "%s", tok);
    }
    if (s == TUNA_OK && embedded) s = tuna_tokenizer_check_model(*tokenizer, &model->config, err);
    if (s != TUNA_OK) {
        tuna_tokenizer_free(*tokenizer);
        *tokenizer = NULL;
        tuna_model_free(model);
    }
    return s;
}

tuna_status tuna_weight_dtype_from_name(const char *name, tuna_dtype *dtype, tuna_error *err) {
    if (strcmp(name, "f32") == 0) *dtype = TUNA_F32;
    else if (strcmp(name, "bf16") == 0) *dtype = TUNA_BF16;
    else return tuna_fail(err, TUNA_ERR_INVALID, "weight dtype %s: use f32 or bf16", name);
    return TUNA_OK;
}

void tuna_pick_image_size(const tuna_config *c, int image_h, int image_w, const tuna_image_request *want,
                          int *height, int *width) {
    int patch = c->patch_size;
    if (want && want->height > 0 && want->width > 0) {
        *height = want->height;
        *width = want->width;
    } else if (!(want && want->native) && (c->image_size_count > 0 || patch == 16)) {
        tuna_bucket sizes[TUNA_CONFIG_MAX_IMAGE_SIZES];
        int n = c->image_size_count;
        for (int k = 0; k < n; k++) sizes[k] = (tuna_bucket){c->image_sizes[k].height, c->image_sizes[k].width};
        if (tuna_image_pick_bucket(image_w, image_h, n ? sizes : tuna_buckets_512, n ? n : 5, height, width) < 0) {
            *height = n ? sizes[0].height : 512;
            *width = n ? sizes[0].width : 512;
        }
    } else {
        *height = image_h / patch * patch;
        *width = image_w / patch * patch;
        if (*height < patch) *height = patch;
        if (*width < patch) *width = patch;
    }
}

void tuna_default_generation_size(const tuna_config *c, int *height, int *width) {
    if (c->image_size_count > 0) {
        *height = c->image_sizes[0].height;
        *width = c->image_sizes[0].width;
    } else {
        *height = *width = c->patch_size == 16 ? 512 : 8 * c->patch_size;
    }
}

const char *tuna_default_negative(const tuna_config *c, int edit) {
    if (c->has_negative_prompt) return c->negative_prompt;
    return edit ? tuna_default_negative_edit : tuna_default_negative_t2i;
}

tuna_status tuna_prepare_image(const char *path, const tuna_config *c, const tuna_image_request *want, float **chw,
                               int *height, int *width, tuna_error *err) {
    int patch = c->patch_size;
    tuna_image img = {0}, sized = {0};
    *chw = NULL;
    TUNA_TRY(tuna_image_decode_file(path, NULL, &img, err));
    tuna_pick_image_size(c, img.height, img.width, want, height, width);
    tuna_status s = TUNA_OK;
    if (*height < patch || *width < patch || *height % patch || *width % patch)
        s = tuna_fail(err, TUNA_ERR_INVALID, "image size %dx%d (WxH) is not a positive multiple of the patch size %d",
                      *width, *height, patch);
    if (s == TUNA_OK) s = tuna_image_resize_crop(&img, *height, *width, &sized, err);
    if (s == TUNA_OK) {
        *chw = malloc(sizeof(float) * 3 * (size_t)*height * *width);
        if (*chw) tuna_image_to_tensor(&sized, *chw);
        else s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for a %dx%d image", *width, *height);
    }
    tuna_image_free(&img);
    tuna_image_free(&sized);
    return s;
}
