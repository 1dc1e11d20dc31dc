/* The inference entry point: a batch of requests over their KV caches
 * (forward.h), run by the one graph (graph.c, layers.c) without recording. */
#include "model/graph.h"

tuna_status tuna_model_forward(const tuna_model *model, tuna_forward_request *requests, int count,
                               const tuna_backend *be, tuna_workspace *ws, tuna_error *err) {
    tuna_workspace own;
    if (!ws) tuna_workspace_init(&own, be);
    tuna_workspace *use = ws ? ws : &own;
    tuna_workspace_reset(use);
    tuna_graph graph;
    tuna_status s = tuna_graph_forward(&graph, model, requests, count, be, use, 0, err);
    if (!ws) tuna_workspace_free(&own);
    return s;
}

/* ---- raster-strip unpatchify (SPEC section 4) ------------------------- */

void tuna_unpatchify(float *image, const float *slots, int channels, int height, int width) {
    /* slots viewed flat are the image in (H*W, C) raster order */
    size_t plane = (size_t)height * width;
    for (size_t pixel = 0; pixel < plane; pixel++)
        for (int c = 0; c < channels; c++) image[c * plane + pixel] = slots[pixel * channels + c];
}

void tuna_patchify_labels(float *slots, const float *image, int channels, int height, int width) {
    size_t plane = (size_t)height * width;
    for (size_t pixel = 0; pixel < plane; pixel++)
        for (int c = 0; c < channels; c++) slots[pixel * channels + c] = image[c * plane + pixel];
}
