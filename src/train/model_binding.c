/* The one place where the model's loss-and-gradients implementation is wired
 * into the trainer (see tuna_train_model_bind in trainer.h).
 *
 * To wire the model backward in: replace the body below by code that builds
 * the model's training context over `params` (weight views into
 * params->items[i].weight, which never move; gradients added into
 * params->items[i].grad when non-NULL) and fills
 *     out->ctx = that context;
 *     out->loss_and_grad = tuna_model_loss_and_gradients;   (a tuna_loss_grad_fn)
 *     out->destroy = its destructor;
 *     out->name = "tuna2";
 * Nothing else in src/train or src/cli needs to change. */
#include "train/trainer.h"

#include <string.h>

tuna_status tuna_train_model_bind(const tuna_config *config, tuna_param_table *params, const tuna_threads *threads,
                                  tuna_train_model *out, tuna_error *err) {
    (void)config;
    (void)params;
    (void)threads;
    memset(out, 0, sizeof *out);
    return tuna_fail(err, TUNA_ERR_UNSUPPORTED,
                     "this build has no model gradient implementation linked (tuna_model_loss_and_gradients is "
                     "not wired in src/train/model_binding.c yet): `tuna train` cannot compute gradients");
}
