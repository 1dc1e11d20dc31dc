/* Losses of SPEC sections 5 and 9, forward and backward side by side. */
#ifndef TUNA_TRAIN_LOSS_H
#define TUNA_TRAIN_LOSS_H

#include <stdint.h>

/* Shifted cross-entropy, as Hugging Face computes it:
 *   loss = mean over i with labels[i+1] != -100 of
 *          logsumexp(logits[i]) - logits[i][labels[i+1]]
 * over positions i = 0..L-2; 0 when no label counts. *count receives how many
 * positions count (may be NULL). Labels outside [0, vocab) are skipped and
 * counted in *invalid (may be NULL). Accumulates in double. */
float cross_entropy_shifted_forward(const float *logits, const int32_t *labels, int length, int vocab, int *count,
                                    int *invalid);
/* d loss / d logits (written into dlogits [L, vocab]; rows that do not count are zero). */
void cross_entropy_shifted_backward(const float *logits, const int32_t *labels, int length, int vocab,
                                    float dloss, float *dlogits);

/* The JiT flow loss (SPEC section 9): one pooled mean over every element of
 * the flow images of (x_pred - target)^2 / max(1 - t_k, t_eps)^2. count[k] is
 * image k's element count. 0 when no image is in the loss (the empty-mask
 * guard of SPEC section 5). */
float flow_loss_forward(const float *const *x_pred, const float *const *targets, const float *t,
                        const uint8_t *flow_images, const long *count, int images, float t_eps);
/* d loss / d x_pred for each image (dx_pred[k] zero-filled for images out of the loss). */
void flow_loss_backward(const float *const *x_pred, const float *const *targets, const float *t,
                        const uint8_t *flow_images, const long *count, int images, float t_eps, float dloss,
                        float *const *dx_pred);

#endif
