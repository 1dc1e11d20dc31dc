#include "train/optimizer.h"
#include "ops/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void tuna_optimizer_config_default(tuna_optimizer_config *c) {
    memset(c, 0, sizeof *c);
    c->learning_rate = 2e-5;
    c->beta1 = 0.9;
    c->beta2 = 0.95;
    c->eps = 1e-8;
    c->weight_decay = 0.01;
    c->max_grad_norm = 1.0;
    c->warmup_steps = 1000;
    c->schedule = TUNA_LR_CONSTANT;
    c->total_steps = 0;
    c->min_lr = 0.0;
    c->ema_decay = 0.9999;
    c->ema_lit_warmup = 1;
}

void tuna_optimizer_init(tuna_optimizer *opt, const tuna_optimizer_config *config) {
    memset(opt, 0, sizeof *opt);
    opt->config = *config;
}

double tuna_lr_at(const tuna_optimizer_config *c, int64_t step) {
    if (step < 0) step = 0;
    if (c->warmup_steps > 0 && step < c->warmup_steps)
        return c->learning_rate * (double)step / (double)c->warmup_steps;
    if (c->schedule == TUNA_LR_COSINE && c->total_steps > c->warmup_steps) {
        double span = (double)(c->total_steps - c->warmup_steps);
        double progress = (double)(step - c->warmup_steps) / span;
        if (progress > 1.0) progress = 1.0;
        return c->min_lr + 0.5 * (c->learning_rate - c->min_lr) * (1.0 + cos(M_PI * progress));
    }
    return c->learning_rate;
}

/* ---- element-wise passes over every trainable tensor ------------------------
 * The optimizer passes are memory-bound loops over millions of floats: they
 * are cut into chunks of CHUNK elements numbered across the whole table and
 * the chunks are spread over the pool; each chunk runs the backend's element
 * kernel (ops: adamw, sum_squares, scale, ema) on one thread. Per-element
 * arithmetic does not depend on the split, and reductions are summed per
 * chunk then in chunk order, so results are identical for every thread count. */
enum { CHUNK = 1 << 16 };

typedef void (*chunk_fn)(void *ctx, tuna_param *p, int64_t begin, int64_t end, int64_t chunk_index);

typedef struct {
    tuna_param_table *table;
    int need_ema; /* 0: tensors with a grad, 1: tensors with an EMA */
    chunk_fn fn;
    void *ctx;
} chunk_job;

static int selected(const tuna_param *p, int need_ema) { return need_ema ? p->ema != NULL : p->grad != NULL; }

static int64_t count_chunks(const tuna_param_table *t, int need_ema) {
    int64_t n = 0;
    for (int i = 0; i < t->count; i++)
        if (selected(&t->items[i], need_ema)) n += (t->items[i].numel + CHUNK - 1) / CHUNK;
    return n;
}

static void chunk_range(void *ctx, long begin, long end) {
    chunk_job *j = ctx;
    int64_t first = 0; /* global index of the current tensor's first chunk */
    for (int i = 0; i < j->table->count && first < end; i++) {
        tuna_param *p = &j->table->items[i];
        if (!selected(p, j->need_ema)) continue;
        int64_t n = (p->numel + CHUNK - 1) / CHUNK;
        for (int64_t c = begin > first ? begin - first : 0; c < n && first + c < end; c++) {
            int64_t e = (c + 1) * CHUNK < p->numel ? (c + 1) * CHUNK : p->numel;
            j->fn(j->ctx, p, c * CHUNK, e, first + c);
        }
        first += n;
    }
}

static void for_each_chunk(const tuna_threads *pool, tuna_param_table *t, int need_ema, chunk_fn fn, void *ctx) {
    chunk_job job = {t, need_ema, fn, ctx};
    int64_t n = count_chunks(t, need_ema);
    if (pool)
        tuna_parallel_for(pool, (long)n, chunk_range, &job);
    else
        chunk_range(&job, 0, (long)n);
}

/* The element kernels run inside a chunk: the CPU backend on the calling thread. */
static tuna_backend chunk_backend(void) { return tuna_backend_cpu(NULL); }

static void squares_chunk(void *ctx, tuna_param *p, int64_t begin, int64_t end, int64_t index) {
    double *sums = ctx;
    tuna_backend be = chunk_backend();
    sums[index] = be.ops->sum_squares(&be, p->grad + begin, end - begin);
}

double tuna_grad_global_norm(const tuna_param_table *t, const tuna_threads *pool) {
    /* torch computes per-tensor norms, then the norm of those; in double
     * here the order makes no visible difference. */
    int64_t n = count_chunks(t, 0);
    double *sums = calloc((size_t)(n > 0 ? n : 1), sizeof(double)), total = 0.0;
    if (!sums) { /* no memory for the partial sums: one serial pass */
        for (int i = 0; i < t->count; i++)
            if (t->items[i].grad)
                for (int64_t k = 0; k < t->items[i].numel; k++)
                    total += (double)t->items[i].grad[k] * (double)t->items[i].grad[k];
        return sqrt(total);
    }
    for_each_chunk(pool, (tuna_param_table *)t, 0, squares_chunk, sums);
    for (int64_t c = 0; c < n; c++) total += sums[c];
    free(sums);
    return sqrt(total);
}

static void scale_chunk(void *ctx, tuna_param *p, int64_t begin, int64_t end, int64_t index) {
    (void)index;
    tuna_backend be = chunk_backend();
    be.ops->scale(&be, p->grad + begin, *(const float *)ctx, end - begin);
}

double tuna_clip_grad_norm(tuna_param_table *t, double max_norm, const tuna_threads *pool) {
    double norm = tuna_grad_global_norm(t, pool);
    if (max_norm <= 0 || !isfinite(norm)) return norm;
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef >= 1.0f) return norm; /* torch multiplies by 1.0: identical */
    for_each_chunk(pool, t, 0, scale_chunk, &coef);
    return norm;
}

static void adamw_chunk(void *ctx, tuna_param *p, int64_t begin, int64_t end, int64_t index) {
    (void)index;
    tuna_backend be = chunk_backend();
    be.ops->adamw(&be, p->weight + begin, p->m + begin, p->v + begin, p->grad + begin, end - begin, ctx);
}

void tuna_adamw_step(tuna_optimizer *opt, tuna_param_table *t, double lr) {
    const tuna_optimizer_config *c = &opt->config;
    opt->step++;
    double k = (double)opt->step;
    /* Scalars are computed in double (Python floats) and rounded to f32 where
     * torch's f32 kernels take them. */
    tuna_adamw_scalars a = {
        .decay = (float)(1.0 - lr * c->weight_decay),
        .one_minus_b1 = (float)(1.0 - c->beta1),
        .b2 = (float)c->beta2,
        .one_minus_b2 = (float)(1.0 - c->beta2),
        .step_size = (float)(lr / (1.0 - pow(c->beta1, k))),
        .bias2_sqrt = (float)sqrt(1.0 - pow(c->beta2, k)),
        .eps = (float)c->eps,
    };
    for_each_chunk(opt->pool, t, 0, adamw_chunk, &a);
}

double tuna_ema_decay_at(const tuna_optimizer_config *c, int64_t n) {
    if (!c->ema_lit_warmup) return c->ema_decay;
    double ramp = (1.0 + (double)n) / (10.0 + (double)n);
    return ramp < c->ema_decay ? ramp : c->ema_decay;
}

static void ema_chunk(void *ctx, tuna_param *p, int64_t begin, int64_t end, int64_t index) {
    (void)index;
    tuna_backend be = chunk_backend();
    be.ops->ema(&be, p->ema + begin, p->weight + begin, *(const float *)ctx, end - begin);
}

static void ema_copy_chunk(void *ctx, tuna_param *p, int64_t begin, int64_t end, int64_t index) {
    (void)ctx, (void)index;
    tuna_backend be = chunk_backend();
    be.ops->copy(&be, p->ema + begin, p->weight + begin, (size_t)(end - begin) * sizeof(float));
}

void tuna_ema_update(tuna_optimizer *opt, tuna_param_table *t) {
    if (opt->config.ema_decay <= 0) return;
    opt->ema_updates++;
    int64_t n = opt->ema_updates;
    float weight = (float)(1.0 - tuna_ema_decay_at(&opt->config, n));
    /* AveragedModel's first update copies */
    for_each_chunk(opt->pool, t, 1, n == 1 ? ema_copy_chunk : ema_chunk, &weight);
}
