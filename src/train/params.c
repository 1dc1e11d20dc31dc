#include "train/params.h"

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/cpu/quant.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

static float *alloc_floats(int64_t n) {
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

tuna_param *tuna_param_table_find(const tuna_param_table *t, const char *name) {
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->items[i].name, name) == 0) return &t->items[i];
    return NULL;
}

/* A new entry; its f32 weight allocated (zeros) when with_weight. */
static tuna_status add_entry(tuna_param_table *t, const char *name, int ndim, const int64_t *shape, int with_weight,
                             tuna_error *err) {
    if (ndim < 0 || ndim > TUNA_PARAM_MAX_DIMS)
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "parameter %s has %d dimensions (at most %d)", name, ndim,
                         TUNA_PARAM_MAX_DIMS);
    if (tuna_param_table_find(t, name)) return tuna_fail(err, TUNA_ERR_INVALID, "duplicate parameter %s", name);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && numel > INT64_MAX / 4 / shape[d]))
            return tuna_fail(err, TUNA_ERR_LIMIT, "parameter %s: bad shape", name);
        numel *= shape[d];
    }
    if (t->count == t->capacity) {
        int cap = t->capacity ? 2 * t->capacity : 64;
        tuna_param *items = realloc(t->items, (size_t)cap * sizeof *items);
        if (!items) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for parameter table");
        t->items = items;
        t->capacity = cap;
    }
    tuna_param *p = &t->items[t->count];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    p->weight = with_weight ? alloc_floats(numel) : NULL;
    if (!p->name || (with_weight && !p->weight)) {
        free(p->name);
        free(p->weight);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for parameter %s", name);
    }
    p->ndim = ndim;
    for (int d = 0; d < ndim; d++) p->shape[d] = shape[d];
    p->numel = numel;
    t->count++;
    return TUNA_OK;
}

tuna_status tuna_param_table_add(tuna_param_table *t, const char *name, int ndim, const int64_t *shape,
                                 const float *init, tuna_error *err) {
    TUNA_TRY(add_entry(t, name, ndim, shape, 1, err));
    tuna_param *p = &t->items[t->count - 1];
    if (init) memcpy(p->weight, init, (size_t)p->numel * sizeof(float));
    return TUNA_OK;
}

/* src widened (F32/BF16/F16) or dequantised row by row into w. */
static tuna_status widen(const char *name, const tuna_tensor *src, float *w, int64_t numel, tuna_error *err) {
    if (!tuna_dtype_is_quantized(src->dtype)) {
        for (int64_t k = 0; k < numel; k++) w[k] = tuna_tensor_get_f32(src, k);
        return TUNA_OK;
    }
    int64_t rows = src->shape[0], K = numel / rows;
    size_t row_bytes = (size_t)(K / tuna_dtype_block_size(src->dtype)) * tuna_dtype_block_bytes(src->dtype);
    for (int64_t r = 0; r < rows; r++)
        if (tuna_dequantize_row(src->dtype, (const char *)src->data + (size_t)r * row_bytes, w + r * K, K) != 0)
            return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "parameter %s: cannot read %s", name,
                             tuna_dtype_name(src->dtype));
    return TUNA_OK;
}

tuna_status tuna_param_widen_stored(const tuna_param *p, float *out, tuna_error *err) {
    if (!p->stored) return tuna_fail(err, TUNA_ERR_INTERNAL, "parameter %s has no stored tensor", p->name);
    return widen(p->name, p->stored, out, p->numel, err);
}

tuna_status tuna_param_table_from_checkpoint_frozen_in_place(tuna_param_table *t, const tuna_checkpoint *ck,
                                                             const tuna_freeze_rules *rules, tuna_error *err) {
    for (size_t i = 0; i < tuna_checkpoint_count(ck); i++) {
        const char *name = tuna_checkpoint_name(ck, i);
        const tuna_tensor *src = tuna_checkpoint_tensor(ck, i);
        int trainable = tuna_param_is_trainable(name, rules);
        TUNA_TRY(add_entry(t, name, src->ndim, src->shape, trainable, err));
        tuna_param *p = &t->items[t->count - 1];
        if (trainable) TUNA_TRY(widen(name, src, p->weight, p->numel, err));
        else p->stored = src;
    }
    return TUNA_OK;
}

tuna_status tuna_param_table_from_checkpoint(tuna_param_table *t, const tuna_checkpoint *ck, tuna_error *err) {
    for (size_t i = 0; i < tuna_checkpoint_count(ck); i++) {
        const char *name = tuna_checkpoint_name(ck, i);
        const tuna_tensor *src = tuna_checkpoint_tensor(ck, i);
        if (src->dtype != TUNA_F32 && src->dtype != TUNA_BF16 && src->dtype != TUNA_F16)
            return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "parameter %s has dtype %s (want F32/BF16/F16)", name,
                             tuna_dtype_name(src->dtype));
        TUNA_TRY(tuna_param_table_add(t, name, src->ndim, src->shape, NULL, err));
        tuna_param *p = &t->items[t->count - 1];
        for (int64_t k = 0; k < p->numel; k++) p->weight[k] = tuna_tensor_get_f32(src, k);
    }
    return TUNA_OK;
}

static void release_state(tuna_param *p) {
    free(p->grad);
    free(p->m);
    free(p->v);
    free(p->ema);
    p->grad = p->m = p->v = p->ema = NULL;
}

void tuna_param_table_free(tuna_param_table *t) {
    for (int i = 0; i < t->count; i++) {
        release_state(&t->items[i]);
        free(t->items[i].name);
        free(t->items[i].weight);
    }
    free(t->items);
    memset(t, 0, sizeof *t);
}

int tuna_param_is_trainable(const char *name, const tuna_freeze_rules *rules) {
    if (!rules) return 1;
    int trainable = 1;
    if (rules->train_only_count > 0) {
        trainable = 0;
        for (int i = 0; i < rules->train_only_count; i++)
            if (fnmatch(rules->train_only[i], name, 0) == 0) trainable = 1;
    }
    for (int i = 0; i < rules->freeze_count; i++)
        if (fnmatch(rules->freeze[i], name, 0) == 0) trainable = 0;
    return trainable;
}

tuna_status tuna_param_table_setup_training(tuna_param_table *t, const tuna_freeze_rules *rules, int with_ema,
                                            tuna_error *err) {
    int any = 0;
    for (int i = 0; i < t->count; i++) {
        tuna_param *p = &t->items[i];
        release_state(p);
        p->trainable = tuna_param_is_trainable(p->name, rules);
        if (!p->trainable) continue;
        if (!p->weight)
            return tuna_fail(err, TUNA_ERR_INVALID, "parameter %s is frozen in place and cannot train", p->name);
        any = 1;
        p->grad = alloc_floats(p->numel);
        p->m = alloc_floats(p->numel);
        p->v = alloc_floats(p->numel);
        if (with_ema) p->ema = alloc_floats(p->numel);
        if (!p->grad || !p->m || !p->v || (with_ema && !p->ema)) {
            release_state(p);
            return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the optimizer state of %s", p->name);
        }
        if (p->ema) memcpy(p->ema, p->weight, (size_t)p->numel * sizeof(float));
    }
    if (!any && t->count > 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "every parameter is frozen: nothing to train (check --freeze/--train-only)");
    return TUNA_OK;
}

void tuna_param_table_zero_grad(tuna_param_table *t) {
    for (int i = 0; i < t->count; i++)
        if (t->items[i].grad) memset(t->items[i].grad, 0, (size_t)t->items[i].numel * sizeof(float));
}

tuna_param_stats tuna_param_table_stats(const tuna_param_table *t) {
    tuna_param_stats s = {0};
    for (int i = 0; i < t->count; i++) {
        const tuna_param *p = &t->items[i];
        s.total += p->numel;
        s.tensors++;
        if (p->trainable) {
            s.trainable += p->numel;
            s.trainable_tensors++;
        }
        size_t b = (size_t)p->numel * sizeof(float);
        s.state_bytes += (p->grad ? b : 0) + (p->m ? b : 0) + (p->v ? b : 0) + (p->ema ? b : 0);
        s.master_bytes += p->weight ? b : 0;
    }
    return s;
}
