/* The one Tuna-2 graph (SPEC sections 1-4), internal to src/model.
 *
 * One forward serves inference and training: the rows of one or more requests
 * (tuna_forward_request, model/forward.h) are stacked for every matmul while
 * RoPE, attention and adaLN run per request. Each layer's forward takes an
 * optional record: NULL in inference (buffers are scratch, reused layer after
 * layer), or the layer's saved activations in training, which the layer's
 * backward (written beside it in layers.c) reads. Attention reads a
 * request's KV cache when it has one (prefill, decode, Euler steps after a
 * cached prefix) and the rows' own keys otherwise (training: rows [0, L)).
 *
 * Every buffer comes from the caller's workspace and every op goes through
 * the backend: the graph never mallocs and never calls a kernel directly. */
#ifndef TUNA_MODEL_GRAPH_H
#define TUNA_MODEL_GRAPH_H

#include "model/forward.h"
#include "ops/workspace.h"

/* Saved activations of one LLM layer (training), stacked rows. */
typedef struct {
    float *x_in, *norm1, *rstd1, *q, *k, *v, *att, *lse, *x_mid, *norm2, *rstd2, *gate, *up, *act;
} tuna_llm_record;

/* Saved activations of one flow-head block (training). */
typedef struct {
    float *mod; /* [images, 6d] */
    float *h_in, *n1, *rstd1, *a1, *q_pre, *k_pre, *q_rstd, *k_rstd, *q, *k, *v, *att, *lse, *o;
    float *h_mid, *n2, *rstd2, *b, *gate, *up, *act, *mlp_out;
} tuna_head_record;

/* Saved activations of the final layer and of the input embeddings. */
typedef struct {
    float *mod, *h, *n, *rstd, *m; /* mod [images, 2d]; the rest [rows, d] / [rows] */
} tuna_final_record;

typedef struct {
    float **cols, **conv, **rstd; /* per image: im2col [N, C p p], conv [N, d], RMSNorm rstd [N] */
} tuna_embed_record;

/* One request inside the graph. */
typedef struct {
    tuna_forward_request *request;
    int first_row, rows;          /* its rows in the stacked buffers */
    int first_image, images;      /* its images in the stacked per-image buffers */
    tuna_segment *segments;       /* every image segment, global positions (attention) */
    tuna_segment *local;          /* segments intersecting the rows, relative to first_row (adaLN) */
    int local_count, local_first; /* local[i] is image local_first + i of the request */
    tuna_rope_plan llm_rope, head_rope;
    float *logit_hidden;          /* TUNA_LOGITS_ROWS: the gathered hidden rows (kept for the backward) */
} tuna_graph_request;

typedef struct {
    const tuna_model *model;
    const tuna_config *config;
    const tuna_backend *be;
    const tuna_backend_ops *ops;
    tuna_workspace *ws;
    tuna_graph_request *requests;
    int count;
    int rows, images;             /* all requests together */
    int run_head;
    int recording;                /* training: keep the records below */
    /* stacked scratch */
    float *x;                     /* [rows, d] residual stream */
    float *a;                     /* [rows, d] normed input / projections */
    float *q, *k, *v, *attention; /* [rows, heads * head_dim] (widest of LLM and head) */
    float *gate, *up;             /* [rows, max(intermediate, p*p*C)] */
    /* time embedding per image (SPEC section 1): sinusoid -> W0 -> SiLU -> W2 = c, SiLU(c) */
    float *sinusoid, *time_hidden, *time_act, *time_embedding, *silu_time;
    float *modulation;            /* [images, 6d] inference scratch for adaLN vectors */
    /* training records */
    tuna_llm_record *llm;
    tuna_head_record *head;
    tuna_final_record final;
    tuna_embed_record embed;
    float *x_final, *final_rstd;  /* LLM output before its final RMSNorm */
    /* backward scratch */
    float *dx, *da, *dtmp, *dq, *dk, *dv, *dk_pre, *datt, *dgate, *dup, *dtemb, *dsilu, *dmod;
} tuna_graph;

/* Build the graph over the requests (checked) in ws and run the forward.
 * recording: keep the activations for tuna_graph_backward (requests must then
 * start at row 0). On success the caches hold row_end rows. */
tuna_status tuna_graph_forward(tuna_graph *g, const tuna_model *model, tuna_forward_request *requests, int count,
                               const tuna_backend *be, tuna_workspace *ws, int recording, tuna_error *err);

/* Backward of a recorded forward: dlogits[r] (d loss / d the request's logits,
 * or NULL) and dhead_out[r] (d loss / d its head_out, or NULL) in; every
 * parameter gradient ACCUMULATED into grads (a model bound to f32 buffers; a
 * tensor without data is frozen). */
tuna_status tuna_graph_backward(tuna_graph *g, const tuna_model *grads, const float *const *dlogits,
                                const float *const *dhead_out, tuna_error *err);

static inline int tuna_max_int(int a, int b) { return a > b ? a : b; }
static inline int tuna_min_int(int a, int b) { return a < b ? a : b; }

/* n floats of the graph's workspace (zeroed when asked), valid until the
 * workspace is reset. */
tuna_status tuna_graph_alloc(tuna_graph *g, float **out, int64_t n, int zeroed, tuna_error *err);

/* ---- layers (layers.c), forward beside backward ---- */
tuna_status tuna_time_embedding_forward(tuna_graph *g, tuna_error *err);
tuna_status tuna_time_embedding_backward(tuna_graph *g, const tuna_model *grads, tuna_error *err);
tuna_status tuna_input_embedding_forward(tuna_graph *g, tuna_error *err);
tuna_status tuna_input_embedding_backward(tuna_graph *g, const tuna_model *grads, tuna_error *err);
tuna_status tuna_llm_layer_forward(tuna_graph *g, int layer, tuna_llm_record *rec, tuna_error *err);
tuna_status tuna_llm_layer_backward(tuna_graph *g, int layer, const tuna_llm_record *rec, const tuna_model *grads,
                                    tuna_error *err);
tuna_status tuna_logits_forward(tuna_graph *g, tuna_error *err);
tuna_status tuna_logits_backward(tuna_graph *g, const tuna_model *grads, const float *const *dlogits, float *dhidden,
                                 tuna_error *err);
tuna_status tuna_head_block_forward(tuna_graph *g, int layer, tuna_head_record *rec, tuna_error *err);
tuna_status tuna_head_block_backward(tuna_graph *g, int layer, const tuna_head_record *rec, const tuna_model *grads,
                                     float *dh, tuna_error *err);
tuna_status tuna_final_layer_forward(tuna_graph *g, tuna_final_record *rec, tuna_error *err);
tuna_status tuna_final_layer_backward(tuna_graph *g, const tuna_model *grads, const float *const *dhead_out,
                                      float *dh, tuna_error *err);

#endif
