/* The one place where the model's loss-and-gradients implementation
 * (tuna_model_loss_and_gradients, src/model/train_step.h) is wired into the
 * trainer (tuna_train_model_bind in trainer.h).
 *
 * Two tuna_models are bound over the parameter table: one to the f32 master
 * weights (param->weight), one to the gradient buffers (param->grad; NULL data
 * for frozen parameters, which the backward then skips). Both stay valid for
 * the whole run: the optimizer updates the buffers in place. */
#include "train/trainer.h"

#include "core/tensor.h"
#include "model/train_step.h"
#include "model/tuna2.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    tuna_param_table *params;
    tuna_config config;
    tuna_tensor *weights, *grads; /* [params->count] views */
    tuna_model model, gmodel;
    tuna_threads threads;
    tuna_train_workspace *workspace; /* activation memory reused from step to step */
    int bound_model, bound_gmodel;
} binding;

static const tuna_tensor *find_in(const binding *b, const tuna_tensor *views, const char *name) {
    for (int i = 0; i < b->params->count; i++)
        if (strcmp(b->params->items[i].name, name) == 0) return &views[i];
    return NULL;
}
static const tuna_tensor *find_weight(void *ctx, const char *name) {
    binding *b = ctx;
    return find_in(b, b->weights, name);
}
static const tuna_tensor *find_grad(void *ctx, const char *name) {
    binding *b = ctx;
    return find_in(b, b->grads, name);
}

static void binding_destroy(void *ctx) {
    binding *b = ctx;
    if (!b) return;
    if (b->bound_model) tuna_model_free(&b->model);
    if (b->bound_gmodel) tuna_model_free(&b->gmodel);
    tuna_train_workspace_free(b->workspace);
    free(b->weights);
    free(b->grads);
    free(b);
}

static tuna_status binding_loss_grad(void *ctx, const tuna_train_sample *s, float grad_scale, tuna_loss_values *out,
                                     tuna_error *err) {
    binding *b = ctx;
    tuna_image_segment *segments = NULL;
    int found = 0;
    TUNA_TRY(tuna_find_segments(s->input_ids, s->length, &b->config, s->image_count, s->heights, s->widths, &segments,
                                &found, err));
    const float *images[TUNA_SAMPLE_MAX_IMAGES], *targets[TUNA_SAMPLE_MAX_IMAGES];
    const uint8_t *masks[TUNA_SAMPLE_MAX_IMAGES];
    for (int k = 0; k < s->image_count; k++) {
        images[k] = s->images[k];
        targets[k] = s->targets[k];
        masks[k] = s->masks[k];
    }
    tuna_sequence seq = {.ids = s->input_ids,
                         .length = s->length,
                         .image_count = s->image_count,
                         .segments = segments,
                         .images = s->image_count ? images : NULL,
                         .t = s->image_count ? s->t : NULL,
                         .masks = s->image_count ? masks : NULL};
    tuna_train_example ex = {.sequence = &seq,
                             .labels = s->labels,
                             .targets = s->image_count ? targets : NULL,
                             .flow_images = s->image_count ? s->flow : NULL};
    tuna_losses losses = {0};
    tuna_status st =
        tuna_model_loss_and_gradients_ws(&b->model, &b->gmodel, &ex, grad_scale, NULL, &b->threads, b->workspace,
                                         &losses, err);
    free(segments);
    if (st != TUNA_OK) return st;
    out->loss = losses.loss;
    out->ce = losses.loss_ce;
    out->flow = losses.loss_flow;
    out->ce_tokens = losses.ce_tokens;
    out->flow_elements = losses.flow_elements;
    return TUNA_OK;
}

tuna_status tuna_train_model_bind(const tuna_config *config, tuna_param_table *params, const tuna_threads *threads,
                                  tuna_train_model *out, tuna_error *err) {
    memset(out, 0, sizeof *out);
    binding *b = calloc(1, sizeof *b);
    if (!b) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    b->params = params;
    b->config = *config;
    if (threads) b->threads = *threads;
    else tuna_threads_init(&b->threads, 0);
    int n = params->count ? params->count : 1;
    b->weights = calloc((size_t)n, sizeof *b->weights);
    b->grads = calloc((size_t)n, sizeof *b->grads);
    b->workspace = tuna_train_workspace_create();
    if (!b->weights || !b->grads || !b->workspace) {
        binding_destroy(b);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < params->count; i++) {
        const tuna_param *p = &params->items[i];
        tuna_tensor_init_view(&b->weights[i], TUNA_F32, p->ndim, p->shape, p->weight);
        tuna_tensor_init_view(&b->grads[i], TUNA_F32, p->ndim, p->shape, p->grad); /* NULL data: frozen */
    }
    tuna_status st = tuna_model_bind(&b->model, config, find_weight, b, err);
    b->bound_model = st == TUNA_OK;
    if (st == TUNA_OK) st = tuna_model_bind(&b->gmodel, config, find_grad, b, err);
    b->bound_gmodel = st == TUNA_OK && b->bound_model;
    if (st != TUNA_OK) {
        binding_destroy(b);
        return tuna_fail_context(err, st, "binding the model to the trainer's parameters");
    }
    out->ctx = b;
    out->loss_and_grad = binding_loss_grad;
    out->destroy = binding_destroy;
    out->name = "tuna2";
    return TUNA_OK;
}
