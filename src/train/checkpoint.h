/* Training checkpoints: OUTPUT_DIR/checkpoint-STEP/ (STEP zero-padded to 8 digits)
 *
 *   model.safetensors      weights by official name (F32, or BF16 with save_bf16)
 *   ema.safetensors        EMA weights, same names and dtype (frozen = the weight)
 *   optimizer.safetensors  F32 m.NAME, v.NAME per trainable parameter; with BF16
 *                          weights also master.NAME and ema_master.NAME (f32)
 *   trainer_state.json     step, ema_updates, skipped updates, data loader state
 *   config.json            the model configuration (when known)
 *
 * Written into checkpoint-STEP.tmp/ (every file fsync'd), then renamed to
 * checkpoint-STEP and the directory fsync'd: a directory without ".tmp" is
 * complete. Leftover .tmp directories are deleted on the next save or resume. */
#ifndef TUNA_TRAIN_CHECKPOINT_H
#define TUNA_TRAIN_CHECKPOINT_H

#include "model/config.h"
#include "train/data.h"
#include "train/optimizer.h"
#include "train/params.h"

typedef struct {
    int64_t step;
    int64_t ema_updates;
    int64_t skipped_updates;
    tuna_data_state data;
} tuna_train_state;

tuna_status tuna_train_checkpoint_save(const char *output_dir, const tuna_param_table *params,
                                       const tuna_train_state *state, const tuna_config *model_config,
                                       int save_bf16, int keep_last, tuna_error *err);

/* Highest complete checkpoint step in output_dir; 0 (and *path "") when none. */
int64_t tuna_train_checkpoint_latest(const char *output_dir, char *path, size_t path_size);

/* Load weights (trainable ones), m, v, EMA and the state from a checkpoint
 * directory into an already set-up table. The trainable set must match. */
tuna_status tuna_train_checkpoint_load(const char *dir, tuna_param_table *params, tuna_train_state *state,
                                       tuna_error *err);

/* Remove checkpoint-*.tmp leftovers and all but the newest keep_last complete ones (keep_last > 0). */
void tuna_train_checkpoint_prune(const char *output_dir, int keep_last);

#endif
