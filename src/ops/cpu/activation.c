/* SiLU and SwiGLU (the LLM's and the flow head's MLP, SPEC section 2). */
#include "ops/ops.h"

#include <math.h>

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void tuna_silu_forward(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
}

void tuna_silu_backward(float *dx, const float *dy, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void tuna_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g * sigmoidf(g) * up[i];
    }
}

void tuna_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], u = up[i], d = dout[i];
        float s = sigmoidf(g);
        float silu = g * s;
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
        dup[i] = d * silu;
    }
}
