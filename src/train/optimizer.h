/* AdamW, gradient clipping, learning-rate schedule and EMA (SPEC section 5),
 * over the trainable entries of a tuna_param_table (src/train/params.h).
 *
 * Semantics follow PyTorch so that runs can be compared with the reference:
 *   AdamW          torch.optim.AdamW (single-tensor path, f32 arithmetic):
 *                    p *= 1 - lr*wd                       (decoupled decay)
 *                    m  = lerp(m, g, 1 - b1)              m + (1-b1)(g - m)
 *                    v  = b2*v + (1-b2) g^2
 *                    p -= lr/(1-b1^k) * m / (sqrt(v)/sqrt(1-b2^k) + eps)
 *   clipping       torch.nn.utils.clip_grad_norm_: total = ||all grads||_2,
 *                    g *= min(1, max_norm / (total + 1e-6))
 *   schedule       LambdaLR(constant_lr_with_warmup) of the reference: the
 *                    update with index k (0-based) uses lr * min(1, k/warmup),
 *                    so the very first update has lr 0; then constant, or cosine
 *                    from lr down to min_lr at total_steps.
 *   EMA            torchtnt AveragedModel(ema, use_lit=True) as the reference's
 *                    SWAParams: update n (1-based) copies the weights when n = 1,
 *                    else ema = lerp(ema, w, 1 - d), d = min(decay, (1+n)/(10+n)).
 *                    With lit_warmup = 0 the decay is constant. */
#ifndef TUNA_TRAIN_OPTIMIZER_H
#define TUNA_TRAIN_OPTIMIZER_H

#include "core/threads.h"
#include "train/params.h"

typedef enum { TUNA_LR_CONSTANT = 0, TUNA_LR_COSINE } tuna_lr_schedule;

typedef struct {
    double learning_rate;   /* 2e-5 (reference fine-tuning) */
    double beta1, beta2;    /* 0.9, 0.95 */
    double eps;             /* 1e-8 */
    double weight_decay;    /* 0.01 */
    double max_grad_norm;   /* 1.0; <= 0 disables clipping */
    int64_t warmup_steps;   /* 1000 */
    tuna_lr_schedule schedule;
    int64_t total_steps;    /* cosine: where the schedule reaches min_lr */
    double min_lr;          /* cosine floor */
    double ema_decay;       /* 0.9999; <= 0 disables EMA */
    int ema_lit_warmup;     /* 1: torchtnt use_lit decay ramp (reference) */
} tuna_optimizer_config;

/* The defaults of SPEC section 5. */
void tuna_optimizer_config_default(tuna_optimizer_config *c);

typedef struct {
    tuna_optimizer_config config;
    int64_t step;           /* updates done so far (torch's state["step"]) */
    int64_t ema_updates;    /* EMA updates done so far */
    const tuna_threads *pool; /* runs the element-wise passes; NULL: serial (results are the same) */
} tuna_optimizer;

void tuna_optimizer_init(tuna_optimizer *opt, const tuna_optimizer_config *config);

/* Learning rate of the update with index step (0-based). */
double tuna_lr_at(const tuna_optimizer_config *c, int64_t step);

/* sqrt(sum of squares) over every gradient buffer (double accumulation);
 * pool may be NULL (the result does not depend on it). */
double tuna_grad_global_norm(const tuna_param_table *t, const tuna_threads *pool);

/* clip_grad_norm_: returns the norm before clipping. max_norm <= 0: no-op.
 * A non-finite norm is returned as is and the gradients are left alone
 * (the caller skips the update). */
double tuna_clip_grad_norm(tuna_param_table *t, double max_norm, const tuna_threads *pool);

/* One AdamW update with learning rate lr on every trainable parameter; step++. */
void tuna_adamw_step(tuna_optimizer *opt, tuna_param_table *t, double lr);

/* One EMA update (no-op when EMA is disabled); ema_updates++. */
void tuna_ema_update(tuna_optimizer *opt, tuna_param_table *t);

/* The decay the next EMA update (number n = ema_updates + 1) will use. */
double tuna_ema_decay_at(const tuna_optimizer_config *c, int64_t n);

#endif
