#include "model/gradients.h"
#include "core/tensor.h"

#include <stdlib.h>
#include <string.h>

const tuna_tensor *tuna_gradients_find(const tuna_gradients *g, const char *name) {
    for (size_t i = 0; i < g->count; i++)
        if (strcmp(g->list[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static const tuna_tensor *lookup(void *ctx, const char *name) { return tuna_gradients_find(ctx, name); }

tuna_status tuna_gradients_init(tuna_gradients *g, const tuna_config *config, tuna_trainable_fn trainable, void *ctx,
                                tuna_error *err) {
    memset(g, 0, sizeof *g);
    TUNA_TRY(tuna_config_expected_tensors(config, &g->list, &g->count, err));
    g->tensors = calloc(g->count, sizeof *g->tensors);
    tuna_status s = g->tensors ? TUNA_OK : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; s == TUNA_OK && i < g->count; i++) {
        const tuna_expected_tensor *e = &g->list[i];
        if (trainable && !trainable(ctx, e->name)) {
            tuna_tensor_init_view(&g->tensors[i], TUNA_F32, e->ndim, e->shape, NULL);
            continue;
        }
        s = tuna_tensor_alloc(&g->tensors[i], TUNA_F32, e->ndim, e->shape, err);
    }
    if (s == TUNA_OK) s = tuna_model_bind(&g->model, config, lookup, g, err);
    if (s != TUNA_OK) tuna_gradients_free(g);
    return s;
}

void tuna_gradients_free(tuna_gradients *g) {
    for (size_t i = 0; g->tensors && i < g->count; i++) tuna_tensor_free(&g->tensors[i]);
    free(g->tensors);
    free(g->list);
    tuna_model_free(&g->model);
    memset(g, 0, sizeof *g);
}

void tuna_gradients_zero(tuna_gradients *g) {
    for (size_t i = 0; i < g->count; i++)
        if (g->tensors[i].data) memset(g->tensors[i].data, 0, tuna_tensor_nbytes(&g->tensors[i]));
}
