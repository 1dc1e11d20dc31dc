/* Gradient buffers of every parameter, laid out like the model: one f32
 * tensor per official parameter name (tuna_config_expected_tensors), bound
 * into a tuna_model so the backward reads g->llm_layers[i].q_weight exactly as
 * the forward reads the weight. A frozen parameter has no buffer (data NULL):
 * no memory, no gradient computed. */
#ifndef TUNA_MODEL_GRADIENTS_H
#define TUNA_MODEL_GRADIENTS_H

#include "model/config_json.h"
#include "model/tuna2.h"

typedef int (*tuna_trainable_fn)(void *ctx, const char *name);

typedef struct {
    tuna_expected_tensor *list;
    size_t count;
    tuna_tensor *tensors; /* [count], F32, data NULL when frozen */
    tuna_model model;     /* bound to tensors */
} tuna_gradients;

/* trainable may be NULL (everything trains). */
tuna_status tuna_gradients_init(tuna_gradients *g, const tuna_config *config, tuna_trainable_fn trainable, void *ctx,
                                tuna_error *err);
void tuna_gradients_free(tuna_gradients *g);
void tuna_gradients_zero(tuna_gradients *g);
/* NULL when the name is unknown. */
const tuna_tensor *tuna_gradients_find(const tuna_gradients *g, const char *name);

#endif
