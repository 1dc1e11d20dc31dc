/* Re-initialising units as a foundation release would (restore.h): the
 * damage that `tuna restore detect` must find and `tuna restore` repairs. */
#include "train/restore.h"
#include "core/tensor.h"
#include "model/config_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rule_names[TUNA_INIT_RULE_COUNT] = {"normal", "kaiming", "xavier", "adaln-zero", "mixed"};

const char *tuna_init_rule_name(tuna_init_rule r) {
    return r >= 0 && r < TUNA_INIT_RULE_COUNT ? rule_names[r] : "?";
}

int tuna_init_rule_from_name(const char *name, tuna_init_rule *out) {
    for (int r = 0; r < TUNA_INIT_RULE_COUNT; r++)
        if (strcmp(name, rule_names[r]) == 0) return *out = (tuna_init_rule)r, 1;
    return 0;
}

static int ends_with(const char *s, const char *x) {
    size_t n = strlen(s), m = strlen(x);
    return n >= m && strcmp(s + n - m, x) == 0;
}

static void fill_uniform(float *x, int64_t n, float bound, tuna_rng *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = bound * (2.0f * tuna_rng_uniform(rng) - 1.0f);
}

static void fill_normal(float *x, int64_t n, float std, tuna_rng *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = std * tuna_rng_normal(rng);
}

static void fill_constant(float *x, int64_t n, float value) {
    for (int64_t i = 0; i < n; i++) x[i] = value;
}

/* fan_in / fan_out of the matrix a tensor belongs to (a bias: its weight's). */
static void fans(const tuna_expected_tensor *list, size_t count, const tuna_expected_tensor *e, double *fan_in,
                 double *fan_out) {
    const tuna_expected_tensor *w = e;
    if (e->ndim == 1 && ends_with(e->name, ".bias")) {
        char name[96];
        snprintf(name, sizeof name, "%.*s.weight", (int)(strlen(e->name) - 5), e->name);
        for (size_t i = 0; i < count; i++)
            if (strcmp(list[i].name, name) == 0) w = &list[i];
    }
    double in = 1;
    for (int d = 1; d < w->ndim; d++) in *= (double)w->shape[d];
    *fan_in = in;
    *fan_out = (double)w->shape[0];
}

static void reinit(const tuna_expected_tensor *list, size_t count, const tuna_expected_tensor *e, tuna_tensor *t,
                   tuna_init_rule rule, tuna_rng *rng) {
    float *x = t->data;
    int64_t n = tuna_tensor_numel(t);
    double fan_in, fan_out;
    fans(list, count, e, &fan_in, &fan_out);
    int adaln = strstr(e->name, "adaLN_modulation") != NULL;
    if (rule == TUNA_INIT_ADALN_ZERO && adaln)
        fill_constant(x, n, 0.0f);
    else if (e->ndim == 1 && strstr(e->name, "norm"))
        fill_constant(x, n, 1.0f);
    else if (e->ndim == 1 && ends_with(e->name, ".bias") && rule != TUNA_INIT_KAIMING)
        fill_constant(x, n, 0.0f);
    else if (e->ndim == 1 && ends_with(e->name, ".bias"))
        fill_uniform(x, n, (float)(1.0 / sqrt(fan_in)), rng);
    else if (rule == TUNA_INIT_NORMAL)
        fill_normal(x, n, 0.02f, rng);
    else if (rule == TUNA_INIT_KAIMING)
        fill_uniform(x, n, (float)(1.0 / sqrt(fan_in)), rng);
    else /* xavier (DiT blocks) */
        fill_uniform(x, n, (float)sqrt(6.0 / (fan_in + fan_out)), rng);
}

int tuna_restore_damage(const tuna_config *c, const char *prefix, tuna_init_rule rule, tuna_rng *rng,
                        tuna_tensor_mut_lookup_fn get, void *ctx) {
    tuna_expected_tensor *list = NULL;
    size_t count = 0;
    if (tuna_config_expected_tensors(c, &list, &count, NULL) != TUNA_OK) return 0;
    int done = 0;
    for (size_t i = 0; i < count; i++) {
        if (!tuna_restore_in_unit(list[i].name, prefix)) continue;
        tuna_tensor *t = get(ctx, list[i].name);
        if (!t || t->dtype != TUNA_F32) continue;
        tuna_init_rule r = rule;
        if (r == TUNA_INIT_MIXED) r = (tuna_init_rule)(tuna_rng_uniform(rng) * TUNA_INIT_MIXED) % TUNA_INIT_MIXED;
        reinit(list, count, &list[i], t, r, rng);
        done++;
    }
    free(list);
    return done;
}
