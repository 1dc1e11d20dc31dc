#include "infer/sampler.h"

#include <math.h>
#include <stdlib.h>

void tuna_euler_time_grid(int steps, float *grid) {
    /* torch.linspace(start=0, end=1, n) in f32: step = 1/(n-1); the first half
     * is start + i*step, the second half end - (n-1-i)*step (symmetric). */
    int n = steps + 1;
    if (n == 1) { grid[0] = 0.0f; return; }
    float step = 1.0f / (float)(n - 1);
    int half = n / 2;
    for (int i = 0; i < n; i++) grid[i] = i < half ? (float)i * step : 1.0f - (float)(n - 1 - i) * step;
}

void tuna_cfg_combine(float *x_cond, const float *x_uncond, long n, float scale) {
    for (long i = 0; i < n; i++) x_cond[i] = x_uncond[i] + scale * (x_cond[i] - x_uncond[i]);
}

void tuna_euler_step(float *z, const float *x_pred, long n, float t, float t_next, float t_eps) {
    float denom = fmaxf(1.0f - t, t_eps);
    float dt = t_next - t;
    for (long i = 0; i < n; i++) {
        float v = (x_pred[i] - z[i]) / denom;
        z[i] += dt * v;
    }
}

void tuna_flow_velocity(float *v, const float *z, const float *x_pred, long n, float t, float t_eps) {
    float denom = fmaxf(1.0f - t, t_eps);
    for (long i = 0; i < n; i++) v[i] = (x_pred[i] - z[i]) / denom;
}

void tuna_heun_step(float *z, const float *v1, const float *v2, long n, float t, float t_next) {
    float half = 0.5f * (t_next - t);
    for (long i = 0; i < n; i++) z[i] += half * (v1[i] + v2[i]);
}

void tuna_euler_initial_noise(tuna_rng *rng, float *z, long n, float noise_scale) {
    tuna_rng_fill_normal(rng, z, n, 0.0f, noise_scale);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    float p;
    int id;
} scored_token;

static int by_probability_desc(const void *a, const void *b) {
    const scored_token *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

int tuna_sample_token(const float *logits, int vocab, const tuna_token_sampling *params, tuna_rng *rng, float *scratch) {
    if (!params || params->temperature <= 0.0f) return argmax(logits, vocab);
    scored_token *tokens = (scored_token *)scratch; /* 2*vocab floats = vocab pairs */
    float max_logit = logits[argmax(logits, vocab)];
    double total = 0;
    for (int i = 0; i < vocab; i++) {
        float p = expf((logits[i] - max_logit) / params->temperature);
        tokens[i] = (scored_token){p, i};
        total += p;
    }
    qsort(tokens, (size_t)vocab, sizeof *tokens, by_probability_desc);
    int keep = vocab;
    if (params->top_k > 0 && params->top_k < keep) keep = params->top_k;
    if (params->top_p < 1.0f) {
        double kept_mass = 0, target = params->top_p * total;
        int i = 0;
        while (i < keep) {
            kept_mass += tokens[i].p;
            i++;
            if (kept_mass >= target) break;
        }
        keep = i;
    }
    double mass = 0;
    for (int i = 0; i < keep; i++) mass += tokens[i].p;
    double r = (double)tuna_rng_uniform(rng) * mass;
    for (int i = 0; i < keep; i++) {
        r -= tokens[i].p;
        if (r < 0) return tokens[i].id;
    }
    return tokens[keep - 1].id;
}
