/* The trainer's parameter table: every tensor of the state dict by its
 * official name (SPEC section 7), as an f32 master weight, with a gradient
 * buffer, AdamW moments and an EMA copy only when the parameter is trained.
 *
 * Buffers never move once allocated: the model code binds its weight views to
 * param->weight once and writes gradients into param->grad (NULL = frozen:
 * the model may skip that gradient entirely). Frozen parameters get no
 * gradient, no optimizer state and no EMA buffer (their EMA is the weight). */
#ifndef TUNA_TRAIN_PARAMS_H
#define TUNA_TRAIN_PARAMS_H

#include "core/status.h"
#include "io/checkpoint.h"

#include <stdint.h>

#define TUNA_PARAM_MAX_DIMS 4

typedef struct {
    char *name;                          /* official name, owned */
    int ndim;
    int64_t shape[TUNA_PARAM_MAX_DIMS];  /* torch layout (Linear weight [out, in]) */
    int64_t numel;
    float *weight;                       /* f32 master weight, owned, 64-byte aligned; NULL when frozen in place */
    const tuna_tensor *stored;           /* frozen in place: the checkpoint's tensor as stored (bf16, f16,
                                            block-quantised; memory-mapped), else NULL */
    float *grad;                         /* NULL when frozen */
    float *m, *v;                        /* AdamW moments; NULL when frozen */
    float *ema;                          /* NULL when frozen or EMA disabled */
    int trainable;
} tuna_param;

typedef struct {
    tuna_param *items;
    int count, capacity;
} tuna_param_table;

/* Add a parameter (weight copied from init, or zeros when init is NULL). Names are unique. */
tuna_status tuna_param_table_add(tuna_param_table *t, const char *name, int ndim, const int64_t *shape,
                                 const float *init, tuna_error *err);
/* Every tensor of a checkpoint, converted to f32 (F32/BF16/F16 sources). */
tuna_status tuna_param_table_from_checkpoint(tuna_param_table *t, const tuna_checkpoint *ck, tuna_error *err);
/* A frozen-in-place parameter's stored tensor widened to f32 (numel floats). */
tuna_status tuna_param_widen_stored(const tuna_param *p, float *out, tuna_error *err);
tuna_param *tuna_param_table_find(const tuna_param_table *t, const char *name);
void tuna_param_table_free(tuna_param_table *t);

/* Which parameters train. Rules are fnmatch(3) globs over names:
 *   train_only: when at least one is given, a parameter trains only if it matches one;
 *   freeze:     a parameter matching any is frozen (applied after train_only).
 * With no rules everything trains. */
typedef struct {
    const char **freeze;
    int freeze_count;
    const char **train_only;
    int train_only_count;
} tuna_freeze_rules;

/* The same, but only the parameters `rules` train get an f32 master weight:
 * the frozen ones stay as the checkpoint stores them (weight NULL, stored =
 * the checkpoint's tensor, any dtype the model reads), so a frozen weight
 * costs its file bytes (mapped), not 4 bytes per element. ck must outlive the
 * table. Trainable block-quantised tensors are dequantised. */
tuna_status tuna_param_table_from_checkpoint_frozen_in_place(tuna_param_table *t, const tuna_checkpoint *ck,
                                                             const tuna_freeze_rules *rules, tuna_error *err);
int tuna_param_is_trainable(const char *name, const tuna_freeze_rules *rules);

/* Decide trainable per rules and allocate grad/m/v (and ema when with_ema) for the
 * trainable ones only; ema starts as a copy of the weight. Fails when nothing trains. */
tuna_status tuna_param_table_setup_training(tuna_param_table *t, const tuna_freeze_rules *rules, int with_ema,
                                            tuna_error *err);

void tuna_param_table_zero_grad(tuna_param_table *t);

typedef struct {
    int64_t total, trainable;       /* element counts */
    int tensors, trainable_tensors;
    size_t state_bytes;             /* bytes allocated for grad + m + v + ema */
    size_t master_bytes;            /* f32 master weights held by the table */
} tuna_param_stats;
tuna_param_stats tuna_param_table_stats(const tuna_param_table *t);

#endif
