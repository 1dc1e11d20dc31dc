/* The layers of the Tuna-2 graph (SPEC sections 1-4), each forward beside
 * its backward. See graph.h for the graph they run in.
 *
 * Forward (saved activations of a record in brackets):
 *   time:   c_k = W2 SiLU(W0 sin(t_k) + b0) + b2, and SiLU(c_k)  [sin, W0 out, SiLU, c]
 *   embed:  token rows: embed_tokens[id]; t slot: c_k; patch rows:
 *           RMSNorm(conv(img_k)) or mask_token                  [im2col, conv, rstd]
 *   LLM l:  a = RMSNorm(x); q,k,v = a W + b; RoPE; o = attn(q,k,v) over the cache or the rows
 *           x' = x + o Wo;  b = RMSNorm(x'); x'' = x' + down(silu(gate b) * up b)
 *                                             [x, a, rstd, q, k, v, o, lse, x', b, rstd, gate, up, act]
 *   hidden: RMSNorm(x_L); logits = hidden lm_head^T on the rows asked for
 *   head j: n1 = RMSNorm(h); a1 = mod(n1, shift1, scale1); q = RMSNorm_head(a1 Wq), k likewise; RoPE
 *           o = attn Wo; h' = h + gate1*o; n2 = RMSNorm(h'); b = mod(n2, shift2, scale2);
 *           f = down(silu(gate b) * up b); h'' = h' + gate2*f
 *   final:  out = Wl mod(RMSNorm(h), shift, scale) + bl
 * adaLN vectors (shift, scale, gate) = W SiLU(c_k) + b per image, applied on
 * that image's segment rows only. Backwards ACCUMULATE every parameter
 * gradient (+=) into the gradient model; a gradient tensor without data is
 * frozen and gets none. */
#include "core/tensor.h"
#include "model/graph.h"

#include <string.h>

static int64_t d_of(const tuna_graph *g) { return g->config->hidden_size; }
static size_t fbytes(int64_t n) { return sizeof(float) * (size_t)n; }
static float *grad_data(const tuna_tensor *t) { return t ? (float *)t->data : NULL; }
static float *grad_vector(const float *p) { return (float *)p; }

/* A [d, C, p, p] convolution weight seen as the [d, C*p*p] matrix of im2col. */
static tuna_tensor flat_matrix(const tuna_tensor *w) {
    tuna_tensor flat;
    int64_t shape[2] = {w->shape[0], tuna_tensor_numel(w) / w->shape[0]};
    tuna_tensor_init_view(&flat, w->dtype, 2, shape, w->data);
    return flat;
}

/* ---- linear layer ---------------------------------------------------------
 * y = x W^T + b;  backward: dx (+)= dy W;  dW += dy^T x;  db += sum_rows dy. */

static tuna_status linear_backward(tuna_graph *g, float *dx, int accumulate, const float *dy, const float *x,
                                   const tuna_tensor *w, const tuna_tensor *dw, float *dbias, int64_t M,
                                   tuna_error *err) {
    tuna_tensor flat = flat_matrix(w);
    int64_t N = flat.shape[0], K = flat.shape[1];
    float *dW = grad_data(dw);
    if (dW) g->ops->matmul_backward_weight(g->be, dW, dbias, dy, x, M, N, K);
    else if (dbias)
        for (int64_t i = 0; i < M; i++) g->ops->add(g->be, dbias, dy + i * N, N);
    if (!dx) return TUNA_OK;
    return g->ops->matmul_backward_input(g->be, dx, dy, &flat, M, accumulate, err);
}

/* ---- time embedding (SPEC section 1) --------------------------------------
 * Per request (its images form one product): c = W2 SiLU(W0 sin(t) + b0) + b2. */

tuna_status tuna_time_embedding_forward(tuna_graph *g, tuna_error *err) {
    const tuna_model *m = g->model;
    int64_t d = d_of(g), f = g->config->time_freq_dim;
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        int64_t K = rs->images, i0 = rs->first_image;
        if (K == 0) continue;
        float *sinusoid = g->sinusoid + i0 * f, *hidden = g->time_hidden + i0 * d, *act = g->time_act + i0 * d;
        float *c = g->time_embedding + i0 * d;
        g->ops->timestep_embedding(g->be, sinusoid, rs->request->sequence->t, K, (int)f, 10000.0);
        TUNA_TRY(g->ops->matmul(g->be, hidden, sinusoid, m->time_weight0, m->time_bias0, K, f, err));
        g->ops->silu(g->be, act, hidden, K * d);
        TUNA_TRY(g->ops->matmul(g->be, c, act, m->time_weight2, m->time_bias2, K, d, err));
        g->ops->silu(g->be, g->silu_time + i0 * d, c, K * d);
    }
    return TUNA_OK;
}

/* dc = dtemb + SiLU'(c) dsilu, then back through W2, SiLU, W0 (all images at once). */
tuna_status tuna_time_embedding_backward(tuna_graph *g, const tuna_model *grads, tuna_error *err) {
    const tuna_model *m = g->model;
    int64_t K = g->images, d = d_of(g);
    if (K == 0) return TUNA_OK;
    g->ops->silu_backward(g->be, g->dtmp, g->dsilu, g->time_embedding, K * d);
    g->ops->add(g->be, g->dtemb, g->dtmp, K * d);
    TUNA_TRY(linear_backward(g, g->da, 0, g->dtemb, g->time_act, m->time_weight2, grads->time_weight2,
                             grad_vector(grads->time_bias2), K, err));
    g->ops->silu_backward(g->be, g->dq, g->da, g->time_hidden, K * d);
    return linear_backward(g, NULL, 0, g->dq, g->sinusoid, m->time_weight0, grads->time_weight0,
                           grad_vector(grads->time_bias0), K, err);
}

/* ---- input embeddings (SPEC sections 1, 3) -------------------------------- */

/* The vision encoder: out[N, d] = RMSNorm(conv(image)), the conv as im2col +
 * matmul. cols, conv [N, C p p], [N, d] and rstd [N] (may be NULL) are kept
 * by a recording graph. */
static tuna_status vision_encode(tuna_graph *g, const float *image, int height, int width, float *cols, float *conv,
                                 float *rstd, float *out, tuna_error *err) {
    const tuna_model *m = g->model;
    int p = g->config->patch_size, C = g->config->image_channels;
    int64_t n = (int64_t)(height / p) * (width / p);
    tuna_tensor flat = flat_matrix(m->patch_weight);
    g->ops->im2col(g->be, cols, image, C, height, width, p);
    TUNA_TRY(g->ops->matmul(g->be, conv, cols, &flat, m->patch_bias, n, flat.shape[1], err));
    g->ops->rmsnorm(g->be, out, rstd, conv, m->patch_norm, n, d_of(g), tuna_model_patch_norm_eps(m));
    return TUNA_OK;
}

static tuna_status encoder_buffers(tuna_graph *g, int64_t n, float **cols, float **conv, float **rstd, float **out,
                                   tuna_error *err) {
    int64_t width = (int64_t)g->config->image_channels * g->config->patch_size * g->config->patch_size;
    *rstd = NULL;
    TUNA_TRY(tuna_graph_alloc(g, cols, n * width, 0, err));
    TUNA_TRY(tuna_graph_alloc(g, conv, n * d_of(g), 0, err));
    TUNA_TRY(tuna_graph_alloc(g, out, n * d_of(g), 0, err));
    return g->recording ? tuna_graph_alloc(g, rstd, n, 0, err) : TUNA_OK;
}

/* Patch embeddings [N, d] of image k of the request (global image i), with
 * the mask token on masked patches. */
static tuna_status patch_embeddings(tuna_graph *g, const tuna_graph_request *rs, int k, float **rows,
                                    tuna_error *err) {
    const tuna_model *m = g->model;
    const tuna_sequence *seq = rs->request->sequence;
    const tuna_image_segment *sg = &seq->segments[k];
    int64_t n = sg->length - 1, d = d_of(g), i = rs->first_image + k;
    float *cols, *conv, *rstd;
    TUNA_TRY(encoder_buffers(g, n, &cols, &conv, &rstd, rows, err));
    if (g->recording) g->embed.cols[i] = cols, g->embed.conv[i] = conv, g->embed.rstd[i] = rstd;
    TUNA_TRY(vision_encode(g, seq->images[k], sg->height, sg->width, cols, conv, rstd, *rows, err));
    const uint8_t *mask = seq->masks ? seq->masks[k] : NULL;
    for (int64_t j = 0; mask && j < n; j++) {
        if (!mask[j]) continue;
        if (!m->mask_token)
            return tuna_fail(err, TUNA_ERR_INVALID, "patches are masked but the checkpoint has no mask_token");
        g->ops->copy(g->be, *rows + j * d, m->mask_token, fbytes(d));
    }
    return TUNA_OK;
}

/* Reconstruction: rows [clean_offset, clean_offset + N) hold the clean
 * image's patch embeddings (inference only: a recording graph refuses it). */
static tuna_status embed_clean_image(tuna_graph *g, const tuna_graph_request *rs, float *x, tuna_error *err) {
    const tuna_sequence *seq = rs->request->sequence;
    if (!seq->clean_image) return TUNA_OK;
    int p = g->config->patch_size, n = (seq->clean_height / p) * (seq->clean_width / p);
    int begin = rs->request->row_begin;
    int lo = tuna_max_int(seq->clean_offset, begin), hi = tuna_min_int(seq->clean_offset + n, rs->request->row_end);
    if (lo >= hi) return TUNA_OK;
    float *cols, *conv, *rstd, *rows;
    TUNA_TRY(encoder_buffers(g, n, &cols, &conv, &rstd, &rows, err));
    TUNA_TRY(vision_encode(g, seq->clean_image, seq->clean_height, seq->clean_width, cols, conv, rstd, rows, err));
    g->ops->copy(g->be, x + (size_t)(lo - begin) * d_of(g), rows + (size_t)(lo - seq->clean_offset) * d_of(g),
                 fbytes((int64_t)(hi - lo) * d_of(g)));
    return TUNA_OK;
}

/* The request's rows of the residual stream: tokens, t slots, patches. */
static tuna_status embed_request(tuna_graph *g, const tuna_graph_request *rs, tuna_error *err) {
    const tuna_sequence *seq = rs->request->sequence;
    int64_t d = d_of(g);
    int begin = rs->request->row_begin, end = rs->request->row_end;
    float *x = g->x + (size_t)rs->first_row * d;
    for (int i = 0; i < rs->rows; i++) {
        int pos = begin + i;
        if (tuna_segment_at(seq->segments, seq->image_count, pos) >= 0) continue;
        TUNA_TRY(g->ops->embedding(g->be, x + (size_t)i * d, g->model->embed_tokens, seq->ids + pos, 1, err));
    }
    TUNA_TRY(embed_clean_image(g, rs, x, err));
    for (int k = 0; k < rs->images; k++) {
        const tuna_image_segment *sg = &seq->segments[k];
        int lo = tuna_max_int(sg->offset, begin), hi = tuna_min_int(sg->offset + sg->length, end);
        if (lo >= hi) continue;
        if (lo == sg->offset)
            g->ops->copy(g->be, x + (size_t)(lo - begin) * d, g->time_embedding + (size_t)(rs->first_image + k) * d,
                         fbytes(d));
        if (hi <= sg->offset + 1) continue;
        float *patches;
        TUNA_TRY(patch_embeddings(g, rs, k, &patches, err));
        int first = tuna_max_int(lo, sg->offset + 1);
        g->ops->copy(g->be, x + (size_t)(first - begin) * d, patches + (size_t)(first - sg->offset - 1) * d,
                     fbytes((int64_t)(hi - first) * d));
    }
    return TUNA_OK;
}

tuna_status tuna_input_embedding_forward(tuna_graph *g, tuna_error *err) {
    for (int r = 0; r < g->count; r++) TUNA_TRY(embed_request(g, &g->requests[r], err));
    return TUNA_OK;
}

/* dx rows -> token table, time embedding (t slot), patch conv + norm, mask token. */
tuna_status tuna_input_embedding_backward(tuna_graph *g, const tuna_model *grads, tuna_error *err) {
    const tuna_model *m = g->model;
    int64_t d = d_of(g);
    float *dtable = grad_data(grads->embed_tokens), *dmask = grad_vector(grads->mask_token);
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        const tuna_sequence *seq = rs->request->sequence;
        const float *dx = g->dx + (size_t)rs->first_row * d; /* recorded rows start at position 0 */
        for (int i = 0; dtable && i < rs->rows; i++)
            if (tuna_segment_at(seq->segments, seq->image_count, i) < 0)
                g->ops->embedding_backward(g->be, dtable, dx + (size_t)i * d, seq->ids + i, 1, d);
        for (int k = 0; k < rs->images; k++) {
            const tuna_image_segment *sg = &seq->segments[k];
            int64_t n = sg->length - 1, i = rs->first_image + k;
            g->ops->add(g->be, g->dtemb + i * d, dx + (size_t)sg->offset * d, d); /* d c_k += dx[t slot] */
            float *drows = g->dtmp;
            g->ops->copy(g->be, drows, dx + (size_t)(sg->offset + 1) * d, fbytes(n * d));
            const uint8_t *mask = seq->masks ? seq->masks[k] : NULL;
            for (int64_t j = 0; mask && j < n; j++) {
                if (!mask[j]) continue;
                if (dmask) g->ops->add(g->be, dmask, drows + j * d, d);
                g->ops->zero(g->be, drows + j * d, fbytes(d));
            }
            g->ops->rmsnorm_backward(g->be, g->da, grad_vector(grads->patch_norm), drows, g->embed.conv[i],
                                     m->patch_norm, g->embed.rstd[i], n, d);
            TUNA_TRY(linear_backward(g, NULL, 0, g->da, g->embed.cols[i], m->patch_weight, grads->patch_weight,
                                     grad_vector(grads->patch_bias), n, err));
        }
    }
    return TUNA_OK;
}

/* ---- attention sub-layer (SPEC sections 2, 3) -----------------------------
 * Per request: RoPE on q, k; k, v appended to its cache (when it has one);
 * softmax(q k^T / sqrt(D) + omni mask) v over keys [0, row_end). */

typedef struct {
    int heads, kv_heads, head_dim;
    int in_head; /* 0: LLM layer `layer`, 1: head block `layer` (picks the cache and the RoPE plan) */
    int layer;
} attention_site;

static const tuna_rope_plan *plan_of(const tuna_graph_request *rs, const attention_site *s) {
    return s->in_head ? &rs->head_rope : &rs->llm_rope;
}

static tuna_attention_params attention_params(const tuna_graph_request *rs, const attention_site *s) {
    return (tuna_attention_params){.q_len = rs->rows, .q_start = rs->request->row_begin,
                                   .k_len = rs->request->row_end, .n_heads = s->heads, .n_kv_heads = s->kv_heads,
                                   .head_dim = s->head_dim, .scale = 0.0f, .segments = rs->segments,
                                   .n_segments = rs->request->sequence->image_count};
}

static tuna_status attention_forward(tuna_graph *g, const attention_site *s, float *q, float *k, float *v,
                                     float *out, float *lse, tuna_error *err) {
    int64_t qw = (int64_t)s->heads * s->head_dim, kw = (int64_t)s->kv_heads * s->head_dim;
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        size_t row = (size_t)rs->first_row;
        float *qr = q + row * qw, *kr = k + row * kw, *vr = v + row * kw;
        g->ops->rope(g->be, qr, rs->rows, s->heads, plan_of(rs, s));
        g->ops->rope(g->be, kr, rs->rows, s->kv_heads, plan_of(rs, s));
        const float *keys = kr, *values = vr;
        tuna_kv_cache *cache = rs->request->cache;
        if (cache) {
            float *ck = s->in_head ? tuna_kv_head_keys(cache, s->layer) : tuna_kv_llm_keys(cache, s->layer);
            float *cv = s->in_head ? tuna_kv_head_values(cache, s->layer) : tuna_kv_llm_values(cache, s->layer);
            size_t at = (size_t)rs->request->row_begin * kw;
            g->ops->copy(g->be, ck + at, kr, fbytes(rs->rows * kw));
            g->ops->copy(g->be, cv + at, vr, fbytes(rs->rows * kw));
            keys = ck, values = cv;
        }
        tuna_attention_params p = attention_params(rs, s);
        TUNA_TRY(g->ops->attention(g->be, out + row * qw, lse ? lse + row * s->heads : NULL, qr, keys, values, &p,
                                   err));
    }
    return TUNA_OK;
}

/* Recorded rows attend to themselves (row_begin 0): dq written, dk, dv
 * accumulated from zero, then RoPE undone on dq, dk. */
static tuna_status attention_backward(tuna_graph *g, const attention_site *s, const float *q, const float *k,
                                      const float *v, const float *out, const float *lse, const float *dout,
                                      tuna_error *err) {
    int64_t qw = (int64_t)s->heads * s->head_dim, kw = (int64_t)s->kv_heads * s->head_dim;
    g->ops->zero(g->be, g->dk, fbytes(g->rows * kw));
    g->ops->zero(g->be, g->dv, fbytes(g->rows * kw));
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        size_t row = (size_t)rs->first_row;
        float *dq = g->dq + row * qw, *dk = g->dk + row * kw, *dv = g->dv + row * kw;
        tuna_attention_params p = attention_params(rs, s);
        TUNA_TRY(g->ops->attention_backward(g->be, dq, dk, dv, dout + row * qw, q + row * qw, k + row * kw,
                                            v + row * kw, out + row * qw, lse + row * s->heads, &p, err));
        g->ops->rope_backward(g->be, dq, rs->rows, s->heads, plan_of(rs, s));
        g->ops->rope_backward(g->be, dk, rs->rows, s->kv_heads, plan_of(rs, s));
    }
    return TUNA_OK;
}

/* ---- SwiGLU MLP -------------------------------------------------------------
 * out = down(silu(gate x) * up x); act may alias gate (inference). */

typedef struct {
    const tuna_tensor *gate, *up, *down;
    int64_t inter;
} mlp_weights;

static tuna_status mlp_forward(tuna_graph *g, const mlp_weights *w, const float *x, float *gate, float *up, float *act,
                               float *out, tuna_error *err) {
    const tuna_matmul_target gate_up[2] = {{gate, w->gate, NULL}, {up, w->up, NULL}};
    TUNA_TRY(g->ops->matmul_group(g->be, gate_up, 2, x, g->rows, d_of(g), err));
    g->ops->swiglu(g->be, act, gate, up, g->rows * w->inter);
    return g->ops->matmul(g->be, out, act, w->down, NULL, g->rows, w->inter, err);
}

/* dx = d/dx of the MLP given dout (written, not accumulated). */
static tuna_status mlp_backward(tuna_graph *g, const mlp_weights *w, const mlp_weights *gw, const float *x,
                                const float *gate, const float *up, const float *act, const float *dout, float *dx,
                                tuna_error *err) {
    float *dact = g->dgate; /* dact, then dgate in place */
    TUNA_TRY(linear_backward(g, dact, 0, dout, act, w->down, gw->down, NULL, g->rows, err));
    g->ops->swiglu_backward(g->be, g->dgate, g->dup, dact, gate, up, g->rows * w->inter);
    TUNA_TRY(linear_backward(g, dx, 0, g->dgate, x, w->gate, gw->gate, NULL, g->rows, err));
    return linear_backward(g, dx, 1, g->dup, x, w->up, gw->up, NULL, g->rows, err);
}

/* ---- LLM layer (Qwen2, SPEC section 1) ------------------------------------- */

static attention_site llm_site(const tuna_graph *g, int layer) {
    const tuna_llm_config *c = &g->config->llm;
    return (attention_site){c->num_heads, c->num_kv_heads, c->head_dim, 0, layer};
}

tuna_status tuna_llm_layer_forward(tuna_graph *g, int layer, tuna_llm_record *rec, tuna_error *err) {
    const tuna_llm_config *c = &g->config->llm;
    const tuna_llm_layer *w = &g->model->llm_layers[layer];
    int64_t n = g->rows, d = d_of(g), qw = (int64_t)c->num_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps;
    attention_site site = llm_site(g, layer);

    /* x' = x + Wo attention(RoPE(Wq a + bq), RoPE(Wk a + bk), Wv a + bv),  a = RMSNorm(x) */
    if (rec) g->ops->copy(g->be, rec->x_in, g->x, fbytes(n * d));
    float *a = rec ? rec->norm1 : g->a;
    g->ops->rmsnorm(g->be, a, rec ? rec->rstd1 : NULL, g->x, w->input_norm, n, d, eps);
    float *q = rec ? rec->q : g->q, *k = rec ? rec->k : g->k, *v = rec ? rec->v : g->v;
    const tuna_matmul_target qkv[3] = {{q, w->q_weight, w->q_bias}, {k, w->k_weight, w->k_bias},
                                       {v, w->v_weight, w->v_bias}};
    TUNA_TRY(g->ops->matmul_group(g->be, qkv, 3, a, n, d, err));
    float *att = rec ? rec->att : g->attention;
    TUNA_TRY(attention_forward(g, &site, q, k, v, att, rec ? rec->lse : NULL, err));
    TUNA_TRY(g->ops->matmul(g->be, g->a, att, w->o_weight, NULL, n, qw, err));
    g->ops->add(g->be, g->x, g->a, n * d);

    /* x'' = x' + down(silu(gate(b)) * up(b)),  b = RMSNorm(x') */
    if (rec) g->ops->copy(g->be, rec->x_mid, g->x, fbytes(n * d));
    float *b = rec ? rec->norm2 : g->a;
    g->ops->rmsnorm(g->be, b, rec ? rec->rstd2 : NULL, g->x, w->post_attention_norm, n, d, eps);
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, c->intermediate_size};
    TUNA_TRY(mlp_forward(g, &mw, b, rec ? rec->gate : g->gate, rec ? rec->up : g->up, rec ? rec->act : g->gate, g->a,
                         err));
    g->ops->add(g->be, g->x, g->a, n * d);
    return TUNA_OK;
}

/* g->dx: in, d loss / d (layer output); out, d loss / d (layer input). */
tuna_status tuna_llm_layer_backward(tuna_graph *g, int layer, const tuna_llm_record *rec, const tuna_model *grads,
                                    tuna_error *err) {
    const tuna_llm_config *c = &g->config->llm;
    const tuna_llm_layer *w = &g->model->llm_layers[layer], *gw = &grads->llm_layers[layer];
    int64_t n = g->rows, d = d_of(g);
    float *dx = g->dx;
    attention_site site = llm_site(g, layer);
    /* x'' = x' + mlp(RMSNorm(x')) */
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, c->intermediate_size};
    mlp_weights mg = {gw->gate_weight, gw->up_weight, gw->down_weight, c->intermediate_size};
    TUNA_TRY(mlp_backward(g, &mw, &mg, rec->norm2, rec->gate, rec->up, rec->act, dx, g->da, err));
    g->ops->rmsnorm_backward(g->be, g->dtmp, grad_vector(gw->post_attention_norm), g->da, rec->x_mid,
                             w->post_attention_norm, rec->rstd2, n, d);
    g->ops->add(g->be, dx, g->dtmp, n * d);
    /* x' = x + Wo attention(...) */
    TUNA_TRY(linear_backward(g, g->datt, 0, dx, rec->att, w->o_weight, gw->o_weight, NULL, n, err));
    TUNA_TRY(attention_backward(g, &site, rec->q, rec->k, rec->v, rec->att, rec->lse, g->datt, err));
    TUNA_TRY(linear_backward(g, g->da, 0, g->dq, rec->norm1, w->q_weight, gw->q_weight, grad_vector(gw->q_bias), n,
                             err));
    TUNA_TRY(linear_backward(g, g->da, 1, g->dk, rec->norm1, w->k_weight, gw->k_weight, grad_vector(gw->k_bias), n,
                             err));
    TUNA_TRY(linear_backward(g, g->da, 1, g->dv, rec->norm1, w->v_weight, gw->v_weight, grad_vector(gw->v_bias), n,
                             err));
    g->ops->rmsnorm_backward(g->be, g->dtmp, grad_vector(gw->input_norm), g->da, rec->x_in, w->input_norm,
                             rec->rstd1, n, d);
    g->ops->add(g->be, dx, g->dtmp, n * d);
    return TUNA_OK;
}

/* ---- logits ------------------------------------------------------------------
 * logits = hidden lm_head^T on the rows each request asks for. */

tuna_status tuna_logits_forward(tuna_graph *g, tuna_error *err) {
    int64_t d = d_of(g);
    for (int r = 0; r < g->count; r++) {
        tuna_graph_request *rs = &g->requests[r];
        const tuna_forward_request *rq = rs->request;
        const float *hidden = g->x + (size_t)rs->first_row * d;
        if (rq->hidden) g->ops->copy(g->be, rq->hidden, hidden, fbytes(rs->rows * d));
        if (!rq->logits || rq->logits_mode == TUNA_LOGITS_NONE) continue;
        int64_t first = 0, count = rs->rows;
        if (rq->logits_mode == TUNA_LOGITS_LAST) first = rs->rows - 1, count = 1;
        if (rq->logits_mode == TUNA_LOGITS_ROWS) { /* gather the rows (kept for the backward) */
            count = rq->logit_row_count;
            if (count == 0) continue;
            TUNA_TRY(tuna_graph_alloc(g, &rs->logit_hidden, count * d, 0, err));
            for (int64_t i = 0; i < count; i++)
                g->ops->copy(g->be, rs->logit_hidden + i * d,
                             hidden + (size_t)(rq->logit_rows[i] - rq->row_begin) * d, fbytes(d));
            hidden = rs->logit_hidden;
        }
        TUNA_TRY(g->ops->matmul(g->be, rq->logits, hidden + first * d, g->model->lm_head, NULL, count, d, err));
    }
    return TUNA_OK;
}

/* dhidden += d/dhidden of the logits of TUNA_LOGITS_ROWS requests. */
tuna_status tuna_logits_backward(tuna_graph *g, const tuna_model *grads, const float *const *dlogits, float *dhidden,
                                 tuna_error *err) {
    int64_t d = d_of(g);
    for (int r = 0; dlogits && r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        const tuna_forward_request *rq = rs->request;
        if (!dlogits[r] || rq->logit_row_count == 0) continue;
        if (rq->logits_mode != TUNA_LOGITS_ROWS)
            return tuna_fail(err, TUNA_ERR_INVALID, "the backward takes logits of listed rows (TUNA_LOGITS_ROWS)");
        int64_t count = rq->logit_row_count;
        float *dsel;
        TUNA_TRY(tuna_graph_alloc(g, &dsel, count * d, 0, err));
        TUNA_TRY(linear_backward(g, dsel, 0, dlogits[r], rs->logit_hidden, g->model->lm_head, grads->lm_head, NULL,
                                 count, err));
        for (int64_t i = 0; i < count; i++)
            g->ops->add(g->be, dhidden + (size_t)(rs->first_row + rq->logit_rows[i] - rq->row_begin) * d,
                        dsel + i * d, d);
    }
    return TUNA_OK;
}

/* ---- adaLN (SPEC section 2) ---------------------------------------------------
 * mod_k = W SiLU(c_k) + b: `parts` vectors of d per image, [images, parts*d];
 * a request's rows use the vectors of the images whose segments they cross. */

static tuna_status modulation_forward(tuna_graph *g, float *mod, const tuna_tensor *w, const float *bias, int parts,
                                      tuna_error *err) {
    int64_t d = d_of(g);
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        if (rs->images == 0 || rs->local_count == 0) continue;
        TUNA_TRY(g->ops->matmul(g->be, mod + (size_t)rs->first_image * parts * d, g->silu_time + (size_t)rs->first_image * d,
                                w, bias, rs->images, d, err));
    }
    return TUNA_OK;
}

/* dW += dmod^T SiLU(c); db += sum dmod; dSiLU(c) += dmod W */
static tuna_status modulation_backward(tuna_graph *g, const float *dmod, const tuna_tensor *w, const tuna_tensor *dw,
                                       float *dbias, tuna_error *err) {
    if (g->images == 0) return TUNA_OK;
    return linear_backward(g, g->dsilu, 1, dmod, g->silu_time, w, dw, dbias, g->images, err);
}

/* The first vector of the request's first image on its rows, or NULL. */
static const float *mod_base(const tuna_graph *g, const tuna_graph_request *rs, const float *mod, int parts) {
    if (!rs->local_count) return NULL;
    return mod + (size_t)(rs->first_image + rs->local_first) * parts * d_of(g);
}

/* y = x*(1 + scale) + shift on segment rows (y = x elsewhere), vectors `chunk`, `chunk+1`. */
static void modulate(tuna_graph *g, float *y, const float *x, const float *mod, int chunk, int parts) {
    int64_t d = d_of(g);
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        const float *base = mod_base(g, rs, mod, parts);
        size_t row = (size_t)rs->first_row * d;
        g->ops->adaln_modulate(g->be, y + row, x + row, base ? base + chunk * d : NULL,
                               base ? base + (chunk + 1) * d : NULL, parts * d, rs->rows, d, rs->local,
                               rs->local_count);
    }
}

static void modulate_backward(tuna_graph *g, float *dx, const float *dy, const float *x, const float *mod,
                              float *dmod, int chunk, int parts) {
    int64_t d = d_of(g);
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        const float *base = mod_base(g, rs, mod, parts);
        float *dbase = base ? dmod + (base - mod) : NULL;
        size_t row = (size_t)rs->first_row * d;
        g->ops->adaln_modulate_backward(g->be, dx + row, dbase ? dbase + chunk * d : NULL,
                                        dbase ? dbase + (chunk + 1) * d : NULL, dy + row, x + row,
                                        base ? base + (chunk + 1) * d : NULL, parts * d, rs->rows, d, rs->local,
                                        rs->local_count);
    }
}

/* h += gate * y on segment rows, h += y elsewhere (vector `chunk` of 6). */
static void gated_residual(tuna_graph *g, float *h, const float *y, const float *mod, int chunk) {
    int64_t d = d_of(g);
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        const float *base = mod_base(g, rs, mod, 6);
        size_t row = (size_t)rs->first_row * d;
        g->ops->adaln_gate_residual(g->be, h + row, y + row, base ? base + chunk * d : NULL, 6 * d, rs->rows, d,
                                    rs->local, rs->local_count);
    }
}

/* dy = dh * gate (dh elsewhere), dgate += dh * y; dh itself passes through. */
static void gated_residual_backward(tuna_graph *g, float *dy, const float *dh, const float *y, const float *mod,
                                    float *dmod, int chunk) {
    int64_t d = d_of(g);
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        const float *base = mod_base(g, rs, mod, 6);
        float *dbase = base ? dmod + (base - mod) : NULL;
        size_t row = (size_t)rs->first_row * d;
        g->ops->adaln_gate_residual_backward(g->be, dy + row, dbase ? dbase + chunk * d : NULL, dh + row, y + row,
                                             base ? base + chunk * d : NULL, 6 * d, rs->rows, d, rs->local,
                                             rs->local_count);
    }
}

/* ---- flow-head block (SPEC section 2) ------------------------------------------ */

static attention_site head_site(const tuna_graph *g, int layer) {
    const tuna_head_config *c = &g->config->head;
    return (attention_site){c->num_heads, c->num_kv_heads, c->head_dim, 1, layer};
}

tuna_status tuna_head_block_forward(tuna_graph *g, int layer, tuna_head_record *rec, tuna_error *err) {
    const tuna_head_config *c = &g->config->head;
    const tuna_head_block *w = &g->model->head_blocks[layer];
    int64_t n = g->rows, d = d_of(g), qw = (int64_t)c->num_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps, qk_eps = (float)c->qk_norm_eps;
    attention_site site = head_site(g, layer);

    /* shift1, scale1, gate1, shift2, scale2, gate2 = W SiLU(c) + b */
    float *mod = rec ? rec->mod : g->modulation;
    TUNA_TRY(modulation_forward(g, mod, w->modulation_weight, w->modulation_bias, 6, err));

    /* a1 = modulate(RMSNorm(h), shift1, scale1); q, k = RMSNorm_head(Wq a1, Wk a1) */
    if (rec) g->ops->copy(g->be, rec->h_in, g->x, fbytes(n * d));
    float *n1 = rec ? rec->n1 : g->a, *a1 = rec ? rec->a1 : g->a;
    g->ops->rmsnorm(g->be, n1, rec ? rec->rstd1 : NULL, g->x, w->input_norm, n, d, eps);
    modulate(g, a1, n1, mod, 0, 6);
    float *q_pre = rec ? rec->q_pre : g->q, *k_pre = rec ? rec->k_pre : g->k, *v = rec ? rec->v : g->v;
    const tuna_matmul_target qkv[3] = {{q_pre, w->q_weight, NULL}, {k_pre, w->k_weight, NULL}, {v, w->v_weight, NULL}};
    TUNA_TRY(g->ops->matmul_group(g->be, qkv, 3, a1, n, d, err));
    float *q = rec ? rec->q : g->q, *k = rec ? rec->k : g->k;
    g->ops->rmsnorm(g->be, q, rec ? rec->q_rstd : NULL, q_pre, w->q_norm, n * c->num_heads, c->head_dim, qk_eps);
    g->ops->rmsnorm(g->be, k, rec ? rec->k_rstd : NULL, k_pre, w->k_norm, n * c->num_kv_heads, c->head_dim, qk_eps);
    float *att = rec ? rec->att : g->attention;
    TUNA_TRY(attention_forward(g, &site, q, k, v, att, rec ? rec->lse : NULL, err));

    /* h' = h + gate1 * Wo attention */
    float *o = rec ? rec->o : g->a;
    TUNA_TRY(g->ops->matmul(g->be, o, att, w->o_weight, NULL, n, qw, err));
    gated_residual(g, g->x, o, mod, 2);

    /* h'' = h' + gate2 * mlp(modulate(RMSNorm(h'), shift2, scale2)) */
    if (rec) g->ops->copy(g->be, rec->h_mid, g->x, fbytes(n * d));
    float *n2 = rec ? rec->n2 : g->a, *b = rec ? rec->b : g->a;
    g->ops->rmsnorm(g->be, n2, rec ? rec->rstd2 : NULL, g->x, w->post_attention_norm, n, d, eps);
    modulate(g, b, n2, mod, 3, 6);
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, c->intermediate_size};
    float *f = rec ? rec->mlp_out : g->a;
    TUNA_TRY(mlp_forward(g, &mw, b, rec ? rec->gate : g->gate, rec ? rec->up : g->up, rec ? rec->act : g->gate, f,
                         err));
    gated_residual(g, g->x, f, mod, 5);
    return TUNA_OK;
}

/* dh: in, d loss / d (block output); out, d loss / d (block input). */
tuna_status tuna_head_block_backward(tuna_graph *g, int layer, const tuna_head_record *rec, const tuna_model *grads,
                                     float *dh, tuna_error *err) {
    const tuna_head_config *c = &g->config->head;
    const tuna_head_block *w = &g->model->head_blocks[layer], *gw = &grads->head_blocks[layer];
    int64_t n = g->rows, d = d_of(g);
    attention_site site = head_site(g, layer);
    float *dmod = g->dmod;
    g->ops->zero(g->be, dmod, fbytes((int64_t)g->images * 6 * d));

    /* h'' = h' + gate2 * f */
    float *df = g->dtmp;
    gated_residual_backward(g, df, dh, rec->mlp_out, rec->mod, dmod, 5);
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, c->intermediate_size};
    mlp_weights mg = {gw->gate_weight, gw->up_weight, gw->down_weight, c->intermediate_size};
    TUNA_TRY(mlp_backward(g, &mw, &mg, rec->b, rec->gate, rec->up, rec->act, df, g->da, err));
    modulate_backward(g, g->da, g->da, rec->n2, rec->mod, dmod, 3, 6);
    g->ops->rmsnorm_backward(g->be, g->dtmp, grad_vector(gw->post_attention_norm), g->da, rec->h_mid,
                             w->post_attention_norm, rec->rstd2, n, d);
    g->ops->add(g->be, dh, g->dtmp, n * d);

    /* h' = h + gate1 * Wo attention(...) */
    float *dout = g->dtmp;
    gated_residual_backward(g, dout, dh, rec->o, rec->mod, dmod, 2);
    TUNA_TRY(linear_backward(g, g->datt, 0, dout, rec->att, w->o_weight, gw->o_weight, NULL, n, err));
    TUNA_TRY(attention_backward(g, &site, rec->q, rec->k, rec->v, rec->att, rec->lse, g->datt, err));
    /* q = RMSNorm_head(q_pre): dq_pre into datt (free now), dk_pre into its own buffer */
    g->ops->rmsnorm_backward(g->be, g->datt, grad_vector(gw->q_norm), g->dq, rec->q_pre, w->q_norm, rec->q_rstd,
                             n * c->num_heads, c->head_dim);
    g->ops->rmsnorm_backward(g->be, g->dk_pre, grad_vector(gw->k_norm), g->dk, rec->k_pre, w->k_norm, rec->k_rstd,
                             n * c->num_kv_heads, c->head_dim);
    TUNA_TRY(linear_backward(g, g->da, 0, g->datt, rec->a1, w->q_weight, gw->q_weight, NULL, n, err));
    TUNA_TRY(linear_backward(g, g->da, 1, g->dk_pre, rec->a1, w->k_weight, gw->k_weight, NULL, n, err));
    TUNA_TRY(linear_backward(g, g->da, 1, g->dv, rec->a1, w->v_weight, gw->v_weight, NULL, n, err));
    modulate_backward(g, g->da, g->da, rec->n1, rec->mod, dmod, 0, 6);
    g->ops->rmsnorm_backward(g->be, g->dtmp, grad_vector(gw->input_norm), g->da, rec->h_in, w->input_norm,
                             rec->rstd1, n, d);
    g->ops->add(g->be, dh, g->dtmp, n * d);
    return modulation_backward(g, dmod, w->modulation_weight, gw->modulation_weight,
                               grad_vector(gw->modulation_bias), err);
}

/* ---- final layer (SPEC section 2) ----------------------------------------------
 * out = W_lin (RMSNorm(h) * (1 + scale) + shift) + b, modulated on segments. */

static int64_t out_width(const tuna_graph *g) {
    return (int64_t)g->config->patch_size * g->config->patch_size * g->config->image_channels;
}

tuna_status tuna_final_layer_forward(tuna_graph *g, tuna_final_record *rec, tuna_error *err) {
    const tuna_final_layer *fl = &g->model->final_layer;
    int64_t n = g->rows, d = d_of(g), out = out_width(g);
    float *mod = rec ? rec->mod : g->modulation;
    TUNA_TRY(modulation_forward(g, mod, fl->modulation_weight, fl->modulation_bias, 2, err));
    if (rec) g->ops->copy(g->be, rec->h, g->x, fbytes(n * d));
    float *normed = rec ? rec->n : g->a, *m = rec ? rec->m : g->a;
    g->ops->rmsnorm(g->be, normed, rec ? rec->rstd : NULL, g->x, fl->norm, n, d, (float)g->config->head.final_norm_eps);
    modulate(g, m, normed, mod, 0, 2);
    /* the output width p*p*C may exceed d: project into the gate buffer */
    TUNA_TRY(g->ops->matmul(g->be, g->gate, m, fl->linear_weight, fl->linear_bias, n, d, err));
    for (int r = 0; r < g->count; r++) {
        const tuna_graph_request *rs = &g->requests[r];
        if (rs->request->head_out)
            g->ops->copy(g->be, rs->request->head_out, g->gate + (size_t)rs->first_row * out, fbytes(rs->rows * out));
    }
    return TUNA_OK;
}

/* dhead_out[r] [rows_r, out] (NULL: zero) -> dh [rows, d] (written). */
tuna_status tuna_final_layer_backward(tuna_graph *g, const tuna_model *grads, const float *const *dhead_out, float *dh,
                                      tuna_error *err) {
    const tuna_final_layer *fl = &g->model->final_layer, *gl = &grads->final_layer;
    const tuna_final_record *rec = &g->final;
    int64_t n = g->rows, d = d_of(g), out = out_width(g);
    float *dout;
    TUNA_TRY(tuna_graph_alloc(g, &dout, n * out, 1, err));
    for (int r = 0; r < g->count; r++)
        if (dhead_out[r])
            g->ops->copy(g->be, dout + (size_t)g->requests[r].first_row * out, dhead_out[r],
                         fbytes(g->requests[r].rows * out));
    float *dmod = g->dmod;
    g->ops->zero(g->be, dmod, fbytes((int64_t)g->images * 2 * d));
    TUNA_TRY(linear_backward(g, g->da, 0, dout, rec->m, fl->linear_weight, gl->linear_weight,
                             grad_vector(gl->linear_bias), n, err));
    modulate_backward(g, g->da, g->da, rec->n, rec->mod, dmod, 0, 2);
    g->ops->rmsnorm_backward(g->be, dh, grad_vector(gl->norm), g->da, rec->h, fl->norm, rec->rstd, n, d);
    return modulation_backward(g, dmod, fl->modulation_weight, gl->modulation_weight, grad_vector(gl->modulation_bias),
                               err);
}
