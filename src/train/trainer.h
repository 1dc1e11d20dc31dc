/* The training loop (`tuna train`) and its interface to the model's backward.
 *
 * The trainer owns a parameter table (src/train/params.h: name -> f32 master
 * weight, f32 gradient or NULL when frozen, shape) and asks the model for the
 * loss and gradients of one sequence through tuna_train_model. One optimizer
 * step = grad_accum micro-batches, each a batch of B sequences of one stream
 * (src/train/data.h); every sequence's gradients are added with weight
 * 1/(B*grad_accum), so the step's gradient is the mean over its sequences
 * (torchtnt divides the loss by the accumulation count the same way; within a
 * batch the reference pools tokens, we average per sequence: identical for
 * B = 1, the reference default for t2i/edit/mmu). Then clip to max_grad_norm,
 * AdamW with the scheduled lr, EMA update, metrics, and a checkpoint every
 * save_every steps (src/train/checkpoint.h). A non-finite gradient norm skips
 * the update (logged, counted). */
#ifndef TUNA_TRAIN_TRAINER_H
#define TUNA_TRAIN_TRAINER_H

#include "core/status.h"
#include "core/threads.h"
#include "model/config.h"
#include "train/data.h"
#include "train/optimizer.h"
#include "train/params.h"

/* The losses of one sequence (SPEC section 9): loss = ce + flow, a missing
 * part counts 0. ce_tokens: positions i with labels[i+1] != -100;
 * flow_elements: elements of the flow images. */
typedef struct {
    double loss, ce, flow;
    int64_t ce_tokens;
    int64_t flow_elements;
} tuna_loss_values;

/* The interface the model implements (src/train/model_binding.c):
 * compute the losses of one sequence and ADD grad_scale * d(loss)/d(param) into
 * param->grad for every parameter of the table bound at creation whose grad is
 * not NULL (frozen parameters have grad == NULL: skip them). Never zero the
 * gradients (the trainer does, once per optimizer step) and never write to
 * param->weight. Training mode: the sample's masks replace patch embeddings by
 * mask_token; the sample's t and images are used as given (no extra noise).
 * Must be deterministic for a fixed thread count (the resume guarantee).
 * Returns non-OK (with a message) on failure; the trainer then stops. */
typedef tuna_status (*tuna_loss_grad_fn)(void *ctx, const tuna_train_sample *sample, float grad_scale,
                                         tuna_loss_values *out, tuna_error *err);

/* Optional: the losses of count sequences at once, gradients ADDED as by
 * count calls of loss_and_grad (out[i] for samples[i]); the model may run the
 * sequences concurrently. Same contract otherwise (deterministic for a fixed
 * thread count). */
typedef tuna_status (*tuna_loss_grad_batch_fn)(void *ctx, const tuna_train_sample *samples, int count,
                                               float grad_scale, tuna_loss_values *out, tuna_error *err);

typedef struct {
    void *ctx;
    tuna_loss_grad_fn loss_and_grad;
    tuna_loss_grad_batch_fn loss_and_grad_batch; /* may be NULL */
    /* The losses of one sequence without gradients (probes, evaluation). */
    tuna_status (*loss)(void *ctx, const tuna_train_sample *sample, tuna_loss_values *out, tuna_error *err);
    void (*destroy)(void *ctx); /* may be NULL */
    const char *name;           /* for the log */
} tuna_train_model;

/* Bind the model code to a parameter table (src/train/model_binding.c: the one
 * place where the model's gradient implementation is wired in). The table's
 * weight buffers never move during training, so views into them stay valid;
 * the optimizer updates them in place between calls. */
tuna_status tuna_train_model_bind(const tuna_config *config, tuna_param_table *params, const tuna_threads *threads,
                                  tuna_train_model *out, tuna_error *err);

typedef struct {
    tuna_optimizer_config optim;
    int64_t max_steps;        /* optimizer steps in total (resume counts the ones done) */
    int grad_accum;           /* gradient_accumulation_steps (1) */
    int64_t save_every;       /* 500; 0: only at the end */
    int keep_last;            /* 3; 0 keeps all */
    const char *output_dir;   /* checkpoints, metrics.jsonl */
    int save_bf16;            /* model/EMA weights stored as BF16 (masters stay f32 in the optimizer file) */
    int log_every;            /* progress line every N steps (1) */
    int quiet;                /* no progress lines */
    int resume;               /* 1: continue from the latest complete checkpoint in output_dir (default) */
    int64_t stop_after;       /* testing: return after this many steps in this call (0: no limit) */
    double max_seconds;       /* budget of this call: stop (and save) after the step that reaches it (0: none) */
    const tuna_threads *threads; /* runs the optimizer's element-wise passes (NULL: serial; same results) */
    const char *tokenizer_path;  /* copied into every checkpoint (tokenizer.json[.gz]), so that each is a
                                    complete model; NULL: none */
} tuna_trainer_config;

void tuna_trainer_config_default(tuna_trainer_config *c);

typedef struct {
    int64_t start_step;       /* step resumed from (0 = fresh) */
    int64_t final_step;
    int64_t skipped_updates;  /* non-finite gradient norms */
    double last_loss;
    int64_t tokens;           /* sequence positions trained on in this call */
} tuna_trainer_result;

/* Run (or resume) training. params must be set up (tuna_param_table_setup_training,
 * with EMA buffers when optim.ema_decay > 0). model_config (may be NULL) is
 * written as config.json beside every checkpoint's weights. data_config's seed
 * and streams define the data; on resume the loader continues from the
 * checkpoint's saved position. */
tuna_status tuna_trainer_run(const tuna_trainer_config *config, tuna_param_table *params, tuna_train_model *model,
                             const tuna_data_config *data_config, const tuna_config *model_config,
                             tuna_trainer_result *result, tuna_error *err);

#endif
