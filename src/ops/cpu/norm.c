/* RMSNorm and row softmax (SPEC sections 1-2). Sums are accumulated in double:
 * rows are at most a few thousand wide, so the cost is negligible and the
 * result does not depend on the vector width. */
#include "ops/ops.h"

#include <math.h>

typedef struct {
    float *y, *rstd;
    const float *x, *w;
    int64_t dim;
    float eps;
} rmsnorm_job;

static void rmsnorm_range(void *ctx, long begin, long end) {
    const rmsnorm_job *j = ctx;
    int64_t dim = j->dim;
    for (long r = begin; r < end; r++) {
        const float *x = j->x + r * dim;
        float *y = j->y + r * dim;
        double ss = 0.0;
        for (int64_t i = 0; i < dim; i++) ss += (double)x[i] * x[i];
        float rstd = (float)(1.0 / sqrt(ss / (double)dim + (double)j->eps));
        if (j->rstd) j->rstd[r] = rstd;
        if (j->w)
            for (int64_t i = 0; i < dim; i++) y[i] = x[i] * rstd * j->w[i];
        else
            for (int64_t i = 0; i < dim; i++) y[i] = x[i] * rstd;
    }
}

void tuna_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w,
                          int64_t rows, int64_t dim, float eps, const tuna_threads *pool) {
    rmsnorm_job job = {y, rstd, x, w, dim, eps};
    /* small rows (per-head q/k norms) are grouped so each chunk has real work */
    tuna_parallel_for(rows * dim >= 16384 ? pool : NULL, (long)rows, rmsnorm_range, &job);
}

void tuna_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                           const float *w, const float *rstd, int64_t rows, int64_t dim) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dyr = dy + r * dim;
        float *dxr = dx + r * dim;
        float s = rstd[r];
        double dot = 0.0; /* sum_i g_i * xhat_i */
        for (int64_t i = 0; i < dim; i++) {
            float g = dyr[i] * (w ? w[i] : 1.0f);
            dot += (double)g * (xr[i] * s);
        }
        float mean = (float)(dot / (double)dim);
        for (int64_t i = 0; i < dim; i++) {
            float xhat = xr[i] * s;
            if (dw) dw[i] += dyr[i] * xhat;
            float g = dyr[i] * (w ? w[i] : 1.0f);
            dxr[i] = s * (g - xhat * mean);
        }
    }
}

void tuna_softmax_forward(float *y, const float *x, int64_t rows, int64_t dim) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        float mx = -INFINITY;
        for (int64_t i = 0; i < dim; i++) mx = xr[i] > mx ? xr[i] : mx;
        double sum = 0.0;
        for (int64_t i = 0; i < dim; i++) {
            yr[i] = expf(xr[i] - mx);
            sum += yr[i];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < dim; i++) yr[i] *= inv;
    }
}

void tuna_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t dim) {
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * dim, *yr = y + r * dim;
        float *dxr = dx + r * dim;
        double dot = 0.0;
        for (int64_t i = 0; i < dim; i++) dot += (double)dyr[i] * yr[i];
        for (int64_t i = 0; i < dim; i++) dxr[i] = yr[i] * (dyr[i] - (float)dot);
    }
}
