/* Binding checkpoint tensors to the model by their official names (SPEC section 7). */
#include "model/tuna2.h"
#include "core/tensor.h"
#include "model/config_json.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the tensors come from: a checkpoint, or a trainer's table. */
typedef struct {
    tuna_tensor_lookup_fn find;
    void *ctx;
} tensor_source;

static const tuna_tensor *source_find(const tensor_source *src, const char *name) { return src->find(src->ctx, name); }

static tuna_status find_matrix(const tensor_source *ck, const char *name, const tuna_tensor **out,
                               tuna_error *err) {
    *out = source_find(ck, name);
    if (!*out) return tuna_fail(err, TUNA_ERR_FORMAT, "checkpoint has no tensor '%s'", name);
    return TUNA_OK;
}

/* Keep an f32 copy of a non-f32 vector; the model owns it. */
static tuna_status remember_converted(tuna_model *m, float *buffer, tuna_error *err) {
    if (m->converted_count == m->converted_capacity) {
        int capacity = m->converted_capacity ? 2 * m->converted_capacity : 64;
        float **grown = realloc(m->converted, (size_t)capacity * sizeof *grown);
        if (!grown) {
            free(buffer);
            return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        }
        m->converted = grown;
        m->converted_capacity = capacity;
    }
    m->converted[m->converted_count++] = buffer;
    return TUNA_OK;
}

/* A parameter vector as f32 (in place when the file is f32). Any shape is
 * accepted (the mask token is [1,1,d]); shapes were verified against the
 * configuration before binding. */
static tuna_status find_vector(tuna_model *m, const tensor_source *src, const char *name, const float **out,
                               tuna_error *err) {
    const tuna_tensor *t = source_find(src, name);
    if (!t) return tuna_fail(err, TUNA_ERR_FORMAT, "checkpoint has no tensor '%s'", name);
    if (t->dtype == TUNA_F32) {
        *out = t->data;
        return TUNA_OK;
    }
    if (t->dtype != TUNA_BF16 && t->dtype != TUNA_F16)
        return tuna_fail(err, TUNA_ERR_FORMAT, "tensor '%s' has dtype %s, expected a float type", name,
                         tuna_dtype_name(t->dtype));
    int64_t n = tuna_tensor_numel(t);
    float *buffer = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!buffer) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory converting '%s'", name);
    for (int64_t i = 0; i < n; i++) buffer[i] = tuna_tensor_get_f32(t, i);
    TUNA_TRY(remember_converted(m, buffer, err));
    *out = buffer;
    return TUNA_OK;
}

#define LAYER_NAME(buf, fmt, i, suffix) (snprintf(buf, sizeof buf, fmt, i, suffix), buf)

static tuna_status bind_llm_layer(tuna_model *m, const tensor_source *ck, int i, tuna_llm_layer *l,
                                  tuna_error *err) {
    const char *f = "tuna.model.layers.%d.%s";
    char n[160];
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.q_proj.weight"), &l->q_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.k_proj.weight"), &l->k_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.v_proj.weight"), &l->v_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.o_proj.weight"), &l->o_weight, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "self_attn.q_proj.bias"), &l->q_bias, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "self_attn.k_proj.bias"), &l->k_bias, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "self_attn.v_proj.bias"), &l->v_bias, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "mlp.gate_proj.weight"), &l->gate_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "mlp.up_proj.weight"), &l->up_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "mlp.down_proj.weight"), &l->down_weight, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "input_layernorm.weight"), &l->input_norm, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "post_attention_layernorm.weight"), &l->post_attention_norm, err));
    return TUNA_OK;
}

static tuna_status bind_head_block(tuna_model *m, const tensor_source *ck, int i, tuna_head_block *b,
                                   tuna_error *err) {
    const char *f = "diffusion_head_a.%d.%s";
    char n[160];
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.q_proj.weight"), &b->q_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.k_proj.weight"), &b->k_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.v_proj.weight"), &b->v_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "self_attn.o_proj.weight"), &b->o_weight, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "self_attn.q_norm.weight"), &b->q_norm, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "self_attn.k_norm.weight"), &b->k_norm, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "mlp.gate_proj.weight"), &b->gate_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "mlp.up_proj.weight"), &b->up_weight, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "mlp.down_proj.weight"), &b->down_weight, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "input_layernorm.weight"), &b->input_norm, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "post_attention_layernorm.weight"), &b->post_attention_norm, err));
    TUNA_TRY(find_matrix(ck, LAYER_NAME(n, f, i, "adaLN_modulation.1.weight"), &b->modulation_weight, err));
    TUNA_TRY(find_vector(m, ck, LAYER_NAME(n, f, i, "adaLN_modulation.1.bias"), &b->modulation_bias, err));
    return TUNA_OK;
}

static tuna_status bind_globals(tuna_model *m, const tensor_source *ck, tuna_error *err) {
    TUNA_TRY(find_matrix(ck, "tuna.model.embed_tokens.weight", &m->embed_tokens, err));
    TUNA_TRY(find_vector(m, ck, "tuna.model.norm.weight", &m->final_norm, err));
    if (m->config.llm.tie_word_embeddings) m->lm_head = m->embed_tokens;
    else TUNA_TRY(find_matrix(ck, "tuna.lm_head.weight", &m->lm_head, err));
    TUNA_TRY(find_matrix(ck, "vision_encoder.patch_embedding.weight", &m->patch_weight, err));
    TUNA_TRY(find_vector(m, ck, "vision_encoder.patch_embedding.bias", &m->patch_bias, err));
    TUNA_TRY(find_vector(m, ck, "vision_encoder.norm.weight", &m->patch_norm, err));
    TUNA_TRY(find_matrix(ck, "time_embed.mlp.0.weight", &m->time_weight0, err));
    TUNA_TRY(find_vector(m, ck, "time_embed.mlp.0.bias", &m->time_bias0, err));
    TUNA_TRY(find_matrix(ck, "time_embed.mlp.2.weight", &m->time_weight2, err));
    TUNA_TRY(find_vector(m, ck, "time_embed.mlp.2.bias", &m->time_bias2, err));
    m->mask_token = NULL;
    if (source_find(ck, "mask_token")) TUNA_TRY(find_vector(m, ck, "mask_token", &m->mask_token, err));
    tuna_final_layer *fl = &m->final_layer;
    TUNA_TRY(find_vector(m, ck, "diffusion_head_b.norm_final.weight", &fl->norm, err));
    TUNA_TRY(find_matrix(ck, "diffusion_head_b.linear.weight", &fl->linear_weight, err));
    TUNA_TRY(find_vector(m, ck, "diffusion_head_b.linear.bias", &fl->linear_bias, err));
    TUNA_TRY(find_matrix(ck, "diffusion_head_b.adaLN_modulation.1.weight", &fl->modulation_weight, err));
    TUNA_TRY(find_vector(m, ck, "diffusion_head_b.adaLN_modulation.1.bias", &fl->modulation_bias, err));
    return TUNA_OK;
}

static tuna_status bind_all(tuna_model *m, const tensor_source *src, tuna_error *err) {
    TUNA_TRY(bind_globals(m, src, err));
    m->llm_layers = calloc((size_t)m->config.llm.num_layers, sizeof *m->llm_layers);
    m->head_blocks = calloc((size_t)m->config.head.num_layers, sizeof *m->head_blocks);
    if (!m->llm_layers || !m->head_blocks) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory binding layers");
    for (int i = 0; i < m->config.llm.num_layers; i++) TUNA_TRY(bind_llm_layer(m, src, i, &m->llm_layers[i], err));
    for (int i = 0; i < m->config.head.num_layers; i++) TUNA_TRY(bind_head_block(m, src, i, &m->head_blocks[i], err));
    return TUNA_OK;
}

static const tuna_tensor *checkpoint_lookup(void *ctx, const char *name) { return tuna_checkpoint_find(ctx, name); }

tuna_status tuna_model_load(const char *path, tuna_model *m, tuna_error *err) {
    memset(m, 0, sizeof *m);
    tuna_status s = tuna_checkpoint_open(path, &m->checkpoint, err);
    if (s == TUNA_OK) s = tuna_config_for_checkpoint(m->checkpoint, &m->config, &m->config_source, err);
    tensor_source src = {checkpoint_lookup, m->checkpoint};
    if (s == TUNA_OK) s = bind_all(m, &src, err);
    if (s != TUNA_OK) {
        tuna_model_free(m);
        return tuna_fail_context(err, s, "loading model %s", path);
    }
    return TUNA_OK;
}

void tuna_model_free(tuna_model *m) {
    if (m->checkpoint) tuna_checkpoint_close(m->checkpoint);
    free(m->llm_layers);
    free(m->head_blocks);
    for (int i = 0; i < m->converted_count; i++) free(m->converted[i]);
    free(m->converted);
    for (int i = 0; i < m->owned_matrix_count; i++) {
        tuna_tensor_free(m->owned_matrices[i]);
        free(m->owned_matrices[i]);
    }
    free(m->owned_matrices);
    memset(m, 0, sizeof *m);
}

float tuna_model_patch_norm_eps(const tuna_model *m) {
    return m->config.patch_norm_eps_is_machine_eps ? FLT_EPSILON : (float)m->config.patch_norm_eps;
}

tuna_status tuna_model_bind(tuna_model *m, const tuna_config *config, tuna_tensor_lookup_fn find, void *ctx,
                            tuna_error *err) {
    memset(m, 0, sizeof *m);
    m->config = *config;
    m->config_source = "in memory";
    tensor_source src = {find, ctx};
    tuna_status s = bind_all(m, &src, err);
    if (s != TUNA_OK) tuna_model_free(m);
    return s;
}
