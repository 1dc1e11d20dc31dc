#include "infer/generate.h"
#include "core/clock.h"
#include "infer/sampler.h"
#include "model/forward.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One branch (conditional or unconditional) of the sampler. */
typedef struct {
    tuna_sequence sequence;
    const float *images[2];
    float t[2];
    int heights[2], widths[2];
    tuna_kv_cache cache;
    int prefix;             /* rows before the generated segment */
    int rows;               /* N + 1 */
    float *head_out;        /* [N+1, p*p*C] */
    float *x_pred;          /* [C, H, W] */
} branch;

static tuna_status branch_init(branch *b, const tuna_model *m, const int32_t *ids, int length,
                               const tuna_generate_params *p, const float *z, tuna_error *err) {
    memset(b, 0, sizeof *b);
    int k = 0;
    if (p->source) {
        b->images[k] = p->source;
        b->heights[k] = p->source_height;
        b->widths[k] = p->source_width;
        b->t[k++] = 1.0f;
    }
    b->images[k] = z;
    b->heights[k] = p->height;
    b->widths[k] = p->width;
    b->t[k++] = 0.0f;
    b->sequence = (tuna_sequence){.ids = ids, .length = length, .image_count = k, .images = b->images, .t = b->t,
                                  .clean_image = p->clean_image, .clean_height = p->height, .clean_width = p->width,
                                  .clean_offset = p->clean_offset};
    int found = 0;
    TUNA_TRY(tuna_find_segments(ids, length, &m->config, k, b->heights, b->widths, &b->sequence.segments, &found, err));
    const tuna_image_segment *target = &b->sequence.segments[k - 1];
    b->prefix = target->offset;
    b->rows = target->length;
    int out = m->config.patch_size * m->config.patch_size * m->config.image_channels;
    b->head_out = malloc(sizeof(float) * (size_t)b->rows * out);
    b->x_pred = malloc(sizeof(float) * (size_t)m->config.image_channels * p->height * p->width);
    if (!b->head_out || !b->x_pred) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    return tuna_kv_cache_init(&b->cache, &m->config, b->prefix + b->rows, 1, err);
}

static void branch_free(branch *b) {
    free(b->sequence.segments);
    free(b->head_out);
    free(b->x_pred);
    tuna_kv_cache_free(&b->cache);
}

/* The text (and source image) before the generated segment, once. */
static tuna_status run_prefix(const tuna_model *m, branch *branches, int count, const tuna_backend *be,
                              tuna_workspace *ws, tuna_error *err) {
    tuna_forward_request requests[2];
    int n = 0;
    for (int i = 0; i < count; i++) {
        if (branches[i].prefix == 0) continue;
        requests[n++] = (tuna_forward_request){.sequence = &branches[i].sequence, .cache = &branches[i].cache,
                                               .row_begin = 0, .row_end = branches[i].prefix, .run_head = 1};
    }
    return n ? tuna_model_forward(m, requests, n, be, ws, err) : TUNA_OK;
}

/* x_pred of every branch at time t: the segment rows only, then back to the prefix. */
static tuna_status predict(const tuna_model *m, branch *branches, int count, float t, int channels, int height,
                           int width, const tuna_backend *be, tuna_workspace *ws, tuna_error *err) {
    tuna_forward_request requests[2];
    for (int i = 0; i < count; i++) {
        branch *b = &branches[i];
        b->t[b->sequence.image_count - 1] = t;
        requests[i] = (tuna_forward_request){.sequence = &b->sequence, .cache = &b->cache, .row_begin = b->prefix,
                                             .row_end = b->prefix + b->rows, .run_head = 1, .head_out = b->head_out};
    }
    TUNA_TRY(tuna_model_forward(m, requests, count, be, ws, err));
    int out = m->config.patch_size * m->config.patch_size * channels;
    for (int i = 0; i < count; i++) {
        tuna_kv_cache_truncate(&branches[i].cache, branches[i].prefix);
        /* skip the t slot: the N patch rows follow it */
        tuna_unpatchify(branches[i].x_pred, branches[i].head_out + out, channels, height, width);
    }
    return TUNA_OK;
}

/* One workspace for the prefix and every Euler step: sized by the first
 * step, it allocates nothing after. */
static tuna_status sample(const tuna_model *m, const tuna_generate_params *p, branch *branches, int count, float *z,
                          const tuna_threads *pool, tuna_error *err) {
    tuna_backend be = tuna_backend_cpu(pool);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    int C = m->config.image_channels;
    long n = (long)C * p->height * p->width;
    float *grid = malloc(sizeof(float) * (size_t)(p->steps + 1));
    if (!grid) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_euler_time_grid(p->steps, grid);
    tuna_status s = run_prefix(m, branches, count, &be, &ws, err);
    float *v1 = NULL, *z2 = NULL;
    if (s == TUNA_OK && p->heun) {
        v1 = malloc(sizeof(float) * (size_t)n);
        z2 = malloc(sizeof(float) * (size_t)n);
        if (!v1 || !z2) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    float t_eps = (float)m->config.t_eps;
    for (int i = p->first_step; s == TUNA_OK && i < p->steps; i++) {
        double start = tuna_now_seconds();
        s = predict(m, branches, count, grid[i], C, p->height, p->width, &be, &ws, err);
        if (s != TUNA_OK) break;
        float *x = branches[0].x_pred;
        if (count == 2) tuna_cfg_combine(x, branches[1].x_pred, n, p->cfg_scale);
        if (p->heun && i + 1 < p->steps) {
            /* predictor at t_{i+1}, then the trapezoid of both velocities */
            tuna_flow_velocity(v1, z, x, n, grid[i], t_eps);
            for (long k = 0; k < n; k++) z2[k] = z[k] + (grid[i + 1] - grid[i]) * v1[k];
            /* predict() reads the noisy image through the branches' image pointer: the predictor's for now */
            for (int b = 0; b < count; b++) branches[b].images[branches[b].sequence.image_count - 1] = z2;
            s = predict(m, branches, count, grid[i + 1], C, p->height, p->width, &be, &ws, err);
            for (int b = 0; b < count; b++) branches[b].images[branches[b].sequence.image_count - 1] = z;
            if (s != TUNA_OK) break;
            if (count == 2) tuna_cfg_combine(x, branches[1].x_pred, n, p->cfg_scale);
            tuna_flow_velocity(z2, z2, x, n, grid[i + 1], t_eps); /* v2, in place of the predictor */
            tuna_heun_step(z, v1, z2, n, grid[i], grid[i + 1]);
        } else {
            tuna_euler_step(z, x, n, grid[i], grid[i + 1], t_eps);
        }
        if (p->progress) p->progress(p->progress_ctx, i + 1, p->steps, tuna_now_seconds() - start);
    }
    free(v1);
    free(z2);
    free(grid);
    tuna_workspace_free(&ws);
    return s;
}

tuna_status tuna_generate(const tuna_model *m, const tuna_generate_params *p, float *z, const tuna_threads *pool,
                          tuna_error *err) {
    if (p->steps < 1 || p->steps > 100000) return tuna_fail(err, TUNA_ERR_INVALID, "steps must be in [1, 100000]");
    if (p->first_step < 0 || p->first_step >= p->steps)
        return tuna_fail(err, TUNA_ERR_INVALID, "first step %d outside [0, %d)", p->first_step, p->steps);
    branch branches[2];
    int count = p->uncond_ids ? 2 : 1;
    memset(branches, 0, sizeof branches);
    tuna_status s = branch_init(&branches[0], m, p->cond_ids, p->cond_length, p, z, err);
    if (s == TUNA_OK && count == 2) s = branch_init(&branches[1], m, p->uncond_ids, p->uncond_length, p, z, err);
    if (s == TUNA_OK) s = sample(m, p, branches, count, z, pool, err);
    for (int i = 0; i < count; i++) branch_free(&branches[i]);
    return s;
}
