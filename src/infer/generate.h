/* Image generation and editing with the JiT Euler sampler (SPEC section 6).
 *
 * The conditional sequence (and the unconditional one, for classifier-free
 * guidance) end with the image being generated: its segment is the last of
 * each sequence. Everything before that segment (the caption, and for editing
 * the clean source image at t=1) is computed once into a KV cache; every step
 * then runs only the N+1 rows of the segment, both branches stacked in one
 * batch, and the cache is cut back to the prefix. */
#ifndef TUNA_INFER_GENERATE_H
#define TUNA_INFER_GENERATE_H

#include "core/threads.h"
#include "model/tuna2.h"

typedef void (*tuna_progress_fn)(void *ctx, int step, int steps, double step_seconds);

typedef struct {
    const int32_t *cond_ids;
    int cond_length;
    const int32_t *uncond_ids;  /* NULL: no guidance */
    int uncond_length;
    const float *source;        /* editing: clean source [C, source_h, source_w], fed at t=1; else NULL */
    int source_height, source_width;
    int height, width;          /* the generated image */
    const float *clean_image;   /* reconstruction: clean image embedded at rows [clean_offset, +N) of both branches */
    int clean_offset;
    int steps;
    int first_step;             /* editing with a strength below 1: start at grid[first_step] (0: from noise) */
    int heun;                   /* 1: Heun's second-order step (two predictions per step; the last step is Euler) */
    float cfg_scale;
    tuna_progress_fn progress;  /* may be NULL */
    void *progress_ctx;
} tuna_generate_params;

/* z: in, the initial noise [C, H, W] (noise_scale * N(0, I)); out, the image. */
tuna_status tuna_generate(const tuna_model *model, const tuna_generate_params *params, float *z,
                          const tuna_threads *pool, tuna_error *err);

#endif
