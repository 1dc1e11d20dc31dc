/* Tuna-2 forward pass (SPEC sections 1-4). See forward.h for the request model.
 *
 * Per forward:
 *   embed     token rows: embed_tokens[id]; segment k: t slot = time_embed(t_k),
 *             patch j = RMSNorm(conv(img_k))[j] (or mask_token)           (SPEC 1, 3)
 *   LLM       Qwen2 layers with 1D RoPE over global positions, omni mask  (SPEC 1, 3)
 *   hidden    final RMSNorm -> logits = hidden @ lm_head^T
 *   head      16 adaLN blocks on hidden, per-row RoPE kind, omni mask     (SPEC 2)
 *   final     shift,scale = W(SiLU(c)); out = W_lin(modulate(RMSNorm(h)))  (SPEC 2)
 * Modulation uses each image's own time embedding c_k on its segment rows. */
#include "model/forward.h"
#include "model/positions.h"
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-request bookkeeping ------------------------------------------- */

typedef struct {
    tuna_forward_request *request;
    int first_row;               /* row of this request in the stacked buffers */
    int rows;                    /* row_end - row_begin */
    tuna_segment *segments;      /* global positions, for attention */
    int segment_count;
    tuna_segment *local;         /* segments intersecting the rows, relative to first row */
    int local_count, local_first;/* local[i] is segment local_first + i */
    float *time_embedding;       /* [K, d] c_k */
    float *silu_time;            /* [K, d] SiLU(c_k), the adaLN input */
    float *modulation;           /* [K, 6d] scratch per block */
    tuna_rope_plan llm_rope, head_rope;
} request_state;

typedef struct {
    const tuna_model *model;
    const tuna_config *config;
    const tuna_threads *pool;
    request_state *requests;
    int count;
    int rows;                    /* all requests together */
    int run_head;
    float *x;                    /* [rows, d] residual stream */
    float *a;                    /* [rows, max(d, out)] normed input / projections */
    float *q, *k, *v, *attention;
    float *gate, *up;            /* [rows, intermediate] */
} forward_state;

static int max_int(int a, int b) { return a > b ? a : b; }

static float *alloc_floats(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* ---- time embedding (SPEC section 1) ----------------------------------- */

/* c = W2 SiLU(W0 sinusoid(t) + b0) + b2 for every image of the sequence. */
static tuna_status time_embedding_forward(forward_state *st, request_state *rs, tuna_error *err) {
    const tuna_model *m = st->model;
    const tuna_sequence *seq = rs->request->sequence;
    int K = seq->image_count, d = st->config->hidden_size, f = st->config->time_freq_dim;
    if (K == 0) return TUNA_OK;
    float *sinusoid = alloc_floats((size_t)K * f), *hidden = alloc_floats((size_t)K * d);
    rs->time_embedding = alloc_floats((size_t)K * d);
    rs->silu_time = alloc_floats((size_t)K * d);
    rs->modulation = alloc_floats((size_t)K * 6 * d);
    tuna_status s = TUNA_OK;
    if (!sinusoid || !hidden || !rs->time_embedding || !rs->silu_time || !rs->modulation)
        s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the time embedding");
    if (s == TUNA_OK) {
        tuna_timestep_embedding(sinusoid, seq->t, K, f, 10000.0);
        s = tuna_matmul_forward(hidden, sinusoid, m->time_weight0, m->time_bias0, K, f, st->pool, err);
    }
    if (s == TUNA_OK) {
        tuna_silu_forward(hidden, hidden, (int64_t)K * d);
        s = tuna_matmul_forward(rs->time_embedding, hidden, m->time_weight2, m->time_bias2, K, d, st->pool, err);
    }
    if (s == TUNA_OK) tuna_silu_forward(rs->silu_time, rs->time_embedding, (int64_t)K * d);
    free(sinusoid);
    free(hidden);
    return s;
}

/* ---- input embeddings (SPEC sections 1, 3) ----------------------------- */

/* RMSNorm(conv(image)) rows [N, d]: the vision encoder (SPEC section 1). */
static tuna_status vision_encoder_forward(forward_state *st, const float *image, int height, int width, float *out,
                                          tuna_error *err) {
    const tuna_model *m = st->model;
    int p = st->config->patch_size, n = (height / p) * (width / p);
    TUNA_TRY(tuna_patch_embed_forward(out, image, 1, st->config->image_channels, height, width, p, m->patch_weight,
                                      m->patch_bias, st->pool, err));
    tuna_rmsnorm_forward(out, NULL, out, m->patch_norm, n, st->config->hidden_size, tuna_model_patch_norm_eps(m),
                         st->pool);
    return TUNA_OK;
}

/* Patch embeddings of image k, with the mask token on masked patches. */
static tuna_status patch_embeddings(forward_state *st, const tuna_sequence *seq, int k, float *out,
                                    tuna_error *err) {
    const tuna_model *m = st->model;
    const tuna_image_segment *sg = &seq->segments[k];
    int d = st->config->hidden_size, n = sg->length - 1;
    TUNA_TRY(vision_encoder_forward(st, seq->images[k], sg->height, sg->width, out, err));
    const uint8_t *mask = seq->masks ? seq->masks[k] : NULL;
    if (!mask) return TUNA_OK;
    if (!m->mask_token) {
        for (int j = 0; j < n; j++)
            if (mask[j]) return tuna_fail(err, TUNA_ERR_INVALID, "patches are masked but the checkpoint has no mask_token");
        return TUNA_OK;
    }
    for (int j = 0; j < n; j++)
        if (mask[j]) memcpy(out + (size_t)j * d, m->mask_token, sizeof(float) * d);
    return TUNA_OK;
}

/* Reconstruction: rows [clean_offset, clean_offset + N) hold the clean image's patch embeddings. */
static tuna_status embed_clean_image(forward_state *st, request_state *rs, float *x, tuna_error *err) {
    const tuna_sequence *seq = rs->request->sequence;
    if (!seq->clean_image) return TUNA_OK;
    int d = st->config->hidden_size, p = st->config->patch_size;
    int n = (seq->clean_height / p) * (seq->clean_width / p);
    int begin = rs->request->row_begin, end = rs->request->row_end;
    int lo = max_int(seq->clean_offset, begin), hi = seq->clean_offset + n < end ? seq->clean_offset + n : end;
    if (lo >= hi) return TUNA_OK;
    float *rows = alloc_floats((size_t)n * d);
    if (!rows) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for clean image embeddings");
    tuna_status s = vision_encoder_forward(st, seq->clean_image, seq->clean_height, seq->clean_width, rows, err);
    if (s == TUNA_OK)
        memcpy(x + (size_t)(lo - begin) * d, rows + (size_t)(lo - seq->clean_offset) * d, sizeof(float) * d * (hi - lo));
    free(rows);
    return s;
}

static tuna_status embed_request(forward_state *st, request_state *rs, tuna_error *err) {
    const tuna_sequence *seq = rs->request->sequence;
    int d = st->config->hidden_size, begin = rs->request->row_begin;
    float *x = st->x + (size_t)rs->first_row * d;
    for (int i = 0; i < rs->rows; i++) {
        int pos = begin + i;
        if (tuna_segment_at(seq->segments, seq->image_count, pos) >= 0) continue;
        TUNA_TRY(tuna_embedding_forward(x + (size_t)i * d, st->model->embed_tokens, seq->ids + pos, 1, err));
    }
    TUNA_TRY(embed_clean_image(st, rs, x, err));
    for (int k = 0; k < seq->image_count; k++) {
        const tuna_image_segment *sg = &seq->segments[k];
        int lo = max_int(sg->offset, begin), hi = sg->offset + sg->length;
        if (hi > rs->request->row_end) hi = rs->request->row_end;
        if (lo >= hi) continue;
        if (lo == sg->offset) memcpy(x + (size_t)(lo - begin) * d, rs->time_embedding + (size_t)k * d, sizeof(float) * d);
        if (hi <= sg->offset + 1) continue;
        float *patches = alloc_floats((size_t)(sg->length - 1) * d);
        if (!patches) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for patch embeddings");
        tuna_status s = patch_embeddings(st, seq, k, patches, err);
        if (s == TUNA_OK) {
            int first_patch_row = max_int(lo, sg->offset + 1);
            memcpy(x + (size_t)(first_patch_row - begin) * d, patches + (size_t)(first_patch_row - sg->offset - 1) * d,
                   sizeof(float) * d * (size_t)(hi - first_patch_row));
        }
        free(patches);
        TUNA_TRY(s);
    }
    return TUNA_OK;
}

/* ---- positions and segments -------------------------------------------- */

static tuna_status build_segments(request_state *rs, tuna_error *err) {
    const tuna_sequence *seq = rs->request->sequence;
    int K = seq->image_count, begin = rs->request->row_begin, end = rs->request->row_end;
    rs->segments = calloc((size_t)(K ? K : 1), sizeof *rs->segments);
    rs->local = calloc((size_t)(K ? K : 1), sizeof *rs->local);
    if (!rs->segments || !rs->local) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    rs->local_first = -1;
    for (int k = 0; k < K; k++) {
        const tuna_image_segment *sg = &seq->segments[k];
        rs->segments[k] = (tuna_segment){sg->offset, sg->length};
        int lo = max_int(sg->offset, begin), hi = sg->offset + sg->length < end ? sg->offset + sg->length : end;
        if (lo >= hi) continue;
        if (rs->local_first < 0) rs->local_first = k;
        rs->local[rs->local_count++] = (tuna_segment){lo - begin, hi - lo};
    }
    rs->segment_count = K;
    if (rs->local_first < 0) rs->local_first = 0;
    return TUNA_OK;
}

/* ---- attention sub-layer shared by the LLM and the head ---------------- */

typedef struct {
    int heads, kv_heads, head_dim;
    float *cache_keys, *cache_values; /* this layer's rows in one request's cache */
} attention_geometry;

/* q, k [rows, heads, D] of one request already projected (and normed);
 * rotates them, appends k, v to the cache and attends over [0, row_end). */
static tuna_status attend_request(forward_state *st, request_state *rs, const tuna_rope_plan *plan,
                                  const attention_geometry *g, tuna_error *err) {
    int64_t qw = (int64_t)g->heads * g->head_dim, kw = (int64_t)g->kv_heads * g->head_dim;
    float *q = st->q + (size_t)rs->first_row * qw;
    float *k = st->k + (size_t)rs->first_row * kw;
    float *v = st->v + (size_t)rs->first_row * kw;
    tuna_rope_forward(q, rs->rows, g->heads, plan, st->pool);
    tuna_rope_forward(k, rs->rows, g->kv_heads, plan, st->pool);
    size_t at = (size_t)rs->request->row_begin * kw;
    memcpy(g->cache_keys + at, k, sizeof(float) * (size_t)rs->rows * kw);
    memcpy(g->cache_values + at, v, sizeof(float) * (size_t)rs->rows * kw);
    tuna_attention_params p = {
        .q_len = rs->rows, .q_start = rs->request->row_begin, .k_len = rs->request->row_end,
        .n_heads = g->heads, .n_kv_heads = g->kv_heads, .head_dim = g->head_dim, .scale = 0.0f,
        .segments = rs->segments, .n_segments = rs->segment_count,
    };
    return tuna_attention_forward(st->attention + (size_t)rs->first_row * qw, NULL, q, g->cache_keys, g->cache_values,
                                  &p, st->pool, err);
}

/* a = x W^T for the stacked rows. */
static tuna_status project(forward_state *st, float *y, const float *x, const tuna_tensor *w, const float *bias,
                           int64_t in, tuna_error *err) {
    return tuna_matmul_forward(y, x, w, bias, st->rows, in, st->pool, err);
}

/* q, k, v = a Wq^T + bq, a Wk^T + bk, a Wv^T + bv in one parallel region. */
static tuna_status project_qkv(forward_state *st, const tuna_tensor *wq, const float *bq, const tuna_tensor *wk,
                               const float *bk, const tuna_tensor *wv, const float *bv, tuna_error *err) {
    const tuna_matmul_target t[3] = {{st->q, wq, bq}, {st->k, wk, bk}, {st->v, wv, bv}};
    return tuna_matmul_forward_group(t, 3, st->a, st->rows, st->config->hidden_size, st->pool, err);
}

/* SwiGLU MLP on st->a [rows, d] -> st->a: down(silu(gate(a)) * up(a)). */
static tuna_status mlp_forward(forward_state *st, const tuna_tensor *gate_w, const tuna_tensor *up_w,
                               const tuna_tensor *down_w, int inter, tuna_error *err) {
    int d = st->config->hidden_size;
    const tuna_matmul_target gate_up[2] = {{st->gate, gate_w, NULL}, {st->up, up_w, NULL}};
    TUNA_TRY(tuna_matmul_forward_group(gate_up, 2, st->a, st->rows, d, st->pool, err));
    tuna_swiglu_forward(st->gate, st->gate, st->up, (int64_t)st->rows * inter);
    return project(st, st->a, st->gate, down_w, NULL, inter, err);
}

/* ---- LLM layer (Qwen2) -------------------------------------------------- */

static tuna_status llm_layer_forward(forward_state *st, int layer, tuna_error *err) {
    const tuna_llm_config *c = &st->config->llm;
    const tuna_llm_layer *w = &st->model->llm_layers[layer];
    int d = st->config->hidden_size;
    int64_t qw = (int64_t)c->num_heads * c->head_dim, kw = (int64_t)c->num_kv_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps;

    /* h = x + Wo attention(RoPE(Wq a + bq), RoPE(Wk a + bk), Wv a + bv),  a = RMSNorm(x) */
    tuna_rmsnorm_forward(st->a, NULL, st->x, w->input_norm, st->rows, d, eps, st->pool);
    TUNA_TRY(project_qkv(st, w->q_weight, w->q_bias, w->k_weight, w->k_bias, w->v_weight, w->v_bias, err));
    for (int r = 0; r < st->count; r++) {
        tuna_kv_cache *cache = st->requests[r].request->cache;
        attention_geometry g = {c->num_heads, c->num_kv_heads, c->head_dim, tuna_kv_llm_keys(cache, layer),
                                tuna_kv_llm_values(cache, layer)};
        TUNA_TRY(attend_request(st, &st->requests[r], &st->requests[r].llm_rope, &g, err));
    }
    TUNA_TRY(project(st, st->a, st->attention, w->o_weight, NULL, qw, err));
    tuna_vec_acc(st->x, st->a, (int64_t)st->rows * d);
    (void)kw;

    /* x = h + down(silu(gate(b)) * up(b)),  b = RMSNorm(h) */
    tuna_rmsnorm_forward(st->a, NULL, st->x, w->post_attention_norm, st->rows, d, eps, st->pool);
    TUNA_TRY(mlp_forward(st, w->gate_weight, w->up_weight, w->down_weight, c->intermediate_size, err));
    tuna_vec_acc(st->x, st->a, (int64_t)st->rows * d);
    return TUNA_OK;
}

/* ---- flow-head block (SPEC section 2) ---------------------------------- */

/* mod_k = W SiLU(c_k) + b for every image of every request ([K, parts*d]). */
static tuna_status modulation_forward(forward_state *st, const tuna_tensor *w, const float *bias, int parts,
                                      tuna_error *err) {
    int d = st->config->hidden_size;
    for (int r = 0; r < st->count; r++) {
        request_state *rs = &st->requests[r];
        int K = rs->request->sequence->image_count;
        if (K == 0 || rs->local_count == 0) continue;
        TUNA_TRY(tuna_matmul_forward(rs->modulation, rs->silu_time, w, bias, K, d, st->pool, err));
    }
    (void)parts;
    return TUNA_OK;
}

/* y = x*(1+scale_k)+shift_k on each request's segment rows, chunk `which`
 * (0 = first shift/scale pair, 1 = second) of a [K, parts*d] modulation. */
static void modulate_rows(forward_state *st, float *y, int shift_chunk, int parts) {
    int d = st->config->hidden_size;
    int64_t stride = (int64_t)parts * d;
    for (int r = 0; r < st->count; r++) {
        request_state *rs = &st->requests[r];
        if (rs->local_count == 0) continue;
        const float *mod = rs->modulation + (size_t)rs->local_first * stride;
        float *rows = y + (size_t)rs->first_row * d;
        tuna_adaln_modulate_forward(rows, rows, mod + (size_t)shift_chunk * d, mod + (size_t)(shift_chunk + 1) * d,
                                    stride, rs->rows, d, rs->local, rs->local_count);
    }
}

/* x += gate_k * y on segment rows, x += y elsewhere. */
static void gated_residual(forward_state *st, const float *y, int gate_chunk) {
    int d = st->config->hidden_size;
    int64_t stride = 6 * (int64_t)d;
    for (int r = 0; r < st->count; r++) {
        request_state *rs = &st->requests[r];
        const float *gate = rs->modulation ? rs->modulation + (size_t)rs->local_first * stride + (size_t)gate_chunk * d
                                           : NULL;
        tuna_adaln_gate_residual_forward(st->x + (size_t)rs->first_row * d, y + (size_t)rs->first_row * d, gate, stride,
                                         rs->rows, d, rs->local, rs->local_count);
    }
}

static tuna_status head_block_forward(forward_state *st, int layer, tuna_error *err) {
    const tuna_head_config *c = &st->config->head;
    const tuna_head_block *w = &st->model->head_blocks[layer];
    int d = st->config->hidden_size;
    int64_t qw = (int64_t)c->num_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps, qk_eps = (float)c->qk_norm_eps;

    /* shift1, scale1, gate1, shift2, scale2, gate2 = W SiLU(c) + b */
    TUNA_TRY(modulation_forward(st, w->modulation_weight, w->modulation_bias, 6, err));

    /* a = modulate(RMSNorm(h), shift1, scale1); q, k = RMSNorm_head(Wq a, Wk a) */
    tuna_rmsnorm_forward(st->a, NULL, st->x, w->input_norm, st->rows, d, eps, st->pool);
    modulate_rows(st, st->a, 0, 6);
    TUNA_TRY(project_qkv(st, w->q_weight, NULL, w->k_weight, NULL, w->v_weight, NULL, err));
    tuna_rmsnorm_forward(st->q, NULL, st->q, w->q_norm, (int64_t)st->rows * c->num_heads, c->head_dim, qk_eps,
                         st->pool);
    tuna_rmsnorm_forward(st->k, NULL, st->k, w->k_norm, (int64_t)st->rows * c->num_kv_heads, c->head_dim, qk_eps,
                         st->pool);
    for (int r = 0; r < st->count; r++) {
        tuna_kv_cache *cache = st->requests[r].request->cache;
        attention_geometry g = {c->num_heads, c->num_kv_heads, c->head_dim, tuna_kv_head_keys(cache, layer),
                                tuna_kv_head_values(cache, layer)};
        TUNA_TRY(attend_request(st, &st->requests[r], &st->requests[r].head_rope, &g, err));
    }
    /* h = h + gate1 * Wo attention */
    TUNA_TRY(project(st, st->a, st->attention, w->o_weight, NULL, qw, err));
    gated_residual(st, st->a, 2);

    /* h = h + gate2 * mlp(modulate(RMSNorm(h), shift2, scale2)) */
    tuna_rmsnorm_forward(st->a, NULL, st->x, w->post_attention_norm, st->rows, d, eps, st->pool);
    modulate_rows(st, st->a, 3, 6);
    TUNA_TRY(mlp_forward(st, w->gate_weight, w->up_weight, w->down_weight, c->intermediate_size, err));
    gated_residual(st, st->a, 5);
    return TUNA_OK;
}

/* FinalLayer: out = W_lin (RMSNorm(h) * (1 + scale) + shift) + b, modulated on segments. */
static tuna_status final_layer_forward(forward_state *st, tuna_error *err) {
    const tuna_final_layer *fl = &st->model->final_layer;
    int d = st->config->hidden_size;
    TUNA_TRY(modulation_forward(st, fl->modulation_weight, fl->modulation_bias, 2, err));
    tuna_rmsnorm_forward(st->a, NULL, st->x, fl->norm, st->rows, d, (float)st->config->head.final_norm_eps, st->pool);
    modulate_rows(st, st->a, 0, 2);
    /* the output width p*p*C may exceed d: project into the gate buffer */
    int64_t out = (int64_t)st->config->patch_size * st->config->patch_size * st->config->image_channels;
    TUNA_TRY(project(st, st->gate, st->a, fl->linear_weight, fl->linear_bias, d, err));
    for (int r = 0; r < st->count; r++) {
        request_state *rs = &st->requests[r];
        if (rs->request->head_out)
            memcpy(rs->request->head_out, st->gate + (size_t)rs->first_row * out, sizeof(float) * rs->rows * out);
    }
    return TUNA_OK;
}

/* ---- outputs ------------------------------------------------------------ */

static tuna_status write_llm_outputs(forward_state *st, tuna_error *err) {
    const tuna_model *m = st->model;
    int d = st->config->hidden_size;
    for (int r = 0; r < st->count; r++) {
        request_state *rs = &st->requests[r];
        tuna_forward_request *rq = rs->request;
        const float *hidden = st->x + (size_t)rs->first_row * d;
        if (rq->hidden) memcpy(rq->hidden, hidden, sizeof(float) * (size_t)rs->rows * d);
        if (!rq->logits || rq->logits_mode == TUNA_LOGITS_NONE) continue;
        int first = rq->logits_mode == TUNA_LOGITS_LAST ? rs->rows - 1 : 0;
        TUNA_TRY(tuna_matmul_forward(rq->logits, hidden + (size_t)first * d, m->lm_head, NULL, rs->rows - first, d,
                                     st->pool, err));
    }
    return TUNA_OK;
}

/* ---- setup and teardown ------------------------------------------------- */

static tuna_status check_request(const tuna_config *c, const tuna_forward_request *rq, int run_head,
                                 tuna_error *err) {
    const tuna_kv_cache *cache = rq->cache;
    if (!rq->sequence || !cache) return tuna_fail(err, TUNA_ERR_INVALID, "forward request without sequence or cache");
    if (rq->row_begin < 0 || rq->row_end <= rq->row_begin || rq->row_end > rq->sequence->length)
        return tuna_fail(err, TUNA_ERR_INVALID, "forward rows [%d, %d) outside the sequence of %d", rq->row_begin,
                         rq->row_end, rq->sequence->length);
    if (rq->row_end > cache->capacity)
        return tuna_fail(err, TUNA_ERR_LIMIT, "sequence of %d positions exceeds the KV cache capacity %d", rq->row_end,
                         cache->capacity);
    if (cache->llm_length != rq->row_begin || (run_head && cache->head_length != rq->row_begin))
        return tuna_fail(err, TUNA_ERR_INVALID, "KV cache holds %d rows, request starts at %d", cache->llm_length,
                         rq->row_begin);
    if (run_head && cache->head_layers != c->head.num_layers)
        return tuna_fail(err, TUNA_ERR_INVALID, "KV cache was made without the head");
    return TUNA_OK;
}

static void free_state(forward_state *st) {
    for (int r = 0; r < st->count; r++) {
        request_state *rs = &st->requests[r];
        free(rs->segments);
        free(rs->local);
        free(rs->time_embedding);
        free(rs->silu_time);
        free(rs->modulation);
        tuna_rope_plan_free(&rs->llm_rope);
        tuna_rope_plan_free(&rs->head_rope);
    }
    free(st->requests);
    free(st->x);
    free(st->a);
    free(st->q);
    free(st->k);
    free(st->v);
    free(st->attention);
    free(st->gate);
    free(st->up);
}

static tuna_status alloc_buffers(forward_state *st, tuna_error *err) {
    const tuna_config *c = st->config;
    size_t rows = (size_t)st->rows;
    int out = c->patch_size * c->patch_size * c->image_channels;
    int qw = max_int(c->llm.num_heads * c->llm.head_dim, c->head.num_heads * c->head.head_dim);
    int kw = max_int(c->llm.num_kv_heads * c->llm.head_dim, c->head.num_kv_heads * c->head.head_dim);
    int inter = max_int(max_int(c->llm.intermediate_size, c->head.intermediate_size), out);
    st->x = alloc_floats(rows * c->hidden_size);
    st->a = alloc_floats(rows * c->hidden_size);
    st->q = alloc_floats(rows * qw);
    st->k = alloc_floats(rows * kw);
    st->v = alloc_floats(rows * kw);
    st->attention = alloc_floats(rows * qw);
    st->gate = alloc_floats(rows * inter);
    st->up = alloc_floats(rows * inter);
    if (!st->x || !st->a || !st->q || !st->k || !st->v || !st->attention || !st->gate || !st->up)
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for activations of %zu rows", rows);
    return TUNA_OK;
}

static tuna_status prepare(forward_state *st, tuna_forward_request *requests, int count, tuna_error *err) {
    st->run_head = requests[0].run_head;
    st->requests = calloc((size_t)count, sizeof *st->requests);
    if (!st->requests) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    st->count = count;
    for (int r = 0; r < count; r++) {
        request_state *rs = &st->requests[r];
        rs->request = &requests[r];
        if (requests[r].run_head != st->run_head)
            return tuna_fail(err, TUNA_ERR_INVALID, "requests of one forward must agree on running the head");
        TUNA_TRY(check_request(st->config, &requests[r], st->run_head, err));
        rs->first_row = st->rows;
        rs->rows = requests[r].row_end - requests[r].row_begin;
        st->rows += rs->rows;
        TUNA_TRY(build_segments(rs, err));
        TUNA_TRY(time_embedding_forward(st, rs, err));
        TUNA_TRY(tuna_llm_rope_plan(st->config, rs->request->row_begin, rs->rows, &rs->llm_rope, err));
        if (st->run_head)
            TUNA_TRY(tuna_head_rope_plan(st->config, rs->request->sequence, rs->request->row_begin, rs->rows,
                                         &rs->head_rope, err));
    }
    return alloc_buffers(st, err);
}

static tuna_status run(forward_state *st, tuna_error *err) {
    for (int r = 0; r < st->count; r++) TUNA_TRY(embed_request(st, &st->requests[r], err));
    for (int l = 0; l < st->config->llm.num_layers; l++) TUNA_TRY(llm_layer_forward(st, l, err));
    tuna_rmsnorm_forward(st->x, NULL, st->x, st->model->final_norm, st->rows, st->config->hidden_size,
                         (float)st->config->llm.rms_norm_eps, st->pool);
    TUNA_TRY(write_llm_outputs(st, err));
    if (!st->run_head) return TUNA_OK;
    for (int l = 0; l < st->config->head.num_layers; l++) TUNA_TRY(head_block_forward(st, l, err));
    return final_layer_forward(st, err);
}

tuna_status tuna_model_forward(const tuna_model *model, tuna_forward_request *requests, int count,
                               const tuna_threads *pool, tuna_error *err) {
    if (count <= 0) return tuna_fail(err, TUNA_ERR_INVALID, "forward without requests");
    forward_state st;
    memset(&st, 0, sizeof st);
    st.model = model;
    st.config = &model->config;
    st.pool = pool;
    tuna_status s = prepare(&st, requests, count, err);
    if (s == TUNA_OK) s = run(&st, err);
    if (s == TUNA_OK) {
        for (int r = 0; r < count; r++) {
            requests[r].cache->llm_length = requests[r].row_end;
            if (st.run_head) requests[r].cache->head_length = requests[r].row_end;
        }
    }
    free_state(&st);
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
