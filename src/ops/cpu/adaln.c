/* adaLN modulation restricted to image segments (SPEC section 2): inside
 * segment s the rows use that image's shift/scale/gate; outside, shift = scale
 * = 0 and gate = 1, so those rows pass through unchanged. Segment s's vectors
 * sit at base + s*stride. Rows in several segments use the first. */
#include "ops/ops.h"

#include <string.h>

/* Index of the first segment containing row r, or -1. */
static int segment_of(const tuna_segment *segs, int n, int64_t r) {
    for (int s = 0; s < n; s++)
        if (r >= segs[s].offset && r < segs[s].offset + segs[s].length) return s;
    return -1;
}

void tuna_adaln_modulate_forward(float *y, const float *x, const float *shift,
                                 const float *scale, int64_t mod_stride, int64_t rows,
                                 int64_t dim, const tuna_segment *segments, int n_segments) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        int s = segment_of(segments, n_segments, r);
        if (s < 0) {
            if (yr != xr) memcpy(yr, xr, (size_t)dim * sizeof(float));
            continue;
        }
        const float *sh = shift + s * mod_stride, *sc = scale + s * mod_stride;
        for (int64_t i = 0; i < dim; i++) yr[i] = xr[i] * (1.0f + sc[i]) + sh[i];
    }
}

void tuna_adaln_modulate_backward(float *dx, float *dshift, float *dscale, const float *dy,
                                  const float *x, const float *scale, int64_t mod_stride,
                                  int64_t rows, int64_t dim, const tuna_segment *segments,
                                  int n_segments) {
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * dim, *xr = x + r * dim;
        float *dxr = dx + r * dim;
        int s = segment_of(segments, n_segments, r);
        if (s < 0) {
            if (dxr != dyr) memcpy(dxr, dyr, (size_t)dim * sizeof(float));
            continue;
        }
        const float *sc = scale + s * mod_stride;
        for (int64_t i = 0; i < dim; i++) {
            float g = dyr[i];
            if (dshift) dshift[s * mod_stride + i] += g;
            if (dscale) dscale[s * mod_stride + i] += g * xr[i];
            dxr[i] = g * (1.0f + sc[i]);
        }
    }
}

void tuna_adaln_gate_residual_forward(float *h, const float *y, const float *gate,
                                      int64_t gate_stride, int64_t rows, int64_t dim,
                                      const tuna_segment *segments, int n_segments) {
    for (int64_t r = 0; r < rows; r++) {
        float *hr = h + r * dim;
        const float *yr = y + r * dim;
        int s = segment_of(segments, n_segments, r);
        if (s < 0) {
            for (int64_t i = 0; i < dim; i++) hr[i] += yr[i];
        } else {
            const float *g = gate + s * gate_stride;
            for (int64_t i = 0; i < dim; i++) hr[i] += g[i] * yr[i];
        }
    }
}

void tuna_adaln_gate_residual_backward(float *dy, float *dgate, const float *dh,
                                       const float *y, const float *gate, int64_t gate_stride,
                                       int64_t rows, int64_t dim,
                                       const tuna_segment *segments, int n_segments) {
    for (int64_t r = 0; r < rows; r++) {
        const float *dhr = dh + r * dim, *yr = y + r * dim;
        float *dyr = dy + r * dim;
        int s = segment_of(segments, n_segments, r);
        if (s < 0) {
            if (dyr != dhr) memcpy(dyr, dhr, (size_t)dim * sizeof(float));
            continue;
        }
        const float *g = gate + s * gate_stride;
        for (int64_t i = 0; i < dim; i++) {
            if (dgate) dgate[s * gate_stride + i] += dhr[i] * yr[i];
            dyr[i] = dhr[i] * g[i];
        }
    }
}
