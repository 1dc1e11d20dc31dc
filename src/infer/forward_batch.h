/* The test contract of SPEC section 9: a batch.safetensors in, the model's
 * outputs out. Images of different sizes cannot share one [K,3,H,W] tensor,
 * so (our extension, docs/reference-notes.md) they may also be given one per
 * tensor as `images.k` [3,H_k,W_k] (likewise `targets.k`, `mask.k` [N_k], and
 * `x_pred.k` in the result). */
#ifndef TUNA_INFER_FORWARD_BATCH_H
#define TUNA_INFER_FORWARD_BATCH_H

#include "io/safetensors.h"
#include "core/threads.h"
#include "model/sequence.h"
#include "model/tuna2.h"

#define TUNA_BATCH_MAX_IMAGES 64

typedef struct {
    tuna_safetensors file;           /* owns the mapping the pointers below point into */
    const int32_t *input_ids;
    int length;
    const int32_t *labels;           /* NULL when absent */
    int image_count;
    int channels;
    int heights[TUNA_BATCH_MAX_IMAGES], widths[TUNA_BATCH_MAX_IMAGES];
    const float *images[TUNA_BATCH_MAX_IMAGES];
    const float *targets[TUNA_BATCH_MAX_IMAGES]; /* all NULL when absent */
    const uint8_t *masks[TUNA_BATCH_MAX_IMAGES]; /* NULL entries when absent */
    const float *t;
    const uint8_t *flow_images;      /* NULL when absent (then no image is in the flow loss) */
    int stacked;                     /* images came as one [K,3,H,W] tensor */
} tuna_forward_batch;

tuna_status tuna_forward_batch_open(const char *path, int channels, tuna_forward_batch *batch, tuna_error *err);
void tuna_forward_batch_close(tuna_forward_batch *batch);

/* Run the forward of SPEC section 9 on the batch and write result.safetensors
 * (atomically): hidden, logits, x_pred (or x_pred.k), and the losses when the
 * batch has labels or targets; with_gradients adds grad.NAME of every parameter. */
tuna_status tuna_forward_batch_run(const tuna_model *model, const tuna_forward_batch *batch,
                                   const tuna_threads *pool, const char *out_path, int with_gradients,
                                   tuna_error *err);

#endif
