/* Training step of the Tuna-2 model: forward with saved activations, the
 * losses, and the backward pass of every op, in the order of SPEC sections
 * 1-5. One sequence, rows [0, L), f32.
 *
 * Forward (saved activations in brackets):
 *   embed:  x0 = token rows | t slot = c_k = W2 SiLU(W0 sin(t_k) + b0) + b2 | patch rows =
 *           RMSNorm(conv(img_k)) or mask_token                        [sin, time hidden, conv, rstd]
 *   LLM l:  a = RMSNorm(x); q,k,v = a W + b; RoPE; o = attn(q,k,v)     [x, a, rstd, q, k, v, o, lse]
 *           x' = x + o Wo;  b = RMSNorm(x'); x'' = x' + down(silu(gate b) * up b)  [x', b, rstd, gate, up, act]
 *   hidden = RMSNorm(x_L); logits = hidden lm_head^T, only on the rows the CE reads
 *           (labels[i+1] != -100): the other rows get no gradient from it anyway
 *   head j: n1 = RMSNorm(h); a1 = mod(n1, shift1, scale1); q = RMSNorm_head(a1 Wq), k likewise; RoPE
 *           o = attn Wo; h' = h + gate1*o; n2 = RMSNorm(h'); b = mod(n2, shift2, scale2);
 *           f = down(silu(gate b) * up b); h'' = h' + gate2*f
 *   final:  out = Wl mod(RMSNorm(h), shift, scale) + bl
 * Backward runs the same list in reverse; every parameter gradient is
 * ACCUMULATED (+=) into the gradient model. */
#include "model/train_step.h"
#include "core/tensor.h"
#include "model/forward.h"
#include "model/positions.h"
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

#define MAX_IMAGES 64

typedef struct {
    float *x_in, *norm1, *rstd1, *q, *k, *v, *att, *lse, *x_mid, *norm2, *rstd2, *gate, *up, *act;
} llm_activations;

typedef struct {
    float *h_in, *n1, *rstd1, *a1, *q_pre, *k_pre, *q_rstd, *k_rstd, *q, *k, *v, *att, *lse, *o;
    float *h_mid, *n2, *rstd2, *b, *gate, *up, *act, *mlp_out, *mod;
} head_activations;

typedef struct {
    const tuna_model *m, *g;
    const tuna_config *c;
    const tuna_threads *pool;
    const tuna_train_example *ex;
    const tuna_sequence *seq;
    int L, K, d, out;
    tuna_segment segments[MAX_IMAGES];
    tuna_rope_plan llm_rope, head_rope;
    float *sinusoid, *time_hidden, *time_act, *temb, *silu_temb; /* [K, f or d] */
    float *cols[MAX_IMAGES], *conv[MAX_IMAGES], *patch_rstd[MAX_IMAGES];
    llm_activations *llm;
    head_activations *head;
    float *x_final, *hidden, *final_rstd;
    /* The LM head runs only on the rows that carry a label (SPEC 5: the
     * shifted CE reads row i iff labels[i+1] != -100): ce_rows[r] is the r-th
     * such row, ce_labels[r+1] its label (ce_labels[0] = -100, so the compact
     * rows keep the shifted layout the loss functions expect). */
    int *ce_rows, ce_count;
    int32_t *ce_labels;
    float *ce_hidden, *logits; /* [ce_count + 1, d], [ce_count + 1, vocab] */
    float *fmod, *fh, *fn, *f_rstd, *fm, *head_out;
    /* backward scratch */
    float *dx, *da, *dq, *dk, *dv, *dk_pre, *datt, *dgate, *dup, *dtmp, *dtemb, *dsilu_temb, *dmod;
    tuna_train_workspace *ws;   /* owned by the call when the caller gave none */
    int own_ws;
    int failed;
} train_state;

/* ---- memory ------------------------------------------------------------------
 * Buffers are handed out in a fixed order each step; the workspace keeps them,
 * so a step on a sequence no longer than the last reuses the same memory. */

struct tuna_train_workspace {
    float **blocks;
    size_t *sizes;   /* floats in each block */
    int count, capacity;
    int next;        /* the block the next request gets */
};

tuna_train_workspace *tuna_train_workspace_create(void) { return calloc(1, sizeof(tuna_train_workspace)); }

void tuna_train_workspace_free(tuna_train_workspace *ws) {
    if (!ws) return;
    for (int i = 0; i < ws->count; i++) free(ws->blocks[i]);
    free(ws->blocks);
    free(ws->sizes);
    free(ws);
}

/* A zeroed buffer of n floats. */
static float *buffer(train_state *st, size_t n) {
    tuna_train_workspace *ws = st->ws;
    if (st->failed) return NULL;
    if (n == 0) n = 1;
    if (ws->next == ws->capacity) {
        int capacity = ws->capacity ? 2 * ws->capacity : 256;
        float **blocks = realloc(ws->blocks, sizeof *blocks * (size_t)capacity);
        if (blocks) ws->blocks = blocks;
        size_t *sizes = realloc(ws->sizes, sizeof *sizes * (size_t)capacity);
        if (sizes) ws->sizes = sizes;
        if (!blocks || !sizes) { st->failed = 1; return NULL; }
        ws->capacity = capacity;
    }
    int i = ws->next;
    if (i == ws->count) {
        ws->blocks[i] = NULL;
        ws->sizes[i] = 0;
        ws->count++;
    }
    if (ws->sizes[i] < n) {
        free(ws->blocks[i]);
        ws->blocks[i] = malloc(n * sizeof(float));
        ws->sizes[i] = ws->blocks[i] ? n : 0;
        if (!ws->blocks[i]) { st->failed = 1; return NULL; }
    }
    ws->next++;
    memset(ws->blocks[i], 0, n * sizeof(float));
    return ws->blocks[i];
}

static void free_state(train_state *st) {
    if (st->own_ws) tuna_train_workspace_free(st->ws);
    free(st->llm);
    free(st->head);
    tuna_rope_plan_free(&st->llm_rope);
    tuna_rope_plan_free(&st->head_rope);
    free(st->ce_rows);
    free(st->ce_labels);
}

static float *grad_matrix(const tuna_tensor *t) { return t ? (float *)t->data : NULL; }
static float *grad_vector(const float *p) { return (float *)p; }

/* ---- small wrappers ------------------------------------------------------ */

static tuna_status linear(train_state *st, float *y, const float *x, const tuna_tensor *w, const float *bias, int64_t M,
                          int64_t K, tuna_error *err) {
    return tuna_matmul_forward(y, x, w, bias, M, K, st->pool, err);
}

/* dx (+)= dy W;  dW += dy^T x;  dbias += sum dy   (dW, dbias skipped when frozen) */
static tuna_status linear_backward(train_state *st, float *dx, int accumulate, const float *dy, const float *x,
                                   const tuna_tensor *w, const tuna_tensor *dw, float *dbias, int64_t M,
                                   tuna_error *err) {
    int64_t N = w->shape[0], K = tuna_tensor_numel(w) / N;
    float *dW = grad_matrix(dw);
    if (dW) tuna_matmul_backward_weight(dW, dbias, dy, x, M, N, K, st->pool);
    else if (dbias)
        for (int64_t i = 0; i < M; i++) tuna_vec_acc(dbias, dy + i * N, N);
    if (!dx) return TUNA_OK;
    if (w->dtype == TUNA_F32 || w->ndim == 2) return tuna_matmul_backward_input(dx, dy, w, M, accumulate, st->pool, err);
    /* conv weight [d, C, p, p] seen as [d, C*p*p] */
    tuna_tensor flat;
    int64_t shape[2] = {N, K};
    tuna_tensor_init_view(&flat, w->dtype, 2, shape, w->data);
    return tuna_matmul_backward_input(dx, dy, &flat, M, accumulate, st->pool, err);
}

/* ---- embeddings (SPEC sections 1, 3) ------------------------------------- */

static tuna_status time_embedding_forward(train_state *st, tuna_error *err) {
    int K = st->K, d = st->d, f = st->c->time_freq_dim;
    if (K == 0) return TUNA_OK;
    st->sinusoid = buffer(st, (size_t)K * f);
    st->time_hidden = buffer(st, (size_t)K * d);
    st->time_act = buffer(st, (size_t)K * d);
    st->temb = buffer(st, (size_t)K * d);
    st->silu_temb = buffer(st, (size_t)K * d);
    if (st->failed) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_timestep_embedding(st->sinusoid, st->seq->t, K, f, 10000.0);
    TUNA_TRY(linear(st, st->time_hidden, st->sinusoid, st->m->time_weight0, st->m->time_bias0, K, f, err));
    tuna_silu_forward(st->time_act, st->time_hidden, (int64_t)K * d);
    TUNA_TRY(linear(st, st->temb, st->time_act, st->m->time_weight2, st->m->time_bias2, K, d, err));
    tuna_silu_forward(st->silu_temb, st->temb, (int64_t)K * d);
    return TUNA_OK;
}

static tuna_status patch_forward(train_state *st, int k, tuna_error *err) {
    const tuna_image_segment *sg = &st->seq->segments[k];
    int n = sg->length - 1, p = st->c->patch_size, C = st->c->image_channels, d = st->d;
    st->cols[k] = buffer(st, (size_t)n * C * p * p);
    st->conv[k] = buffer(st, (size_t)n * d);
    st->patch_rstd[k] = buffer(st, (size_t)n);
    if (st->failed) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_im2col_patches(st->cols[k], st->seq->images[k], C, sg->height, sg->width, p);
    tuna_tensor flat;
    int64_t shape[2] = {d, (int64_t)C * p * p};
    tuna_tensor_init_view(&flat, st->m->patch_weight->dtype, 2, shape, st->m->patch_weight->data);
    return linear(st, st->conv[k], st->cols[k], &flat, st->m->patch_bias, n, (int64_t)C * p * p, err);
}

static const uint8_t *mask_of(const train_state *st, int k) { return st->seq->masks ? st->seq->masks[k] : NULL; }

static tuna_status embed_forward(train_state *st, float *x, tuna_error *err) {
    int d = st->d;
    for (int i = 0; i < st->L; i++)
        if (tuna_segment_at(st->seq->segments, st->K, i) < 0)
            TUNA_TRY(tuna_embedding_forward(x + (size_t)i * d, st->m->embed_tokens, st->seq->ids + i, 1, err));
    for (int k = 0; k < st->K; k++) {
        const tuna_image_segment *sg = &st->seq->segments[k];
        int n = sg->length - 1;
        TUNA_TRY(patch_forward(st, k, err));
        float *rows = x + (size_t)(sg->offset + 1) * d;
        tuna_rmsnorm_forward(rows, st->patch_rstd[k], st->conv[k], st->m->patch_norm, n, d,
                             tuna_model_patch_norm_eps(st->m), st->pool);
        memcpy(x + (size_t)sg->offset * d, st->temb + (size_t)k * d, sizeof(float) * d);
        const uint8_t *mask = mask_of(st, k);
        for (int j = 0; mask && j < n; j++) {
            if (!mask[j]) continue;
            if (!st->m->mask_token) return tuna_fail(err, TUNA_ERR_INVALID, "masked patches but no mask_token");
            memcpy(rows + (size_t)j * d, st->m->mask_token, sizeof(float) * d);
        }
    }
    return TUNA_OK;
}

/* dx rows -> token table, time embedding (t slot), patch conv + norm, mask token. */
static tuna_status embed_backward(train_state *st, const float *dx, tuna_error *err) {
    const tuna_model *g = st->g;
    int d = st->d;
    float *dtable = grad_matrix(g->embed_tokens);
    for (int i = 0; i < st->L; i++)
        if (dtable && tuna_segment_at(st->seq->segments, st->K, i) < 0)
            tuna_embedding_backward(dtable, dx + (size_t)i * d, st->seq->ids + i, 1, d);
    for (int k = 0; k < st->K; k++) {
        const tuna_image_segment *sg = &st->seq->segments[k];
        int n = sg->length - 1;
        /* t slot: d c_k += dx[offset] */
        tuna_vec_acc(st->dtemb + (size_t)k * d, dx + (size_t)sg->offset * d, d);
        float *drows = st->dtmp;
        memcpy(drows, dx + (size_t)(sg->offset + 1) * d, sizeof(float) * (size_t)n * d);
        const uint8_t *mask = mask_of(st, k);
        float *dmask = grad_vector(g->mask_token);
        for (int j = 0; mask && j < n; j++) {
            if (!mask[j]) continue;
            if (dmask) tuna_vec_acc(dmask, drows + (size_t)j * d, d);
            tuna_vec_zero(drows + (size_t)j * d, d);
        }
        float *dconv = st->da;
        tuna_rmsnorm_backward(dconv, grad_vector(g->patch_norm), drows, st->conv[k], st->m->patch_norm,
                              st->patch_rstd[k], n, d);
        TUNA_TRY(linear_backward(st, NULL, 0, dconv, st->cols[k], st->m->patch_weight, g->patch_weight,
                                 grad_vector(g->patch_bias), n, err));
    }
    return TUNA_OK;
}

/* c = W2 SiLU(W0 s + b0) + b2, given dc = dtemb + SiLU'(c) * dsilu_temb. */
static tuna_status time_embedding_backward(train_state *st, tuna_error *err) {
    const tuna_model *m = st->m, *g = st->g;
    int K = st->K, d = st->d;
    if (K == 0) return TUNA_OK;
    float *dsilu_part = st->dtmp;
    tuna_silu_backward(dsilu_part, st->dsilu_temb, st->temb, (int64_t)K * d);
    tuna_vec_acc(st->dtemb, dsilu_part, (int64_t)K * d);
    float *dact = st->da, *dhidden = st->dq;
    TUNA_TRY(linear_backward(st, dact, 0, st->dtemb, st->time_act, m->time_weight2, g->time_weight2,
                             grad_vector(g->time_bias2), K, err));
    tuna_silu_backward(dhidden, dact, st->time_hidden, (int64_t)K * d);
    return linear_backward(st, NULL, 0, dhidden, st->sinusoid, m->time_weight0, g->time_weight0,
                           grad_vector(g->time_bias0), K, err);
}

/* ---- attention sub-layer -------------------------------------------------- */

static tuna_attention_params attention_params(const train_state *st, int heads, int kv_heads, int head_dim) {
    return (tuna_attention_params){.q_len = st->L, .q_start = 0, .k_len = st->L, .n_heads = heads,
                                   .n_kv_heads = kv_heads, .head_dim = head_dim, .scale = 0.0f,
                                   .segments = st->segments, .n_segments = st->K};
}

/* ---- SwiGLU MLP ------------------------------------------------------------- */

typedef struct {
    const tuna_tensor *gate_w, *up_w, *down_w, *gate_g, *up_g, *down_g;
    int inter;
} mlp_weights;

/* out = down(silu(gate x) * up x), saving gate, up, act. */
static tuna_status mlp_forward(train_state *st, const mlp_weights *w, const float *x, float *gate, float *up,
                               float *act, float *out, tuna_error *err) {
    int L = st->L, d = st->d;
    TUNA_TRY(linear(st, gate, x, w->gate_w, NULL, L, d, err));
    TUNA_TRY(linear(st, up, x, w->up_w, NULL, L, d, err));
    tuna_swiglu_forward(act, gate, up, (int64_t)L * w->inter);
    return linear(st, out, act, w->down_w, NULL, L, w->inter, err);
}

/* dx = d/dx of the MLP given dout (written, not accumulated). */
static tuna_status mlp_backward(train_state *st, const mlp_weights *w, const float *x, const float *gate,
                                const float *up, const float *act, const float *dout, float *dx, tuna_error *err) {
    int L = st->L;
    float *dact = st->dgate; /* reuse: dact then dgate in place */
    TUNA_TRY(linear_backward(st, dact, 0, dout, act, w->down_w, w->down_g, NULL, L, err));
    tuna_swiglu_backward(st->dgate, st->dup, dact, gate, up, (int64_t)L * w->inter);
    TUNA_TRY(linear_backward(st, dx, 0, st->dgate, x, w->gate_w, w->gate_g, NULL, L, err));
    return linear_backward(st, dx, 1, st->dup, x, w->up_w, w->up_g, NULL, L, err);
}

/* ---- LLM layer (Qwen2) ------------------------------------------------------ */

static tuna_status llm_layer_forward(train_state *st, int l, float *x, tuna_error *err) {
    const tuna_llm_config *c = &st->c->llm;
    const tuna_llm_layer *w = &st->m->llm_layers[l];
    llm_activations *a = &st->llm[l];
    int L = st->L, d = st->d;
    int64_t qw = (int64_t)c->num_heads * c->head_dim, kw = (int64_t)c->num_kv_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps;
    memcpy(a->x_in, x, sizeof(float) * (size_t)L * d);
    tuna_rmsnorm_forward(a->norm1, a->rstd1, x, w->input_norm, L, d, eps, st->pool);
    TUNA_TRY(linear(st, a->q, a->norm1, w->q_weight, w->q_bias, L, d, err));
    TUNA_TRY(linear(st, a->k, a->norm1, w->k_weight, w->k_bias, L, d, err));
    TUNA_TRY(linear(st, a->v, a->norm1, w->v_weight, w->v_bias, L, d, err));
    tuna_rope_forward(a->q, L, c->num_heads, &st->llm_rope, st->pool);
    tuna_rope_forward(a->k, L, c->num_kv_heads, &st->llm_rope, st->pool);
    tuna_attention_params ap = attention_params(st, c->num_heads, c->num_kv_heads, c->head_dim);
    TUNA_TRY(tuna_attention_forward(a->att, a->lse, a->q, a->k, a->v, &ap, st->pool, err));
    TUNA_TRY(linear(st, st->dtmp, a->att, w->o_weight, NULL, L, qw, err));
    tuna_vec_acc(x, st->dtmp, (int64_t)L * d);
    memcpy(a->x_mid, x, sizeof(float) * (size_t)L * d);
    tuna_rmsnorm_forward(a->norm2, a->rstd2, x, w->post_attention_norm, L, d, eps, st->pool);
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, NULL, NULL, NULL, c->intermediate_size};
    TUNA_TRY(mlp_forward(st, &mw, a->norm2, a->gate, a->up, a->act, st->dtmp, err));
    tuna_vec_acc(x, st->dtmp, (int64_t)L * d);
    (void)kw;
    return TUNA_OK;
}

/* dx: in, d loss / d (layer output); out, d loss / d (layer input). */
static tuna_status llm_layer_backward(train_state *st, int l, float *dx, tuna_error *err) {
    const tuna_llm_config *c = &st->c->llm;
    const tuna_llm_layer *w = &st->m->llm_layers[l], *g = &st->g->llm_layers[l];
    llm_activations *a = &st->llm[l];
    int L = st->L, d = st->d;
    int64_t kw = (int64_t)c->num_kv_heads * c->head_dim;
    /* x'' = x' + mlp(RMSNorm(x')) */
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, g->gate_weight, g->up_weight, g->down_weight,
                      c->intermediate_size};
    TUNA_TRY(mlp_backward(st, &mw, a->norm2, a->gate, a->up, a->act, dx, st->da, err));
    tuna_rmsnorm_backward(st->dtmp, grad_vector(g->post_attention_norm), st->da, a->x_mid, w->post_attention_norm,
                          a->rstd2, L, d);
    tuna_vec_acc(dx, st->dtmp, (int64_t)L * d);
    /* x' = x + Wo attention(...) */
    TUNA_TRY(linear_backward(st, st->datt, 0, dx, a->att, w->o_weight, g->o_weight, NULL, L, err));
    tuna_vec_zero(st->dk, (int64_t)L * kw);
    tuna_vec_zero(st->dv, (int64_t)L * kw);
    tuna_attention_params ap = attention_params(st, c->num_heads, c->num_kv_heads, c->head_dim);
    TUNA_TRY(tuna_attention_backward(st->dq, st->dk, st->dv, st->datt, a->q, a->k, a->v, a->att, a->lse, &ap,
                                     st->pool, err));
    tuna_rope_backward(st->dq, L, c->num_heads, &st->llm_rope, st->pool);
    tuna_rope_backward(st->dk, L, c->num_kv_heads, &st->llm_rope, st->pool);
    TUNA_TRY(linear_backward(st, st->da, 0, st->dq, a->norm1, w->q_weight, g->q_weight, grad_vector(g->q_bias), L, err));
    TUNA_TRY(linear_backward(st, st->da, 1, st->dk, a->norm1, w->k_weight, g->k_weight, grad_vector(g->k_bias), L, err));
    TUNA_TRY(linear_backward(st, st->da, 1, st->dv, a->norm1, w->v_weight, g->v_weight, grad_vector(g->v_bias), L, err));
    tuna_rmsnorm_backward(st->dtmp, grad_vector(g->input_norm), st->da, a->x_in, w->input_norm, a->rstd1, L, d);
    tuna_vec_acc(dx, st->dtmp, (int64_t)L * d);
    return TUNA_OK;
}

/* ---- flow-head block (SPEC section 2) ------------------------------------ */

/* mod_k = W SiLU(c_k) + b, [K, parts*d] */
static tuna_status modulation_forward(train_state *st, float *mod, const tuna_tensor *w, const float *bias,
                                      tuna_error *err) {
    return st->K ? linear(st, mod, st->silu_temb, w, bias, st->K, st->d, err) : TUNA_OK;
}

/* dW += dmod^T SiLU(c); db += sum dmod; dSiLU(c) += dmod W */
static tuna_status modulation_backward(train_state *st, const float *dmod, const tuna_tensor *w, const tuna_tensor *dw,
                                       float *dbias, tuna_error *err) {
    return st->K ? linear_backward(st, st->dsilu_temb, 1, dmod, st->silu_temb, w, dw, dbias, st->K, err) : TUNA_OK;
}

static void modulate(train_state *st, float *y, const float *x, const float *mod, int chunk, int parts) {
    int d = st->d;
    tuna_adaln_modulate_forward(y, x, mod + (size_t)chunk * d, mod + (size_t)(chunk + 1) * d, (int64_t)parts * d,
                                st->L, d, st->segments, st->K);
}

static void modulate_backward(train_state *st, float *dx, const float *dy, const float *x, const float *mod,
                              float *dmod, int chunk, int parts) {
    int d = st->d;
    tuna_adaln_modulate_backward(dx, dmod + (size_t)chunk * d, dmod + (size_t)(chunk + 1) * d, dy, x,
                                 mod + (size_t)(chunk + 1) * d, (int64_t)parts * d, st->L, d, st->segments, st->K);
}

static tuna_status head_block_forward(train_state *st, int l, float *h, tuna_error *err) {
    const tuna_head_config *c = &st->c->head;
    const tuna_head_block *w = &st->m->head_blocks[l];
    head_activations *a = &st->head[l];
    int L = st->L, d = st->d;
    int64_t qw = (int64_t)c->num_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps, qk_eps = (float)c->qk_norm_eps;
    TUNA_TRY(modulation_forward(st, a->mod, w->modulation_weight, w->modulation_bias, err));
    memcpy(a->h_in, h, sizeof(float) * (size_t)L * d);
    tuna_rmsnorm_forward(a->n1, a->rstd1, h, w->input_norm, L, d, eps, st->pool);
    modulate(st, a->a1, a->n1, a->mod, 0, 6);
    TUNA_TRY(linear(st, a->q_pre, a->a1, w->q_weight, NULL, L, d, err));
    TUNA_TRY(linear(st, a->k_pre, a->a1, w->k_weight, NULL, L, d, err));
    TUNA_TRY(linear(st, a->v, a->a1, w->v_weight, NULL, L, d, err));
    tuna_rmsnorm_forward(a->q, a->q_rstd, a->q_pre, w->q_norm, (int64_t)L * c->num_heads, c->head_dim, qk_eps, st->pool);
    tuna_rmsnorm_forward(a->k, a->k_rstd, a->k_pre, w->k_norm, (int64_t)L * c->num_kv_heads, c->head_dim, qk_eps,
                         st->pool);
    tuna_rope_forward(a->q, L, c->num_heads, &st->head_rope, st->pool);
    tuna_rope_forward(a->k, L, c->num_kv_heads, &st->head_rope, st->pool);
    tuna_attention_params ap = attention_params(st, c->num_heads, c->num_kv_heads, c->head_dim);
    TUNA_TRY(tuna_attention_forward(a->att, a->lse, a->q, a->k, a->v, &ap, st->pool, err));
    TUNA_TRY(linear(st, a->o, a->att, w->o_weight, NULL, L, qw, err));
    int64_t stride = 6 * (int64_t)d;
    tuna_adaln_gate_residual_forward(h, a->o, a->mod + 2 * d, stride, L, d, st->segments, st->K);
    memcpy(a->h_mid, h, sizeof(float) * (size_t)L * d);
    tuna_rmsnorm_forward(a->n2, a->rstd2, h, w->post_attention_norm, L, d, eps, st->pool);
    modulate(st, a->b, a->n2, a->mod, 3, 6);
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, NULL, NULL, NULL, c->intermediate_size};
    TUNA_TRY(mlp_forward(st, &mw, a->b, a->gate, a->up, a->act, a->mlp_out, err));
    tuna_adaln_gate_residual_forward(h, a->mlp_out, a->mod + 5 * d, stride, L, d, st->segments, st->K);
    return TUNA_OK;
}

static tuna_status head_block_backward(train_state *st, int l, float *dh, tuna_error *err) {
    const tuna_head_config *c = &st->c->head;
    const tuna_head_block *w = &st->m->head_blocks[l], *g = &st->g->head_blocks[l];
    head_activations *a = &st->head[l];
    int L = st->L, d = st->d;
    int64_t stride = 6 * (int64_t)d, kw = (int64_t)c->num_kv_heads * c->head_dim;
    float *dmod = st->dmod;
    tuna_vec_zero(dmod, (int64_t)st->K * stride);

    /* h'' = h' + gate2 * f */
    float *df = st->dtmp;
    tuna_adaln_gate_residual_backward(df, dmod + 5 * d, dh, a->mlp_out, a->mod + 5 * d, stride, L, d, st->segments,
                                      st->K);
    mlp_weights mw = {w->gate_weight, w->up_weight, w->down_weight, g->gate_weight, g->up_weight, g->down_weight,
                      c->intermediate_size};
    TUNA_TRY(mlp_backward(st, &mw, a->b, a->gate, a->up, a->act, df, st->da, err));
    modulate_backward(st, st->da, st->da, a->n2, a->mod, dmod, 3, 6);
    tuna_rmsnorm_backward(st->dtmp, grad_vector(g->post_attention_norm), st->da, a->h_mid, w->post_attention_norm,
                          a->rstd2, L, d);
    tuna_vec_acc(dh, st->dtmp, (int64_t)L * d);

    /* h' = h + gate1 * Wo attention(...) */
    float *dout = st->dtmp;
    tuna_adaln_gate_residual_backward(dout, dmod + 2 * d, dh, a->o, a->mod + 2 * d, stride, L, d, st->segments, st->K);
    TUNA_TRY(linear_backward(st, st->datt, 0, dout, a->att, w->o_weight, g->o_weight, NULL, L, err));
    tuna_vec_zero(st->dk, (int64_t)L * kw);
    tuna_vec_zero(st->dv, (int64_t)L * kw);
    tuna_attention_params ap = attention_params(st, c->num_heads, c->num_kv_heads, c->head_dim);
    TUNA_TRY(tuna_attention_backward(st->dq, st->dk, st->dv, st->datt, a->q, a->k, a->v, a->att, a->lse, &ap,
                                     st->pool, err));
    tuna_rope_backward(st->dq, L, c->num_heads, &st->head_rope, st->pool);
    tuna_rope_backward(st->dk, L, c->num_kv_heads, &st->head_rope, st->pool);
    /* q = RMSNorm_head(q_pre): dq_pre into datt (free now), dk_pre into its own buffer */
    tuna_rmsnorm_backward(st->datt, grad_vector(g->q_norm), st->dq, a->q_pre, w->q_norm, a->q_rstd,
                          (int64_t)L * c->num_heads, c->head_dim);
    tuna_rmsnorm_backward(st->dk_pre, grad_vector(g->k_norm), st->dk, a->k_pre, w->k_norm, a->k_rstd,
                          (int64_t)L * c->num_kv_heads, c->head_dim);
    TUNA_TRY(linear_backward(st, st->da, 0, st->datt, a->a1, w->q_weight, g->q_weight, NULL, L, err));
    TUNA_TRY(linear_backward(st, st->da, 1, st->dk_pre, a->a1, w->k_weight, g->k_weight, NULL, L, err));
    TUNA_TRY(linear_backward(st, st->da, 1, st->dv, a->a1, w->v_weight, g->v_weight, NULL, L, err));
    modulate_backward(st, st->da, st->da, a->n1, a->mod, dmod, 0, 6);
    tuna_rmsnorm_backward(st->dtmp, grad_vector(g->input_norm), st->da, a->h_in, w->input_norm, a->rstd1, L, d);
    tuna_vec_acc(dh, st->dtmp, (int64_t)L * d);
    return modulation_backward(st, dmod, w->modulation_weight, g->modulation_weight, grad_vector(g->modulation_bias),
                               err);
}

/* ---- final layer ------------------------------------------------------------ */

static tuna_status final_layer_forward(train_state *st, const float *h, tuna_error *err) {
    const tuna_final_layer *f = &st->m->final_layer;
    int L = st->L, d = st->d;
    TUNA_TRY(modulation_forward(st, st->fmod, f->modulation_weight, f->modulation_bias, err));
    memcpy(st->fh, h, sizeof(float) * (size_t)L * d);
    tuna_rmsnorm_forward(st->fn, st->f_rstd, h, f->norm, L, d, (float)st->c->head.final_norm_eps, st->pool);
    modulate(st, st->fm, st->fn, st->fmod, 0, 2);
    return linear(st, st->head_out, st->fm, f->linear_weight, f->linear_bias, L, d, err);
}

/* dout [L, out] -> dh [L, d] (written). */
static tuna_status final_layer_backward(train_state *st, const float *dout, float *dh, tuna_error *err) {
    const tuna_final_layer *f = &st->m->final_layer, *g = &st->g->final_layer;
    int L = st->L, d = st->d;
    float *dmod = st->dmod;
    tuna_vec_zero(dmod, (int64_t)st->K * 2 * d);
    TUNA_TRY(linear_backward(st, st->da, 0, dout, st->fm, f->linear_weight, g->linear_weight,
                             grad_vector(g->linear_bias), L, err));
    modulate_backward(st, st->da, st->da, st->fn, st->fmod, dmod, 0, 2);
    tuna_rmsnorm_backward(dh, grad_vector(g->norm), st->da, st->fh, f->norm, st->f_rstd, L, d);
    return modulation_backward(st, dmod, f->modulation_weight, g->modulation_weight, grad_vector(g->modulation_bias),
                               err);
}

/* ---- buffers ------------------------------------------------------------------ */

static int max_int(int a, int b) { return a > b ? a : b; }

static void allocate_llm(train_state *st) {
    const tuna_llm_config *c = &st->c->llm;
    size_t L = (size_t)st->L, d = (size_t)st->d, qw = (size_t)c->num_heads * c->head_dim;
    size_t kw = (size_t)c->num_kv_heads * c->head_dim, I = (size_t)c->intermediate_size;
    for (int l = 0; l < c->num_layers; l++) {
        llm_activations *a = &st->llm[l];
        a->x_in = buffer(st, L * d), a->norm1 = buffer(st, L * d), a->rstd1 = buffer(st, L);
        a->q = buffer(st, L * qw), a->k = buffer(st, L * kw), a->v = buffer(st, L * kw);
        a->att = buffer(st, L * qw), a->lse = buffer(st, L * c->num_heads);
        a->x_mid = buffer(st, L * d), a->norm2 = buffer(st, L * d), a->rstd2 = buffer(st, L);
        a->gate = buffer(st, L * I), a->up = buffer(st, L * I), a->act = buffer(st, L * I);
    }
}

static void allocate_head(train_state *st) {
    const tuna_head_config *c = &st->c->head;
    size_t L = (size_t)st->L, d = (size_t)st->d, qw = (size_t)c->num_heads * c->head_dim;
    size_t kw = (size_t)c->num_kv_heads * c->head_dim, I = (size_t)c->intermediate_size;
    for (int l = 0; l < c->num_layers; l++) {
        head_activations *a = &st->head[l];
        a->h_in = buffer(st, L * d), a->n1 = buffer(st, L * d), a->rstd1 = buffer(st, L), a->a1 = buffer(st, L * d);
        a->q_pre = buffer(st, L * qw), a->k_pre = buffer(st, L * kw);
        a->q_rstd = buffer(st, L * c->num_heads), a->k_rstd = buffer(st, L * c->num_kv_heads);
        a->q = buffer(st, L * qw), a->k = buffer(st, L * kw), a->v = buffer(st, L * kw);
        a->att = buffer(st, L * qw), a->lse = buffer(st, L * c->num_heads), a->o = buffer(st, L * d);
        a->h_mid = buffer(st, L * d), a->n2 = buffer(st, L * d), a->rstd2 = buffer(st, L), a->b = buffer(st, L * d);
        a->gate = buffer(st, L * I), a->up = buffer(st, L * I), a->act = buffer(st, L * I);
        a->mlp_out = buffer(st, L * d), a->mod = buffer(st, (size_t)st->K * 6 * d);
    }
    st->fmod = buffer(st, (size_t)st->K * 2 * d);
    st->fh = buffer(st, L * d), st->fn = buffer(st, L * d), st->f_rstd = buffer(st, L), st->fm = buffer(st, L * d);
    st->head_out = buffer(st, L * st->out);
}

static tuna_status allocate(train_state *st, int with_logits, tuna_error *err) {
    const tuna_config *c = st->c;
    size_t L = (size_t)st->L, d = (size_t)st->d, K = (size_t)(st->K ? st->K : 1);
    int qw = max_int(c->llm.num_heads * c->llm.head_dim, c->head.num_heads * c->head.head_dim);
    int kw = max_int(c->llm.num_kv_heads * c->llm.head_dim, c->head.num_kv_heads * c->head.head_dim);
    int inter = max_int(c->llm.intermediate_size, c->head.intermediate_size);
    int widest = max_int(st->d, st->out);
    st->llm = calloc((size_t)c->llm.num_layers, sizeof *st->llm);
    st->head = calloc((size_t)(c->head.num_layers ? c->head.num_layers : 1), sizeof *st->head);
    if (!st->llm || !st->head) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    allocate_llm(st);
    if (st->K) allocate_head(st);
    st->x_final = buffer(st, L * d), st->hidden = buffer(st, L * d), st->final_rstd = buffer(st, L);
    if (with_logits) {
        st->ce_hidden = buffer(st, (size_t)(st->ce_count + 1) * d);
        st->logits = buffer(st, (size_t)(st->ce_count + 1) * c->vocab_size);
    }
    st->dx = buffer(st, L * d), st->da = buffer(st, L * (size_t)widest), st->dtmp = buffer(st, L * (size_t)widest);
    st->dq = buffer(st, L * qw), st->datt = buffer(st, L * qw);
    st->dk = buffer(st, L * kw), st->dv = buffer(st, L * kw), st->dk_pre = buffer(st, L * kw);
    st->dgate = buffer(st, L * inter), st->dup = buffer(st, L * inter);
    st->dtemb = buffer(st, K * d), st->dsilu_temb = buffer(st, K * d), st->dmod = buffer(st, K * 6 * d);
    if (st->failed) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the training activations of %d rows", st->L);
    return TUNA_OK;
}

/* ---- the step ------------------------------------------------------------------ */

static tuna_status forward(train_state *st, float *x, tuna_error *err) {
    const tuna_config *c = st->c;
    TUNA_TRY(time_embedding_forward(st, err));
    TUNA_TRY(embed_forward(st, x, err));
    for (int l = 0; l < c->llm.num_layers; l++) TUNA_TRY(llm_layer_forward(st, l, x, err));
    memcpy(st->x_final, x, sizeof(float) * (size_t)st->L * st->d);
    tuna_rmsnorm_forward(st->hidden, st->final_rstd, x, st->m->final_norm, st->L, st->d, (float)c->llm.rms_norm_eps,
                         st->pool);
    if (st->logits && st->ce_count > 0) {
        for (int r = 0; r < st->ce_count; r++)
            memcpy(st->ce_hidden + (size_t)r * st->d, st->hidden + (size_t)st->ce_rows[r] * st->d,
                   sizeof(float) * (size_t)st->d);
        TUNA_TRY(linear(st, st->logits, st->ce_hidden, st->m->lm_head, NULL, st->ce_count, st->d, err));
    }
    if (!st->K) return TUNA_OK;
    memcpy(x, st->hidden, sizeof(float) * (size_t)st->L * st->d);
    for (int l = 0; l < c->head.num_layers; l++) TUNA_TRY(head_block_forward(st, l, x, err));
    return final_layer_forward(st, x, err);
}

static int flow_count(const train_state *st) {
    int n = 0;
    for (int k = 0; st->ex->flow_images && st->ex->targets && k < st->K; k++) n += st->ex->flow_images[k] != 0;
    return n;
}

/* x_pred of every image (owned buffers when the caller gave none). */
static tuna_status predictions(train_state *st, float *const *given, float **x_pred, long *count, tuna_error *err) {
    int C = st->c->image_channels;
    for (int k = 0; k < st->K; k++) {
        const tuna_image_segment *sg = &st->seq->segments[k];
        count[k] = (long)C * sg->height * sg->width;
        x_pred[k] = given && given[k] ? given[k] : buffer(st, (size_t)count[k]);
        if (!x_pred[k]) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        tuna_unpatchify(x_pred[k], st->head_out + (size_t)(sg->offset + 1) * st->out, C, sg->height, sg->width);
    }
    return TUNA_OK;
}

static tuna_status head_backward(train_state *st, float *const *x_pred, const long *count, float loss_scale,
                                 float *dhidden, tuna_error *err) {
    const tuna_train_example *ex = st->ex;
    int C = st->c->image_channels;
    float *dx_pred[MAX_IMAGES];
    for (int k = 0; k < st->K; k++)
        if (!(dx_pred[k] = buffer(st, (size_t)count[k]))) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_flow_loss_backward((const float *const *)x_pred, ex->targets, st->seq->t, ex->flow_images, count, st->K,
                       (float)st->c->t_eps, loss_scale, dx_pred);
    float *dout = buffer(st, (size_t)st->L * st->out);
    float *dh = buffer(st, (size_t)st->L * st->d);
    if (!dout || !dh) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    for (int k = 0; k < st->K; k++) {
        const tuna_image_segment *sg = &st->seq->segments[k];
        tuna_patchify_labels(dout + (size_t)(sg->offset + 1) * st->out, dx_pred[k], C, sg->height, sg->width);
    }
    TUNA_TRY(final_layer_backward(st, dout, dh, err));
    for (int l = st->c->head.num_layers - 1; l >= 0; l--) TUNA_TRY(head_block_backward(st, l, dh, err));
    tuna_vec_acc(dhidden, dh, (int64_t)st->L * st->d);
    return TUNA_OK;
}

static tuna_status backward(train_state *st, float *const *x_pred, const long *count, float loss_scale,
                            tuna_error *err) {
    const tuna_config *c = st->c;
    int L = st->L, d = st->d;
    float *dhidden = buffer(st, (size_t)L * d);
    if (!dhidden) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    if (st->logits && st->ce_count > 0) {
        int n = st->ce_count;
        float *dlogits = buffer(st, (size_t)(n + 1) * c->vocab_size), *dsel = buffer(st, (size_t)(n + 1) * d);
        if (!dlogits || !dsel) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        tuna_cross_entropy_shifted_backward(st->logits, st->ce_labels, n + 1, c->vocab_size, loss_scale, dlogits);
        TUNA_TRY(linear_backward(st, dsel, 0, dlogits, st->ce_hidden, st->m->lm_head, st->g->lm_head, NULL, n, err));
        for (int r = 0; r < n; r++) tuna_vec_acc(dhidden + (size_t)st->ce_rows[r] * d, dsel + (size_t)r * d, d);
    }
    if (flow_count(st)) TUNA_TRY(head_backward(st, x_pred, count, loss_scale, dhidden, err));
    tuna_rmsnorm_backward(st->dx, grad_vector(st->g->final_norm), dhidden, st->x_final, st->m->final_norm,
                          st->final_rstd, L, d);
    for (int l = c->llm.num_layers - 1; l >= 0; l--) TUNA_TRY(llm_layer_backward(st, l, st->dx, err));
    TUNA_TRY(embed_backward(st, st->dx, err));
    return time_embedding_backward(st, err);
}

static tuna_status compute_losses(train_state *st, float *const *x_pred, const long *count, tuna_losses *out,
                                  tuna_error *err) {
    const tuna_train_example *ex = st->ex;
    memset(out, 0, sizeof *out);
    if (st->logits) {
        int invalid = 0;
        out->loss_ce = tuna_cross_entropy_shifted_forward(st->logits, st->ce_labels, st->ce_count + 1, st->c->vocab_size,
                                                     &out->ce_tokens, &invalid);
        if (invalid) return tuna_fail(err, TUNA_ERR_INVALID, "%d labels lie outside the vocabulary", invalid);
    }
    if (flow_count(st)) {
        out->loss_flow = tuna_flow_loss_forward((const float *const *)x_pred, ex->targets, st->seq->t, ex->flow_images,
                                           count, st->K, (float)st->c->t_eps);
        for (int k = 0; k < st->K; k++) out->flow_elements += ex->flow_images[k] ? count[k] : 0;
    }
    out->loss = out->loss_ce + out->loss_flow;
    return TUNA_OK;
}

static tuna_status select_label_rows(train_state *st, tuna_error *err) {
    const int32_t *labels = st->ex->labels;
    st->ce_rows = malloc(sizeof(int) * (size_t)st->L);
    st->ce_labels = malloc(sizeof(int32_t) * (size_t)(st->L + 1));
    if (!st->ce_rows || !st->ce_labels) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    st->ce_labels[0] = -100;
    st->ce_count = 0;
    for (int i = 0; i + 1 < st->L; i++) {
        if (labels[i + 1] == -100) continue;
        st->ce_rows[st->ce_count] = i;
        st->ce_labels[++st->ce_count] = labels[i + 1];
    }
    return TUNA_OK;
}

static tuna_status setup(train_state *st, tuna_error *err) {
    const tuna_sequence *seq = st->seq;
    if (seq->image_count > MAX_IMAGES) return tuna_fail(err, TUNA_ERR_LIMIT, "at most %d images per sequence", MAX_IMAGES);
    for (int k = 0; k < st->K; k++) st->segments[k] = (tuna_segment){seq->segments[k].offset, seq->segments[k].length};
    TUNA_TRY(tuna_llm_rope_plan(st->c, 0, st->L, &st->llm_rope, err));
    if (st->K) TUNA_TRY(tuna_head_rope_plan(st->c, seq, 0, st->L, &st->head_rope, err));
    if (st->ex->labels) TUNA_TRY(select_label_rows(st, err));
    return allocate(st, st->ex->labels != NULL, err);
}

tuna_status tuna_model_loss_and_gradients(const tuna_model *model, const tuna_model *gradients,
                                          const tuna_train_example *ex, float loss_scale, float *const *x_pred_out,
                                          const tuna_threads *pool, tuna_losses *losses, tuna_error *err) {
    return tuna_model_loss_and_gradients_ws(model, gradients, ex, loss_scale, x_pred_out, pool, NULL, losses, err);
}

tuna_status tuna_model_loss_and_gradients_ws(const tuna_model *model, const tuna_model *gradients,
                                             const tuna_train_example *ex, float loss_scale, float *const *x_pred_out,
                                             const tuna_threads *pool, tuna_train_workspace *ws, tuna_losses *losses,
                                             tuna_error *err) {
    train_state st;
    memset(&st, 0, sizeof st);
    st.ws = ws ? ws : tuna_train_workspace_create();
    st.own_ws = ws == NULL;
    if (!st.ws) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    st.ws->next = 0;
    st.m = model;
    st.g = gradients;
    st.c = &model->config;
    st.pool = pool;
    st.ex = ex;
    st.seq = ex->sequence;
    st.L = ex->sequence->length;
    st.K = ex->sequence->image_count;
    st.d = model->config.hidden_size;
    st.out = model->config.patch_size * model->config.patch_size * model->config.image_channels;
    float *x_pred[MAX_IMAGES] = {0};
    long count[MAX_IMAGES] = {0};
    tuna_status s = setup(&st, err);
    float *x = s == TUNA_OK ? buffer(&st, (size_t)st.L * st.d) : NULL;
    if (s == TUNA_OK && !x) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    if (s == TUNA_OK) s = forward(&st, x, err);
    if (s == TUNA_OK && st.K) s = predictions(&st, x_pred_out, x_pred, count, err);
    if (s == TUNA_OK) s = compute_losses(&st, x_pred, count, losses, err);
    if (s == TUNA_OK && gradients) s = backward(&st, x_pred, count, loss_scale, err);
    free_state(&st);
    return s;
}
