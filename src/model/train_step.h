/* One training example through the one graph (graph.h): the forward with
 * its activations recorded, the losses of SPEC sections 5 and 9, and the
 * backward, which ACCUMULATES the gradient of every parameter. */
#ifndef TUNA_MODEL_TRAIN_STEP_H
#define TUNA_MODEL_TRAIN_STEP_H

#include "model/sequence.h"
#include "model/tuna2.h"
#include "ops/workspace.h"

typedef struct {
    const tuna_sequence *sequence;   /* ids, segments, images (as fed: noisy or clean), t, masks */
    const int32_t *labels;           /* [L], -100 = ignored; NULL: no CE */
    const float *const *targets;     /* per image [C,H,W] clean images; NULL: no flow loss */
    const uint8_t *flow_images;      /* per image, 1 = in the flow loss; NULL: none */
} tuna_train_example;

typedef struct {
    float loss, loss_ce, loss_flow;
    int ce_tokens;                   /* positions counted by the CE */
    long flow_elements;              /* elements counted by the flow loss */
} tuna_losses;

/* Forward the example, compute loss = loss_ce + loss_flow, and (gradients !=
 * NULL) ACCUMULATE d(loss_scale * loss)/d(parameter) into `gradients`: a
 * tuna_model bound (tuna_model_bind) to one f32 buffer per parameter, with the
 * same names; a tensor whose data is NULL is frozen (no gradient computed for
 * it). x_pred (may be NULL) receives each image's prediction [C,H,W].
 * Activations live in ws (reset at the start: a trainer keeps one workspace
 * and steps on sequences of similar shapes without allocating); ws == NULL
 * uses one of the call's own. */
tuna_status tuna_model_loss_and_gradients(const tuna_model *model, const tuna_model *gradients,
                                          const tuna_train_example *example, float loss_scale, float *const *x_pred,
                                          const tuna_backend *be, tuna_workspace *ws, tuna_losses *losses,
                                          tuna_error *err);

#endif
