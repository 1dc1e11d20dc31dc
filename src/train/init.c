#include "train/init.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "model/config_json.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_UNIFORM } init_kind;

typedef struct {
    init_kind kind;
    float scale; /* std for NORMAL, bound for UNIFORM */
} init_rule;

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }
static int has_suffix(const char *s, const char *x) {
    size_t n = strlen(s), m = strlen(x);
    return n >= m && strcmp(s + n - m, x) == 0;
}

/* fan_in of a weight: everything but the first dimension. */
static float fan_in(const tuna_expected_tensor *e) {
    int64_t f = 1;
    for (int i = 1; i < e->ndim; i++) f *= e->shape[i];
    return (float)f;
}

static init_rule rule_for(const tuna_expected_tensor *e, const tuna_config *c) {
    const char *n = e->name;
    if (strstr(n, "norm")) return (init_rule){INIT_ONE, 0};
    if (strcmp(n, "mask_token") == 0) return (init_rule){INIT_NORMAL, 1.0f / sqrtf((float)c->hidden_size)};
    if (has_prefix(n, "tuna.")) return (init_rule){has_suffix(n, ".bias") ? INIT_ZERO : INIT_NORMAL, 0.02f};
    if (has_prefix(n, "vision_encoder.patch_embedding.")) {
        if (has_suffix(n, ".bias")) return (init_rule){INIT_ZERO, 0};
        float fan_out = (float)e->shape[0], fin = fan_in(e);
        return (init_rule){INIT_UNIFORM, sqrtf(6.0f / (fin + fan_out))}; /* xavier on [d, C*p*p] */
    }
    if (has_prefix(n, "time_embed.")) {
        if (has_suffix(n, ".weight")) return (init_rule){INIT_NORMAL, 0.02f};
        return (init_rule){INIT_UNIFORM, 0}; /* bound set by the caller from the weight's fan_in */
    }
    if (has_prefix(n, "diffusion_head_b.") || strstr(n, "adaLN_modulation")) return (init_rule){INIT_ZERO, 0};
    if (has_prefix(n, "diffusion_head_a.")) return (init_rule){INIT_UNIFORM, 1.0f / sqrtf(fan_in(e))};
    return (init_rule){INIT_NORMAL, 0.02f};
}

static void fill(float *data, int64_t n, init_rule r, tuna_rng *rng) {
    for (int64_t i = 0; i < n; i++) {
        switch (r.kind) {
        case INIT_ZERO: data[i] = 0.0f; break;
        case INIT_ONE: data[i] = 1.0f; break;
        case INIT_NORMAL: data[i] = r.scale * tuna_rng_normal(rng); break;
        case INIT_UNIFORM: data[i] = r.scale * (2.0f * tuna_rng_uniform(rng) - 1.0f); break;
        }
    }
}

/* Time MLP biases: PyTorch's default U(+-1/sqrt(fan_in)) of their Linear. */
static float time_bias_bound(const tuna_config *c, const char *name) {
    return 1.0f / sqrtf(strstr(name, "mlp.0.") ? (float)c->time_freq_dim : (float)c->hidden_size);
}

/* mkdir -p */
static int make_directories(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && access(path, F_OK) != 0) return 0;
        *p = '/';
    }
    return mkdir(path, 0755) == 0 || access(path, W_OK) == 0;
}

tuna_status tuna_init_checkpoint(const tuna_config *c, unsigned long long seed, const char *dir, tuna_error *err) {
    TUNA_TRY(tuna_config_validate(c, err));
    tuna_expected_tensor *list = NULL;
    size_t count = 0;
    TUNA_TRY(tuna_config_expected_tensors(c, &list, &count, err));
    tuna_tensor *tensors = calloc(count, sizeof *tensors);
    const char **names = calloc(count, sizeof *names);
    tuna_status s = tensors && names ? TUNA_OK : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    for (size_t i = 0; s == TUNA_OK && i < count; i++) {
        s = tuna_tensor_alloc(&tensors[i], TUNA_F32, list[i].ndim, list[i].shape, err);
        if (s != TUNA_OK) break;
        init_rule r = rule_for(&list[i], c);
        if (r.kind == INIT_UNIFORM && r.scale == 0) r.scale = time_bias_bound(c, list[i].name);
        fill(tensors[i].data, tuna_tensor_numel(&tensors[i]), r, &rng);
        names[i] = list[i].name;
    }
    char path[4096];
    if (s == TUNA_OK && !make_directories(dir))
        s = tuna_fail(err, TUNA_ERR_IO, "cannot create directory %s", dir);
    if (s == TUNA_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        s = tuna_safetensors_write(path, tensors, names, count, NULL, err);
    }
    if (s == TUNA_OK) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        s = tuna_config_save(path, c, err);
    }
    for (size_t i = 0; tensors && i < count; i++) tuna_tensor_free(&tensors[i]);
    free(tensors);
    free(names);
    free(list);
    return s;
}
