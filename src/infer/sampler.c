#include "infer/sampler.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* The candidates sorted by probability, highest first, ties by lower id, as
 * 64-bit keys: the complement of p's bits (p >= 0, so its bits order as p
 * does) above the id. Every key differs, so any correct sort gives the one
 * order; an inlined introsort on integers is ~10x faster than qsort with a
 * comparator on V = 2048 (the bundled model decodes a token in ~0.2 ms). */
static uint64_t token_key(float p, int id) {
    uint32_t bits;
    memcpy(&bits, &p, sizeof bits);
    return (uint64_t)(~bits) << 32 | (uint32_t)id;
}

static float key_p(uint64_t k) {
    uint32_t bits = ~(uint32_t)(k >> 32);
    float p;
    memcpy(&p, &bits, sizeof p);
    return p;
}

static int key_id(uint64_t k) { return (int)(uint32_t)k; }

static void sift_down(uint64_t *a, long start, long n) {
    long root = start;
    while (2 * root + 1 < n) {
        long child = 2 * root + 1;
        if (child + 1 < n && a[child] < a[child + 1]) child++;
        if (a[root] >= a[child]) return;
        uint64_t t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* Quicksort (median of three), insertion sort below 16, heapsort past a depth
 * of 2 log2 n: O(n log n) whatever the logits. */
static void sort_keys(uint64_t *a, long n, int depth) {
    while (n > 16) {
        if (depth-- == 0) {
            for (long i = n / 2 - 1; i >= 0; i--) sift_down(a, i, n);
            for (long end = n - 1; end > 0; end--) {
                uint64_t t = a[0];
                a[0] = a[end];
                a[end] = t;
                sift_down(a, 0, end);
            }
            return;
        }
        uint64_t x = a[0], y = a[n / 2], z = a[n - 1];
        uint64_t pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
        long i = 0, j = n - 1;
        for (;;) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i >= j) break;
            uint64_t t = a[i];
            a[i++] = a[j];
            a[j--] = t;
        }
        /* recurse into the smaller side, loop on the larger */
        if (j + 1 < n - j - 1) {
            sort_keys(a, j + 1, depth);
            a += j + 1;
            n -= j + 1;
        } else {
            sort_keys(a + j + 1, n - j - 1, depth);
            n = j + 1;
        }
    }
    for (long i = 1; i < n; i++) {
        uint64_t v = a[i];
        long k = i;
        for (; k > 0 && a[k - 1] > v; k--) a[k] = a[k - 1];
        a[k] = v;
    }
}

int tuna_sample_token(const float *logits, int vocab, const tuna_token_sampling *params, tuna_rng *rng, float *scratch) {
    if (!params || params->temperature <= 0.0f) return argmax(logits, vocab);
    uint64_t *tokens = (uint64_t *)scratch; /* 2*vocab floats = vocab keys */
    float max_logit = logits[argmax(logits, vocab)];
    double total = 0;
    for (int i = 0; i < vocab; i++) {
        float p = expf((logits[i] - max_logit) / params->temperature);
        tokens[i] = token_key(p, i);
        total += p;
    }
    int depth = 2;
    for (long n = vocab; n > 1; n >>= 1) depth += 2;
    sort_keys(tokens, vocab, depth);
    int keep = vocab;
    if (params->top_k > 0 && params->top_k < keep) keep = params->top_k;
    if (params->top_p < 1.0f) {
        double kept_mass = 0, target = params->top_p * total;
        int i = 0;
        while (i < keep) {
            kept_mass += key_p(tokens[i]);
            i++;
            if (kept_mass >= target) break;
        }
        keep = i;
    }
    double mass = 0;
    for (int i = 0; i < keep; i++) mass += key_p(tokens[i]);
    double r = (double)tuna_rng_uniform(rng) * mass;
    for (int i = 0; i < keep; i++) {
        r -= key_p(tokens[i]);
        if (r < 0) return key_id(tokens[i]);
    }
    return key_id(tokens[keep - 1]);
}
