/* Element kernels of the optimizer (SPEC section 5): the AdamW update, the
 * sum of squares of the global gradient norm, the EMA lerp. The parameter
 * walk (which tensors, in which chunks, on which threads) is the trainer's
 * (src/train/optimizer.c); these see one contiguous range. */
#include "ops/ops.h"

#include <immintrin.h>
#include <math.h>

/* One element of the update: the scalar tail and the reference for the
 * vector loop, which does the same operations 8 lanes at a time. */
static inline void adamw_element(const tuna_adamw_scalars *a, float *w, float *m, float *v, float g) {
    float mj = *m + a->one_minus_b1 * (g - *m);
    float vj = *v * a->b2 + a->one_minus_b2 * (g * g);
    float denom = sqrtf(vj) / a->bias2_sqrt + a->eps;
    *m = mj;
    *v = vj;
    *w = *w * a->decay + (-a->step_size) * (mj / denom);
}

void tuna_adamw_update(float *w, float *m, float *v, const float *g, int64_t n, const tuna_adamw_scalars *a) {
    const __m256 decay = _mm256_set1_ps(a->decay), c1 = _mm256_set1_ps(a->one_minus_b1);
    const __m256 b2 = _mm256_set1_ps(a->b2), c2 = _mm256_set1_ps(a->one_minus_b2);
    const __m256 b2s = _mm256_set1_ps(a->bias2_sqrt), eps = _mm256_set1_ps(a->eps);
    const __m256 neg_step = _mm256_set1_ps(-a->step_size);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 gj = _mm256_loadu_ps(g + j), mj = _mm256_loadu_ps(m + j), vj = _mm256_loadu_ps(v + j);
        mj = _mm256_fmadd_ps(c1, _mm256_sub_ps(gj, mj), mj);
        vj = _mm256_fmadd_ps(c2, _mm256_mul_ps(gj, gj), _mm256_mul_ps(vj, b2));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vj), b2s), eps);
        __m256 wj = _mm256_mul_ps(_mm256_loadu_ps(w + j), decay);
        _mm256_storeu_ps(m + j, mj);
        _mm256_storeu_ps(v + j, vj);
        _mm256_storeu_ps(w + j, _mm256_fmadd_ps(neg_step, _mm256_div_ps(mj, denom), wj));
    }
    for (; j < n; j++) adamw_element(a, w + j, m + j, v + j, g[j]);
}

double tuna_sum_squares(const float *x, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_loadu_ps(x + k);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(a0, a1));
    double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; k < n; k++) s += (double)x[k] * (double)x[k];
    return s;
}

void tuna_ema_lerp(float *restrict ema, const float *restrict w, float weight, int64_t n) {
    for (int64_t j = 0; j < n; j++) ema[j] = ema[j] + weight * (w[j] - ema[j]);
}
