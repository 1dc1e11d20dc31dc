/* A freshly initialised Tuna-2 checkpoint (training from scratch), with the
 * reference's initialisation (SPEC section 5 and tuna_2_pixel.py):
 *   LLM (Qwen2, initializer_range 0.02): Linear and embedding weights
 *       N(0, 0.02), biases 0, norm weights 1;
 *   patch conv: xavier-uniform on the weight viewed [d, C*p*p], bias 0; norm 1;
 *   time MLP: weights N(0, 0.02), biases PyTorch's default U(+-1/sqrt(fan_in));
 *   head blocks: PyTorch's default Linear init (kaiming-uniform a=sqrt(5), i.e.
 *       U(+-1/sqrt(fan_in))) — the reference's _basic_init is called on the
 *       ModuleList itself and so changes nothing — q/k/layer norms 1,
 *       adaLN_modulation zero;
 *   final layer: adaLN and linear zero, norm 1;
 *   mask_token: d^-1/2 * N(0, 1).
 * Every value comes from a generator seeded with `seed`. */
#ifndef TUNA_TRAIN_INIT_H
#define TUNA_TRAIN_INIT_H

#include "model/config.h"
#include "core/status.h"

/* Write DIR/model.safetensors (F32) and DIR/config.json. */
tuna_status tuna_init_checkpoint(const tuna_config *config, unsigned long long seed, const char *dir, tuna_error *err);

#endif
