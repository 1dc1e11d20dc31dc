/* Samplers, kept apart from the model (as stable-diffusion.cpp does):
 * the JiT Euler flow sampler of SPEC section 6 and the text token sampler. */
#ifndef TUNA_INFER_SAMPLER_H
#define TUNA_INFER_SAMPLER_H

#include "core/rng.h"
#include "core/status.h"

/* ---- image: JiT Euler (SPEC section 6) ---------------------------------- */

/* Time grid t_i = i / steps, i = 0..steps, computed as torch.linspace(0, 1,
 * steps+1) does in f32 (so the engine and the reference take identical steps). */
void tuna_euler_time_grid(int steps, float *grid /* steps+1 */);

/* Classifier-free guidance on the prediction: x = x_u + s * (x_c - x_u), in place on x_cond. */
void tuna_cfg_combine(float *x_cond, const float *x_uncond, long n, float scale);

/* One Euler step of the x-prediction flow:
 *   v = (x_pred - z) / max(1 - t, t_eps);   z += (t_next - t) * v. */
void tuna_euler_step(float *z, const float *x_pred, long n, float t, float t_next, float t_eps);

/* The velocity of the x-prediction flow: v = (x_pred - z) / max(1 - t, t_eps). */
void tuna_flow_velocity(float *v, const float *z, const float *x_pred, long n, float t, float t_eps);

/* One Heun (trapezoid) step from z at t to t_next given the velocities at both
 * ends: v1 at (z, t) and v2 at (z + (t_next - t) v1, t_next):
 *   z += (t_next - t) (v1 + v2) / 2. */
void tuna_heun_step(float *z, const float *v1, const float *v2, long n, float t, float t_next);

/* z = noise_scale * N(0, I), from a seeded generator. */
void tuna_euler_initial_noise(tuna_rng *rng, float *z, long n, float noise_scale);

/* ---- text: next-token choice -------------------------------------------- */
typedef struct {
    float temperature; /* <= 0: greedy (argmax) */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
} tuna_token_sampling;

/* Pick the next token from logits[vocab]. Greedy when temperature <= 0 (ties
 * go to the lowest id, as torch.argmax). Otherwise softmax(logits / T),
 * restricted to the top_k largest and then to the smallest set whose mass
 * reaches top_p, renormalised, drawn with rng. scratch needs 2*vocab floats. */
int tuna_sample_token(const float *logits, int vocab, const tuna_token_sampling *params, tuna_rng *rng, float *scratch);

#endif
