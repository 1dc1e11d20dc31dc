#include "train/optimizer.h"

#include <math.h>
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

double tuna_grad_global_norm(const tuna_param_table *t) {
    /* torch computes per-tensor norms, then the norm of those; in double
     * here the order makes no visible difference. */
    double total = 0.0;
    for (int i = 0; i < t->count; i++) {
        const tuna_param *p = &t->items[i];
        if (!p->grad) continue;
        double s = 0.0;
        for (int64_t k = 0; k < p->numel; k++) s += (double)p->grad[k] * (double)p->grad[k];
        total += s;
    }
    return sqrt(total);
}

double tuna_clip_grad_norm(tuna_param_table *t, double max_norm) {
    double norm = tuna_grad_global_norm(t);
    if (max_norm <= 0 || !isfinite(norm)) return norm;
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef >= 1.0f) return norm; /* torch multiplies by 1.0: identical */
    for (int i = 0; i < t->count; i++) {
        tuna_param *p = &t->items[i];
        if (!p->grad) continue;
        for (int64_t k = 0; k < p->numel; k++) p->grad[k] *= coef;
    }
    return norm;
}

void tuna_adamw_step(tuna_optimizer *opt, tuna_param_table *t, double lr) {
    const tuna_optimizer_config *c = &opt->config;
    opt->step++;
    double k = (double)opt->step;
    /* Scalars are computed in double (Python floats) and rounded to f32 where
     * torch's f32 kernels take them. */
    float decay = (float)(1.0 - lr * c->weight_decay);
    float one_minus_b1 = (float)(1.0 - c->beta1);
    float b2 = (float)c->beta2, one_minus_b2 = (float)(1.0 - c->beta2);
    double bias1 = 1.0 - pow(c->beta1, k);
    double bias2 = 1.0 - pow(c->beta2, k);
    float step_size = (float)(lr / bias1);
    float bias2_sqrt = (float)sqrt(bias2);
    float eps = (float)c->eps;
    for (int i = 0; i < t->count; i++) {
        tuna_param *p = &t->items[i];
        if (!p->grad) continue;
        float *w = p->weight, *g = p->grad, *m = p->m, *v = p->v;
        for (int64_t j = 0; j < p->numel; j++) {
            w[j] *= decay;
            m[j] = m[j] + one_minus_b1 * (g[j] - m[j]);
            v[j] = v[j] * b2 + one_minus_b2 * (g[j] * g[j]);
            float denom = sqrtf(v[j]) / bias2_sqrt + eps;
            w[j] = w[j] + (-step_size) * (m[j] / denom);
        }
    }
}

double tuna_ema_decay_at(const tuna_optimizer_config *c, int64_t n) {
    if (!c->ema_lit_warmup) return c->ema_decay;
    double ramp = (1.0 + (double)n) / (10.0 + (double)n);
    return ramp < c->ema_decay ? ramp : c->ema_decay;
}

void tuna_ema_update(tuna_optimizer *opt, tuna_param_table *t) {
    if (opt->config.ema_decay <= 0) return;
    opt->ema_updates++;
    int64_t n = opt->ema_updates;
    float weight = (float)(1.0 - tuna_ema_decay_at(&opt->config, n));
    for (int i = 0; i < t->count; i++) {
        tuna_param *p = &t->items[i];
        if (!p->ema) continue;
        if (n == 1) { /* AveragedModel's first update copies */
            memcpy(p->ema, p->weight, (size_t)p->numel * sizeof(float));
            continue;
        }
        for (int64_t j = 0; j < p->numel; j++) p->ema[j] = p->ema[j] + weight * (p->weight[j] - p->ema[j]);
    }
}
