/* The one place where the model's loss-and-gradients implementation
 * (tuna_model_loss_and_gradients, src/model/train_step.h) is wired into the
 * trainer (tuna_train_model_bind in trainer.h).
 *
 * Two tuna_models are bound over the parameter table: one to the f32 master
 * weights (param->weight), one to the gradient buffers (param->grad; NULL data
 * for frozen parameters, which the backward then skips). Both stay valid for
 * the whole run: the optimizer updates the buffers in place.
 *
 * Batches of several sequences run one sequence per thread when the pool has
 * more than one ("sample parallel"): small models make GEMMs too thin to split
 * well, whole sequences do not. Thread r > 0 adds its gradients into a replica
 * of the gradient buffers, summed into param->grad in replica order after the
 * batch, so a run is deterministic for a fixed thread count. Replicas cost
 * 4 bytes per trainable parameter each; over REPLICA_BYTES_MAX in all the
 * batch runs sequence after sequence with every thread on each. */
#include "train/trainer.h"

#include "core/tensor.h"
#include "model/train_step.h"
#include "model/tuna2.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_REPLICAS = 64 };
#define REPLICA_BYTES_MAX ((size_t)1 << 30)

struct binding;

/* Gradient buffers of one extra thread (sample parallel). */
typedef struct {
    struct binding *owner;
    float *storage;       /* every trainable parameter's gradient, one block */
    tuna_tensor *grads;   /* [params->count] views into storage (NULL data: frozen) */
    tuna_model gmodel;
    int bound;
    tuna_workspace workspace; /* this thread's activations, reused from step to step */
} replica;

typedef struct binding {
    tuna_param_table *params;
    tuna_config config;
    tuna_tensor *weights, *grads; /* [params->count] views */
    tuna_model model, gmodel;
    tuna_threads threads;
    tuna_workspace workspace; /* activation memory reused from step to step */
    int bound_model, bound_gmodel;
    replica *replicas; /* [replica_count]: threads 1.. of a sample-parallel batch */
    int replica_count;
} binding;

static const tuna_tensor *find_in(const binding *b, const tuna_tensor *views, const char *name) {
    for (int i = 0; i < b->params->count; i++)
        if (strcmp(b->params->items[i].name, name) == 0) return &views[i];
    return NULL;
}
/* A trainable (or converted) parameter's f32 master, or a frozen one as stored. */
static const tuna_tensor *find_weight(void *ctx, const char *name) {
    binding *b = ctx;
    const tuna_tensor *view = find_in(b, b->weights, name);
    if (!view) return NULL;
    const tuna_param *p = &b->params->items[view - b->weights];
    return p->weight ? view : p->stored;
}
static const tuna_tensor *find_grad(void *ctx, const char *name) {
    binding *b = ctx;
    return find_in(b, b->grads, name);
}

static const tuna_tensor *find_replica_grad(void *ctx, const char *name) {
    replica *r = ctx;
    return find_in(r->owner, r->grads, name);
}

static void replicas_free(binding *b) {
    for (int i = 0; i < b->replica_count; i++) {
        replica *r = &b->replicas[i];
        if (r->bound) tuna_model_free(&r->gmodel);
        tuna_workspace_free(&r->workspace);
        free(r->grads);
        free(r->storage);
    }
    free(b->replicas);
    b->replicas = NULL;
    b->replica_count = 0;
}

static void binding_destroy(void *ctx) {
    binding *b = ctx;
    if (!b) return;
    replicas_free(b);
    if (b->bound_model) tuna_model_free(&b->model);
    if (b->bound_gmodel) tuna_model_free(&b->gmodel);
    tuna_workspace_free(&b->workspace);
    free(b->weights);
    free(b->grads);
    free(b);
}

/* One sequence: gradients into gmodel's buffers (NULL: losses only), activations in ws. */
static tuna_status sample_loss_grad(binding *b, const tuna_model *gmodel, tuna_workspace *ws,
                                    const tuna_threads *pool, const tuna_train_sample *s, float grad_scale,
                                    tuna_loss_values *out, tuna_error *err) {
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
    tuna_backend be = tuna_backend_cpu(pool);
    tuna_status st =
        tuna_model_loss_and_gradients(&b->model, gmodel, &ex, grad_scale, NULL, &be, ws, &losses, err);
    free(segments);
    if (st != TUNA_OK) return st;
    out->loss = losses.loss;
    out->ce = losses.loss_ce;
    out->flow = losses.loss_flow;
    out->ce_tokens = losses.ce_tokens;
    out->flow_elements = losses.flow_elements;
    return TUNA_OK;
}

static tuna_status binding_loss(void *ctx, const tuna_train_sample *s, tuna_loss_values *out, tuna_error *err) {
    binding *b = ctx;
    return sample_loss_grad(b, NULL, &b->workspace, &b->threads, s, 1.0f, out, err);
}

static tuna_status binding_loss_grad(void *ctx, const tuna_train_sample *s, float grad_scale, tuna_loss_values *out,
                                     tuna_error *err) {
    binding *b = ctx;
    return sample_loss_grad(b, &b->gmodel, &b->workspace, &b->threads, s, grad_scale, out, err);
}

/* Make (once) the replicas threads 1..count-1 need; none when they would not fit
 * under REPLICA_BYTES_MAX (the caller then runs the batch sequentially). */
static tuna_status replicas_ensure(binding *b, int count, tuna_error *err) {
    if (b->replica_count >= count - 1) return TUNA_OK;
    size_t floats = 0;
    for (int i = 0; i < b->params->count; i++)
        if (b->params->items[i].grad) floats += (size_t)b->params->items[i].numel;
    if (floats * sizeof(float) * (size_t)(count - 1) > REPLICA_BYTES_MAX) return TUNA_OK;
    replicas_free(b);
    b->replicas = calloc((size_t)(count - 1), sizeof *b->replicas);
    if (!b->replicas) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    b->replica_count = count - 1;
    for (int k = 0; k < count - 1; k++) {
        replica *r = &b->replicas[k];
        r->owner = b;
        r->storage = calloc(floats ? floats : 1, sizeof(float));
        r->grads = calloc((size_t)(b->params->count ? b->params->count : 1), sizeof *r->grads);
        tuna_backend cpu = tuna_backend_cpu(NULL);
        tuna_workspace_init(&r->workspace, &cpu);
        if (!r->storage || !r->grads) {
            replicas_free(b);
            return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the gradient replicas");
        }
        float *next = r->storage;
        for (int i = 0; i < b->params->count; i++) {
            const tuna_param *p = &b->params->items[i];
            tuna_tensor_init_view(&r->grads[i], TUNA_F32, p->ndim, p->shape, p->grad ? next : NULL);
            if (p->grad) next += p->numel;
        }
        tuna_status st = tuna_model_bind(&r->gmodel, &b->config, find_replica_grad, r, err);
        if (st != TUNA_OK) {
            replicas_free(b);
            return st;
        }
        r->bound = 1;
    }
    return TUNA_OK;
}

typedef struct {
    binding *b;
    const tuna_train_sample *samples;
    int count, workers;
    float grad_scale;
    tuna_loss_values *out;
    tuna_status status[MAX_REPLICAS + 1];
    tuna_error errors[MAX_REPLICAS + 1];
} batch_job;

/* Worker w takes sequences w, w + workers, ... with a one-thread pool. */
static void batch_worker(void *ctx, long begin, long end) {
    batch_job *j = ctx;
    const tuna_threads one = {1};
    for (long w = begin; w < end; w++) {
        const tuna_model *gmodel = w == 0 ? &j->b->gmodel : &j->b->replicas[w - 1].gmodel;
        tuna_workspace *ws = w == 0 ? &j->b->workspace : &j->b->replicas[w - 1].workspace;
        for (int i = (int)w; i < j->count && j->status[w] == TUNA_OK; i += j->workers)
            j->status[w] = sample_loss_grad(j->b, gmodel, ws, &one, &j->samples[i], j->grad_scale, &j->out[i],
                                            &j->errors[w]);
    }
}

/* param->grad += replica grads (replica order), replicas back to zero. */
static void reduce_replicas(void *ctx, long begin, long end) {
    binding *b = ctx;
    for (long i = begin; i < end; i++) {
        tuna_param *p = &b->params->items[i];
        if (!p->grad) continue;
        for (int k = 0; k < b->replica_count; k++) {
            float *g = (float *)b->replicas[k].grads[i].data;
            tuna_vec_acc(p->grad, g, p->numel);
            memset(g, 0, (size_t)p->numel * sizeof(float));
        }
    }
}

static tuna_status binding_loss_grad_batch(void *ctx, const tuna_train_sample *samples, int count, float grad_scale,
                                           tuna_loss_values *out, tuna_error *err) {
    binding *b = ctx;
    int workers = b->threads.count < count ? b->threads.count : count;
    if (workers > MAX_REPLICAS + 1) workers = MAX_REPLICAS + 1;
    if (workers > 1) TUNA_TRY(replicas_ensure(b, workers, err));
    if (workers <= 1 || b->replica_count < workers - 1) { /* one sequence after another */
        for (int i = 0; i < count; i++) TUNA_TRY(binding_loss_grad(b, &samples[i], grad_scale, &out[i], err));
        return TUNA_OK;
    }
    batch_job *job = calloc(1, sizeof *job);
    if (!job) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    *job = (batch_job){.b = b, .samples = samples, .count = count, .workers = workers, .grad_scale = grad_scale,
                       .out = out};
    tuna_threads team = {workers};
    tuna_parallel_for(&team, workers, batch_worker, job);
    tuna_status st = TUNA_OK;
    for (int w = 0; w < workers && st == TUNA_OK; w++)
        if (job->status[w] != TUNA_OK) {
            st = job->status[w];
            if (err) *err = job->errors[w];
        }
    if (st == TUNA_OK) tuna_parallel_for(&b->threads, b->params->count, reduce_replicas, b);
    free(job);
    return st;
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
    tuna_backend cpu = tuna_backend_cpu(NULL);
    tuna_workspace_init(&b->workspace, &cpu);
    if (!b->weights || !b->grads) {
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
    out->loss_and_grad_batch = binding_loss_grad_batch;
    out->loss = binding_loss;
    out->destroy = binding_destroy;
    out->name = "tuna2";
    return TUNA_OK;
}
