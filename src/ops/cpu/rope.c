/* Rotary position embeddings (SPEC section 2): one per-token plan covering the
 * three forms the model uses (Qwen2 1D, llama3-scaled 1D, 3D interleaved).
 *
 * Angles are formed in f32 (position * inv_freq rounded once), as the
 * reference does with f32 tensors; cos/sin of that f32 angle are evaluated in
 * double and rounded, i.e. correctly rounded like torch's f32 cos/sin up to
 * ~1 ulp. */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tuna_status tuna_rope_plan_init(tuna_rope_plan *plan, int64_t len, int head_dim, tuna_error *err) {
    memset(plan, 0, sizeof *plan);
    if (len < 0 || head_dim <= 0 || head_dim % 2)
        return tuna_fail(err, TUNA_ERR_INVALID, "rope plan: bad len %lld or head_dim %d",
                         (long long)len, head_dim);
    size_t pairs = 0;
    if (tuna_mul_overflows((size_t)len, (size_t)head_dim / 2, &pairs))
        return tuna_fail(err, TUNA_ERR_LIMIT, "rope plan: size overflows");
    plan->len = len;
    plan->head_dim = head_dim;
    plan->mode = calloc((size_t)len + 1, 1);
    plan->cos = calloc(pairs + 1, sizeof(float));
    plan->sin = calloc(pairs + 1, sizeof(float));
    if (!plan->mode || !plan->cos || !plan->sin) {
        tuna_rope_plan_free(plan);
        return tuna_fail(err, TUNA_ERR_NOMEM, "rope plan: out of memory (%lld tokens)",
                         (long long)len);
    }
    return TUNA_OK;
}

void tuna_rope_plan_free(tuna_rope_plan *plan) {
    if (!plan) return;
    free(plan->mode);
    free(plan->cos);
    free(plan->sin);
    memset(plan, 0, sizeof *plan);
}

void tuna_rope_inv_freq_default(float *inv_freq, int head_dim, double theta) {
    for (int i = 0; i < head_dim / 2; i++) {
        float exponent = (float)(2 * i) / (float)head_dim; /* f32, as torch.arange(...).float()/dim */
        inv_freq[i] = 1.0f / powf((float)theta, exponent);
    }
}

void tuna_rope_inv_freq_llama3(float *inv_freq, int head_dim, double theta, double factor,
                               double low_freq_factor, double high_freq_factor,
                               double original_max_position) {
    tuna_rope_inv_freq_default(inv_freq, head_dim, theta);
    double low_wavelen = original_max_position / low_freq_factor;
    double high_wavelen = original_max_position / high_freq_factor;
    for (int i = 0; i < head_dim / 2; i++) {
        float f = inv_freq[i];
        float wavelen = (float)(2.0 * M_PI) / f;
        if (wavelen > low_wavelen) {
            inv_freq[i] = f / (float)factor;
        } else if (wavelen < high_wavelen) {
            inv_freq[i] = f;
        } else {
            float s = ((float)original_max_position / wavelen - (float)low_freq_factor) /
                      (float)(high_freq_factor - low_freq_factor);
            inv_freq[i] = (1.0f - s) * f / (float)factor + s * f;
        }
    }
}

void tuna_rope_plan_set_none(tuna_rope_plan *plan, int64_t token) {
    int half = plan->head_dim / 2;
    plan->mode[token] = TUNA_ROPE_NONE;
    for (int p = 0; p < half; p++) {
        plan->cos[token * half + p] = 1.0f;
        plan->sin[token * half + p] = 0.0f;
    }
}

void tuna_rope_plan_set_rotate_half(tuna_rope_plan *plan, int64_t token, double position,
                                    const float *inv_freq) {
    int half = plan->head_dim / 2;
    plan->mode[token] = TUNA_ROPE_ROTATE_HALF;
    for (int p = 0; p < half; p++) {
        float angle = (float)position * inv_freq[p];
        plan->cos[token * half + p] = (float)cos((double)angle);
        plan->sin[token * half + p] = (float)sin((double)angle);
    }
}

void tuna_rope_plan_fill_rotate_half(tuna_rope_plan *plan, int64_t begin, int64_t end,
                                     double first_position, const float *inv_freq) {
    for (int64_t t = begin; t < end; t++)
        tuna_rope_plan_set_rotate_half(plan, t, first_position + (double)(t - begin), inv_freq);
}

/* One section of the 3D rotation: `width` dimensions (width/2 pairs) starting at
 * pair `pair0`, coordinate `pos`, frequencies theta^(-2j/width). */
static void set_3d_section(tuna_rope_plan *plan, int64_t token, int pair0, int width, double pos,
                           double theta) {
    int half = plan->head_dim / 2;
    for (int j = 0; j < width / 2; j++) {
        float omega = 1.0f / powf((float)theta, (float)(2 * j) / (float)width);
        float angle = (float)pos * omega;
        /* stored as MINUS the angle: the reference multiplies the pair, as a row
         * vector, by [[cos, -sin], [sin, cos]] */
        plan->cos[token * half + pair0 + j] = (float)cos((double)angle);
        plan->sin[token * half + pair0 + j] = (float)-sin((double)angle);
    }
}

void tuna_rope_plan_set_3d(tuna_rope_plan *plan, int64_t token, double frame, double row,
                           double col, double theta) {
    int d = plan->head_dim;
    int dim_t = d / 4, dim_h = d / 8 * 3, dim_w = d / 8 * 3;
    plan->mode[token] = TUNA_ROPE_INTERLEAVED;
    set_3d_section(plan, token, 0, dim_t, frame, theta);
    set_3d_section(plan, token, dim_t / 2, dim_h, row, theta);
    set_3d_section(plan, token, dim_t / 2 + dim_h / 2, dim_w, col, theta);
}

typedef struct {
    float *x;
    int heads;
    const tuna_rope_plan *plan;
    float sign; /* +1 forward, -1 backward (rotate by -th) */
} rope_job;

static void rope_range(void *ctx, long begin, long end) {
    const rope_job *j = ctx;
    int d = j->plan->head_dim, half = d / 2;
    for (long t = begin; t < end; t++) {
        int mode = j->plan->mode[t];
        if (mode == TUNA_ROPE_NONE) continue;
        const float *c = j->plan->cos + t * half;
        const float *s = j->plan->sin + t * half;
        for (int h = 0; h < j->heads; h++) {
            float *x = j->x + ((int64_t)t * j->heads + h) * d;
            if (mode == TUNA_ROPE_ROTATE_HALF) {
                for (int p = 0; p < half; p++) {
                    float a = x[p], b = x[p + half], sn = j->sign * s[p];
                    x[p] = a * c[p] - b * sn;
                    x[p + half] = a * sn + b * c[p];
                }
            } else {
                for (int p = 0; p < half; p++) {
                    float a = x[2 * p], b = x[2 * p + 1], sn = j->sign * s[p];
                    x[2 * p] = a * c[p] - b * sn;
                    x[2 * p + 1] = a * sn + b * c[p];
                }
            }
        }
    }
}

void tuna_rope_forward(float *x, int64_t L, int heads, const tuna_rope_plan *plan,
                       const tuna_threads *pool) {
    rope_job job = {x, heads, plan, 1.0f};
    tuna_parallel_for(L * heads >= 256 ? pool : NULL, (long)(L < plan->len ? L : plan->len),
                      rope_range, &job);
}

void tuna_rope_backward(float *dx, int64_t L, int heads, const tuna_rope_plan *plan,
                        const tuna_threads *pool) {
    rope_job job = {dx, heads, plan, -1.0f};
    tuna_parallel_for(L * heads >= 256 ? pool : NULL, (long)(L < plan->len ? L : plan->len),
                      rope_range, &job);
}
