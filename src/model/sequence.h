/* A sequence the model reads (SPEC section 3): token ids with image segments.
 *
 * Each image segment is `boi`, then N+1 `image_pad` slots (the t slot, then N
 * patches), then `eoi`. offset = index of the t slot, length = N+1. The K
 * images are given in order of appearance, each [C, H, W] f32, with its t. */
#ifndef TUNA_MODEL_SEQUENCE_H
#define TUNA_MODEL_SEQUENCE_H

#include "core/status.h"
#include "model/config.h"

#include <stdint.h>

typedef struct {
    int offset;           /* index of the t slot */
    int length;           /* N + 1 */
    int height, width;    /* image size in pixels */
    int grid_h, grid_w;   /* patch grid: height / p, width / p */
} tuna_image_segment;

typedef struct {
    const int32_t *ids;
    int length;
    int image_count;
    tuna_image_segment *segments;  /* owned by whoever built the sequence */
    const float *const *images;    /* image_count pointers to [C, H, W] */
    const float *t;                /* image_count values */
    const uint8_t *const *masks;   /* image_count pointers to [N] (1 = mask_token) or NULL; array may be NULL */
    /* Reconstruction conditioning (the reference's clean_image_embeds): rows
     * [clean_offset, clean_offset + N) outside every segment take the patch
     * embeddings of this clean image instead of their token embeddings. */
    const float *clean_image;      /* [C, clean_height, clean_width] or NULL */
    int clean_height, clean_width, clean_offset;
} tuna_sequence;

/* Find the image segments of ids: every `boi` followed by a run of
 * `image_pad`. Checks each against the given image sizes (run = (H/p)(W/p)+1).
 * *segments is malloc'd (caller frees); *count may be 0. */
tuna_status tuna_find_segments(const int32_t *ids, int length, const tuna_config *config, int image_count,
                               const int *heights, const int *widths, tuna_image_segment **segments, int *count,
                               tuna_error *err);

/* Index of the segment containing position i, or -1. */
int tuna_segment_at(const tuna_image_segment *segments, int count, int i);

#endif
