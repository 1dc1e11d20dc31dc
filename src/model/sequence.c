#include "model/sequence.h"

#include <stdlib.h>

static tuna_status check_segment(tuna_image_segment *s, const tuna_config *c, int k, int height, int width,
                                 tuna_error *err) {
    int p = c->patch_size;
    if (height <= 0 || width <= 0 || height % p || width % p)
        return tuna_fail(err, TUNA_ERR_INVALID, "image %d is %dx%d, not a multiple of the patch size %d", k,
                         height, width, p);
    s->height = height;
    s->width = width;
    s->grid_h = height / p;
    s->grid_w = width / p;
    long expected = (long)s->grid_h * s->grid_w + 1;
    if (s->length != expected)
        return tuna_fail(err, TUNA_ERR_INVALID,
                         "image segment %d at position %d has %d slots but a %dx%d image needs %ld (t slot + patches)",
                         k, s->offset, s->length, height, width, expected);
    return TUNA_OK;
}

tuna_status tuna_find_segments(const int32_t *ids, int length, const tuna_config *c, int image_count,
                               const int *heights, const int *widths, tuna_image_segment **segments, int *count,
                               tuna_error *err) {
    *segments = NULL;
    *count = 0;
    int found = 0;
    for (int i = 0; i + 1 < length; i++)
        if (ids[i] == c->tokens.boi && ids[i + 1] == c->tokens.image_pad) found++;
    if (found != image_count)
        return tuna_fail(err, TUNA_ERR_INVALID, "the ids hold %d image segments but %d images were given", found,
                         image_count);
    if (found == 0) return TUNA_OK;
    tuna_image_segment *list = calloc((size_t)found, sizeof *list);
    if (!list) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i + 1 < length; i++) {
        if (ids[i] != c->tokens.boi || ids[i + 1] != c->tokens.image_pad) continue;
        int end = i + 1;
        while (end < length && ids[end] == c->tokens.image_pad) end++;
        list[k].offset = i + 1;
        list[k].length = end - (i + 1);
        tuna_status s = check_segment(&list[k], c, k, heights[k], widths[k], err);
        if (s != TUNA_OK) {
            free(list);
            return s;
        }
        k++;
        i = end - 1;
    }
    *segments = list;
    *count = found;
    return TUNA_OK;
}

int tuna_segment_at(const tuna_image_segment *segments, int count, int i) {
    for (int k = 0; k < count; k++)
        if (i >= segments[k].offset && i < segments[k].offset + segments[k].length) return k;
    return -1;
}
