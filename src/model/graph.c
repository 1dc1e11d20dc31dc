/* The one Tuna-2 graph: requests checked and laid out in the workspace, the
 * forward in the order of SPEC sections 1-4 (recording for training when
 * asked), and the backward in reverse. The layers are in layers.c. */
#include "model/graph.h"
#include "model/positions.h"

#include <string.h>

tuna_status tuna_graph_alloc(tuna_graph *g, float **out, int64_t n, int zeroed, tuna_error *err) {
    return tuna_workspace_floats(g->ws, n, zeroed, out, err);
}

static tuna_status alloc_bytes(tuna_graph *g, void **out, size_t count, size_t size, tuna_error *err) {
    size_t bytes;
    if (tuna_mul_overflows(count, size, &bytes)) return tuna_fail(err, TUNA_ERR_LIMIT, "graph bookkeeping overflows");
    return tuna_workspace_alloc(g->ws, bytes, 1, out, err);
}

/* ---- requests ---------------------------------------------------------------- */

static tuna_status check_request(const tuna_graph *g, const tuna_forward_request *rq, tuna_error *err) {
    const tuna_kv_cache *cache = rq->cache;
    if (!rq->sequence) return tuna_fail(err, TUNA_ERR_INVALID, "forward request without a sequence");
    if (rq->row_begin < 0 || rq->row_end <= rq->row_begin || rq->row_end > rq->sequence->length)
        return tuna_fail(err, TUNA_ERR_INVALID, "forward rows [%d, %d) outside the sequence of %d", rq->row_begin,
                         rq->row_end, rq->sequence->length);
    if (rq->run_head != g->run_head)
        return tuna_fail(err, TUNA_ERR_INVALID, "requests of one forward must agree on running the head");
    if (!cache && rq->row_begin != 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "rows from %d need the KV cache of the rows before", rq->row_begin);
    if (g->recording && rq->row_begin != 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "a recorded forward starts at row 0");
    if (g->recording && rq->sequence->clean_image)
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "training through the clean-image conditioning is not supported");
    for (int i = 0; rq->logits_mode == TUNA_LOGITS_ROWS && i < rq->logit_row_count; i++)
        if (!rq->logit_rows || rq->logit_rows[i] < rq->row_begin || rq->logit_rows[i] >= rq->row_end)
            return tuna_fail(err, TUNA_ERR_INVALID, "logit row outside the rows [%d, %d)", rq->row_begin, rq->row_end);
    if (!cache) return TUNA_OK;
    if (rq->row_end > cache->capacity)
        return tuna_fail(err, TUNA_ERR_LIMIT, "sequence of %d positions exceeds the KV cache capacity %d", rq->row_end,
                         cache->capacity);
    if (cache->llm_length != rq->row_begin || (g->run_head && cache->head_length != rq->row_begin))
        return tuna_fail(err, TUNA_ERR_INVALID, "KV cache holds %d rows, request starts at %d", cache->llm_length,
                         rq->row_begin);
    if (g->run_head && cache->head_layers != g->config->head.num_layers)
        return tuna_fail(err, TUNA_ERR_INVALID, "KV cache was made without the head");
    return TUNA_OK;
}

/* Global segments (attention) and the ones crossing the rows, relative to them (adaLN). */
static tuna_status build_segments(tuna_graph *g, tuna_graph_request *rs, tuna_error *err) {
    const tuna_sequence *seq = rs->request->sequence;
    int K = seq->image_count, begin = rs->request->row_begin, end = rs->request->row_end;
    TUNA_TRY(alloc_bytes(g, (void **)&rs->segments, (size_t)tuna_max_int(K, 1), sizeof *rs->segments, err));
    TUNA_TRY(alloc_bytes(g, (void **)&rs->local, (size_t)tuna_max_int(K, 1), sizeof *rs->local, err));
    rs->local_first = -1;
    for (int k = 0; k < K; k++) {
        const tuna_image_segment *sg = &seq->segments[k];
        rs->segments[k] = (tuna_segment){sg->offset, sg->length};
        int lo = tuna_max_int(sg->offset, begin), hi = tuna_min_int(sg->offset + sg->length, end);
        if (lo >= hi) continue;
        if (rs->local_first < 0) rs->local_first = k;
        rs->local[rs->local_count++] = (tuna_segment){lo - begin, hi - lo};
    }
    if (rs->local_first < 0) rs->local_first = 0;
    return TUNA_OK;
}

/* A RoPE plan of `rows` tokens in the workspace (every token NONE until filled). */
static tuna_status rope_plan(tuna_graph *g, tuna_rope_plan *plan, int rows, int head_dim, float **inv_freq,
                             tuna_error *err) {
    int64_t pairs = (int64_t)rows * (head_dim / 2);
    plan->len = rows;
    plan->head_dim = head_dim;
    TUNA_TRY(alloc_bytes(g, (void **)&plan->mode, (size_t)rows + 1, 1, err));
    TUNA_TRY(tuna_graph_alloc(g, &plan->cos, pairs + 1, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &plan->sin, pairs + 1, 0, err));
    return tuna_graph_alloc(g, inv_freq, head_dim / 2 + 1, 0, err);
}

static tuna_status prepare_request(tuna_graph *g, tuna_graph_request *rs, tuna_forward_request *rq, tuna_error *err) {
    const tuna_config *c = g->config;
    float *inv_freq;
    rs->request = rq;
    TUNA_TRY(check_request(g, rq, err));
    rs->first_row = g->rows;
    rs->rows = rq->row_end - rq->row_begin;
    rs->first_image = g->images;
    rs->images = rq->sequence->image_count;
    g->rows += rs->rows;
    g->images += rs->images;
    TUNA_TRY(build_segments(g, rs, err));
    TUNA_TRY(rope_plan(g, &rs->llm_rope, rs->rows, c->llm.head_dim, &inv_freq, err));
    tuna_llm_rope_fill(c, rq->row_begin, &rs->llm_rope, inv_freq);
    if (!g->run_head) return TUNA_OK;
    TUNA_TRY(rope_plan(g, &rs->head_rope, rs->rows, c->head.head_dim, &inv_freq, err));
    tuna_head_rope_fill(c, rq->sequence, rq->row_begin, &rs->head_rope, inv_freq);
    return TUNA_OK;
}

/* ---- buffers ------------------------------------------------------------------- */

static tuna_status alloc_scratch(tuna_graph *g, tuna_error *err) {
    const tuna_config *c = g->config;
    int64_t rows = g->rows, d = c->hidden_size, K = g->images;
    int out = c->patch_size * c->patch_size * c->image_channels;
    int64_t qw = tuna_max_int(c->llm.num_heads * c->llm.head_dim, c->head.num_heads * c->head.head_dim);
    int64_t kw = tuna_max_int(c->llm.num_kv_heads * c->llm.head_dim, c->head.num_kv_heads * c->head.head_dim);
    int64_t inter = tuna_max_int(tuna_max_int(c->llm.intermediate_size, c->head.intermediate_size), out);
    float **rows_d[] = {&g->x, &g->a};
    for (size_t i = 0; i < sizeof rows_d / sizeof *rows_d; i++) TUNA_TRY(tuna_graph_alloc(g, rows_d[i], rows * d, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->q, rows * qw, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->attention, rows * qw, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->k, rows * kw, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->v, rows * kw, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->gate, rows * inter, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->up, rows * inter, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->sinusoid, K * c->time_freq_dim, 0, err));
    float **per_image[] = {&g->time_hidden, &g->time_act, &g->time_embedding, &g->silu_time};
    for (size_t i = 0; i < sizeof per_image / sizeof *per_image; i++)
        TUNA_TRY(tuna_graph_alloc(g, per_image[i], K * d, 0, err));
    return tuna_graph_alloc(g, &g->modulation, K * 6 * d, 0, err);
}

static tuna_status alloc_llm_records(tuna_graph *g, tuna_error *err) {
    const tuna_llm_config *c = &g->config->llm;
    int64_t L = g->rows, d = g->config->hidden_size, qw = (int64_t)c->num_heads * c->head_dim;
    int64_t kw = (int64_t)c->num_kv_heads * c->head_dim, I = c->intermediate_size;
    TUNA_TRY(alloc_bytes(g, (void **)&g->llm, (size_t)c->num_layers, sizeof *g->llm, err));
    for (int l = 0; l < c->num_layers; l++) {
        tuna_llm_record *a = &g->llm[l];
        struct { float **p; int64_t n; } bufs[] = {
            {&a->x_in, L * d}, {&a->norm1, L * d}, {&a->rstd1, L}, {&a->q, L * qw}, {&a->k, L * kw},
            {&a->v, L * kw}, {&a->att, L * qw}, {&a->lse, L * c->num_heads}, {&a->x_mid, L * d},
            {&a->norm2, L * d}, {&a->rstd2, L}, {&a->gate, L * I}, {&a->up, L * I}, {&a->act, L * I},
        };
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) TUNA_TRY(tuna_graph_alloc(g, bufs[i].p, bufs[i].n, 0, err));
    }
    return TUNA_OK;
}

static tuna_status alloc_head_records(tuna_graph *g, tuna_error *err) {
    const tuna_head_config *c = &g->config->head;
    int64_t L = g->rows, d = g->config->hidden_size, qw = (int64_t)c->num_heads * c->head_dim;
    int64_t kw = (int64_t)c->num_kv_heads * c->head_dim, I = c->intermediate_size, K = g->images;
    TUNA_TRY(alloc_bytes(g, (void **)&g->head, (size_t)tuna_max_int(c->num_layers, 1), sizeof *g->head, err));
    for (int l = 0; l < c->num_layers; l++) {
        tuna_head_record *a = &g->head[l];
        struct { float **p; int64_t n; } bufs[] = {
            {&a->mod, K * 6 * d}, {&a->h_in, L * d}, {&a->n1, L * d}, {&a->rstd1, L}, {&a->a1, L * d},
            {&a->q_pre, L * qw}, {&a->k_pre, L * kw}, {&a->q_rstd, L * c->num_heads},
            {&a->k_rstd, L * c->num_kv_heads}, {&a->q, L * qw}, {&a->k, L * kw}, {&a->v, L * kw},
            {&a->att, L * qw}, {&a->lse, L * c->num_heads}, {&a->o, L * d}, {&a->h_mid, L * d},
            {&a->n2, L * d}, {&a->rstd2, L}, {&a->b, L * d}, {&a->gate, L * I}, {&a->up, L * I},
            {&a->act, L * I}, {&a->mlp_out, L * d},
        };
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) TUNA_TRY(tuna_graph_alloc(g, bufs[i].p, bufs[i].n, 0, err));
    }
    tuna_final_record *f = &g->final;
    TUNA_TRY(tuna_graph_alloc(g, &f->mod, K * 2 * d, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &f->h, L * d, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &f->n, L * d, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &f->rstd, L, 0, err));
    return tuna_graph_alloc(g, &f->m, L * d, 0, err);
}

static tuna_status alloc_records(tuna_graph *g, tuna_error *err) {
    size_t K = (size_t)tuna_max_int(g->images, 1);
    TUNA_TRY(alloc_bytes(g, (void **)&g->embed.cols, K, sizeof(float *), err));
    TUNA_TRY(alloc_bytes(g, (void **)&g->embed.conv, K, sizeof(float *), err));
    TUNA_TRY(alloc_bytes(g, (void **)&g->embed.rstd, K, sizeof(float *), err));
    TUNA_TRY(tuna_graph_alloc(g, &g->x_final, (int64_t)g->rows * g->config->hidden_size, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, &g->final_rstd, g->rows, 0, err));
    TUNA_TRY(alloc_llm_records(g, err));
    return g->run_head ? alloc_head_records(g, err) : TUNA_OK;
}

/* ---- forward ---------------------------------------------------------------------- */

static tuna_status run_forward(tuna_graph *g, tuna_error *err) {
    const tuna_config *c = g->config;
    TUNA_TRY(tuna_time_embedding_forward(g, err));
    TUNA_TRY(tuna_input_embedding_forward(g, err));
    for (int l = 0; l < c->llm.num_layers; l++)
        TUNA_TRY(tuna_llm_layer_forward(g, l, g->recording ? &g->llm[l] : NULL, err));
    /* hidden = RMSNorm(x_L), in place: the head reads it, the logits read it */
    int64_t n = (int64_t)g->rows * c->hidden_size;
    if (g->recording) g->ops->copy(g->be, g->x_final, g->x, sizeof(float) * (size_t)n);
    g->ops->rmsnorm(g->be, g->x, g->recording ? g->final_rstd : NULL, g->x, g->model->final_norm, g->rows,
                    c->hidden_size, (float)c->llm.rms_norm_eps);
    TUNA_TRY(tuna_logits_forward(g, err));
    if (!g->run_head) return TUNA_OK;
    for (int l = 0; l < c->head.num_layers; l++)
        TUNA_TRY(tuna_head_block_forward(g, l, g->recording ? &g->head[l] : NULL, err));
    return tuna_final_layer_forward(g, g->recording ? &g->final : NULL, err);
}

tuna_status tuna_graph_forward(tuna_graph *g, const tuna_model *model, tuna_forward_request *requests, int count,
                               const tuna_backend *be, tuna_workspace *ws, int recording, tuna_error *err) {
    memset(g, 0, sizeof *g);
    if (count <= 0) return tuna_fail(err, TUNA_ERR_INVALID, "forward without requests");
    g->model = model;
    g->config = &model->config;
    g->be = be;
    g->ops = be->ops;
    g->ws = ws;
    g->count = count;
    g->run_head = requests[0].run_head;
    g->recording = recording;
    TUNA_TRY(alloc_bytes(g, (void **)&g->requests, (size_t)count, sizeof *g->requests, err));
    for (int r = 0; r < count; r++) TUNA_TRY(prepare_request(g, &g->requests[r], &requests[r], err));
    TUNA_TRY(alloc_scratch(g, err));
    if (recording) TUNA_TRY(alloc_records(g, err));
    TUNA_TRY(run_forward(g, err));
    for (int r = 0; r < count; r++) {
        tuna_kv_cache *cache = requests[r].cache;
        if (!cache) continue;
        cache->llm_length = requests[r].row_end;
        if (g->run_head) cache->head_length = requests[r].row_end;
    }
    return TUNA_OK;
}

/* ---- backward ---------------------------------------------------------------------- */

static tuna_status alloc_gradients(tuna_graph *g, tuna_error *err) {
    const tuna_config *c = g->config;
    int64_t L = g->rows, d = c->hidden_size, K = tuna_max_int(g->images, 1);
    int out = c->patch_size * c->patch_size * c->image_channels;
    int64_t qw = tuna_max_int(c->llm.num_heads * c->llm.head_dim, c->head.num_heads * c->head.head_dim);
    int64_t kw = tuna_max_int(c->llm.num_kv_heads * c->llm.head_dim, c->head.num_kv_heads * c->head.head_dim);
    int64_t inter = tuna_max_int(c->llm.intermediate_size, c->head.intermediate_size), widest = tuna_max_int((int)d, out);
    struct { float **p; int64_t n; int zeroed; } bufs[] = {
        {&g->dx, L * d, 0}, {&g->da, L * widest, 0}, {&g->dtmp, L * widest, 0}, {&g->dq, L * qw, 0},
        {&g->datt, L * qw, 0}, {&g->dk, L * kw, 0}, {&g->dv, L * kw, 0}, {&g->dk_pre, L * kw, 0},
        {&g->dgate, L * inter, 0}, {&g->dup, L * inter, 0},
        {&g->dtemb, K * d, 1}, {&g->dsilu, K * d, 1}, {&g->dmod, K * 6 * d, 0}, /* dtemb, dsilu accumulate */
    };
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        TUNA_TRY(tuna_graph_alloc(g, bufs[i].p, bufs[i].n, bufs[i].zeroed, err));
    return TUNA_OK;
}

/* Flow head in reverse: d head_out -> d hidden (accumulated into dhidden). */
static tuna_status head_backward(tuna_graph *g, const tuna_model *grads, const float *const *dhead_out, float *dhidden,
                                 tuna_error *err) {
    int64_t n = (int64_t)g->rows * g->config->hidden_size;
    float *dh;
    TUNA_TRY(tuna_graph_alloc(g, &dh, n, 0, err));
    TUNA_TRY(tuna_final_layer_backward(g, grads, dhead_out, dh, err));
    for (int l = g->config->head.num_layers - 1; l >= 0; l--)
        TUNA_TRY(tuna_head_block_backward(g, l, &g->head[l], grads, dh, err));
    g->ops->add(g->be, dhidden, dh, n);
    return TUNA_OK;
}

tuna_status tuna_graph_backward(tuna_graph *g, const tuna_model *grads, const float *const *dlogits,
                                const float *const *dhead_out, tuna_error *err) {
    const tuna_config *c = g->config;
    if (!g->recording) return tuna_fail(err, TUNA_ERR_INVALID, "backward of a forward that was not recorded");
    int any_head = 0;
    for (int r = 0; dhead_out && r < g->count; r++) any_head |= dhead_out[r] != NULL;
    if (any_head && !g->run_head) return tuna_fail(err, TUNA_ERR_INVALID, "head gradient without a head forward");
    TUNA_TRY(alloc_gradients(g, err));
    float *dhidden;
    TUNA_TRY(tuna_graph_alloc(g, &dhidden, (int64_t)g->rows * c->hidden_size, 1, err));
    TUNA_TRY(tuna_logits_backward(g, grads, dlogits, dhidden, err));
    if (any_head) TUNA_TRY(head_backward(g, grads, dhead_out, dhidden, err));
    g->ops->rmsnorm_backward(g->be, g->dx, (float *)grads->final_norm, dhidden, g->x_final, g->model->final_norm,
                             g->final_rstd, g->rows, c->hidden_size);
    for (int l = c->llm.num_layers - 1; l >= 0; l--) TUNA_TRY(tuna_llm_layer_backward(g, l, &g->llm[l], grads, err));
    TUNA_TRY(tuna_input_embedding_backward(g, grads, err));
    return tuna_time_embedding_backward(g, grads, err);
}
