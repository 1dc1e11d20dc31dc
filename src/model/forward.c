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
