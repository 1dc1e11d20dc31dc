/* Binding checkpoint tensors to the model by their official names (SPEC section 7). */
#include "model/tuna2.h"
#include "io/config_json.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tuna_status find_tensor(const tuna_checkpoint *ck, const char *name, const tuna_tensor **out,
                               tuna_error *err) {
    *out = tuna_checkpoint_find(ck, name);
    if (!*out) return tuna_fail(err, TUNA_ERR_FORMAT, "checkpoint has no tensor '%s'", name);
    return TUNA_OK;
}

/* find_tensor with a printf-formatted name. */
static tuna_status find_named(const tuna_checkpoint *ck, const tuna_tensor **out, tuna_error *err,
                              const char *fmt, int index, const char *suffix) {
    char name[160];
    snprintf(name, sizeof name, fmt, index, suffix);
    return find_tensor(ck, name, out, err);
}

static tuna_status bind_llm_layer(const tuna_checkpoint *ck, int i, tuna_llm_layer *l, tuna_error *err) {
    const char *f = "tuna.model.layers.%d.%s";
    TUNA_TRY(find_named(ck, &l->q_weight, err, f, i, "self_attn.q_proj.weight"));
    TUNA_TRY(find_named(ck, &l->q_bias, err, f, i, "self_attn.q_proj.bias"));
    TUNA_TRY(find_named(ck, &l->k_weight, err, f, i, "self_attn.k_proj.weight"));
    TUNA_TRY(find_named(ck, &l->k_bias, err, f, i, "self_attn.k_proj.bias"));
    TUNA_TRY(find_named(ck, &l->v_weight, err, f, i, "self_attn.v_proj.weight"));
    TUNA_TRY(find_named(ck, &l->v_bias, err, f, i, "self_attn.v_proj.bias"));
    TUNA_TRY(find_named(ck, &l->o_weight, err, f, i, "self_attn.o_proj.weight"));
    TUNA_TRY(find_named(ck, &l->gate_weight, err, f, i, "mlp.gate_proj.weight"));
    TUNA_TRY(find_named(ck, &l->up_weight, err, f, i, "mlp.up_proj.weight"));
    TUNA_TRY(find_named(ck, &l->down_weight, err, f, i, "mlp.down_proj.weight"));
    TUNA_TRY(find_named(ck, &l->input_norm, err, f, i, "input_layernorm.weight"));
    TUNA_TRY(find_named(ck, &l->post_attention_norm, err, f, i, "post_attention_layernorm.weight"));
    return TUNA_OK;
}

static tuna_status bind_head_block(const tuna_checkpoint *ck, int i, tuna_head_block *b, tuna_error *err) {
    const char *f = "diffusion_head_a.%d.%s";
    TUNA_TRY(find_named(ck, &b->q_weight, err, f, i, "self_attn.q_proj.weight"));
    TUNA_TRY(find_named(ck, &b->k_weight, err, f, i, "self_attn.k_proj.weight"));
    TUNA_TRY(find_named(ck, &b->v_weight, err, f, i, "self_attn.v_proj.weight"));
    TUNA_TRY(find_named(ck, &b->o_weight, err, f, i, "self_attn.o_proj.weight"));
    TUNA_TRY(find_named(ck, &b->q_norm, err, f, i, "self_attn.q_norm.weight"));
    TUNA_TRY(find_named(ck, &b->k_norm, err, f, i, "self_attn.k_norm.weight"));
    TUNA_TRY(find_named(ck, &b->gate_weight, err, f, i, "mlp.gate_proj.weight"));
    TUNA_TRY(find_named(ck, &b->up_weight, err, f, i, "mlp.up_proj.weight"));
    TUNA_TRY(find_named(ck, &b->down_weight, err, f, i, "mlp.down_proj.weight"));
    TUNA_TRY(find_named(ck, &b->input_norm, err, f, i, "input_layernorm.weight"));
    TUNA_TRY(find_named(ck, &b->post_attention_norm, err, f, i, "post_attention_layernorm.weight"));
    TUNA_TRY(find_named(ck, &b->modulation_weight, err, f, i, "adaLN_modulation.1.weight"));
    TUNA_TRY(find_named(ck, &b->modulation_bias, err, f, i, "adaLN_modulation.1.bias"));
    return TUNA_OK;
}

static tuna_status bind_globals(const tuna_checkpoint *ck, tuna_model *m, tuna_error *err) {
    TUNA_TRY(find_tensor(ck, "tuna.model.embed_tokens.weight", &m->embed_tokens, err));
    TUNA_TRY(find_tensor(ck, "tuna.model.norm.weight", &m->final_norm, err));
    if (m->config.llm.tie_word_embeddings) m->lm_head = m->embed_tokens;
    else TUNA_TRY(find_tensor(ck, "tuna.lm_head.weight", &m->lm_head, err));
    TUNA_TRY(find_tensor(ck, "vision_encoder.patch_embedding.weight", &m->patch_weight, err));
    TUNA_TRY(find_tensor(ck, "vision_encoder.patch_embedding.bias", &m->patch_bias, err));
    TUNA_TRY(find_tensor(ck, "vision_encoder.norm.weight", &m->patch_norm, err));
    TUNA_TRY(find_tensor(ck, "time_embed.mlp.0.weight", &m->time_weight0, err));
    TUNA_TRY(find_tensor(ck, "time_embed.mlp.0.bias", &m->time_bias0, err));
    TUNA_TRY(find_tensor(ck, "time_embed.mlp.2.weight", &m->time_weight2, err));
    TUNA_TRY(find_tensor(ck, "time_embed.mlp.2.bias", &m->time_bias2, err));
    m->mask_token = tuna_checkpoint_find(ck, "mask_token");
    tuna_final_layer *fl = &m->final_layer;
    TUNA_TRY(find_tensor(ck, "diffusion_head_b.norm_final.weight", &fl->norm, err));
    TUNA_TRY(find_tensor(ck, "diffusion_head_b.linear.weight", &fl->linear_weight, err));
    TUNA_TRY(find_tensor(ck, "diffusion_head_b.linear.bias", &fl->linear_bias, err));
    TUNA_TRY(find_tensor(ck, "diffusion_head_b.adaLN_modulation.1.weight", &fl->modulation_weight, err));
    TUNA_TRY(find_tensor(ck, "diffusion_head_b.adaLN_modulation.1.bias", &fl->modulation_bias, err));
    return TUNA_OK;
}

/* Small tensors the kernels read as f32 (norm weights, biases) may be stored
 * in bf16: every such vector is read through tuna_tensor_get_f32 or converted
 * by the ops that take tensors, so nothing is converted here. */
static tuna_status bind_all(tuna_model *m, tuna_error *err) {
    const tuna_checkpoint *ck = m->checkpoint;
    TUNA_TRY(bind_globals(ck, m, err));
    m->llm_layers = calloc((size_t)m->config.llm.num_layers, sizeof *m->llm_layers);
    m->head_blocks = calloc((size_t)m->config.head.num_layers, sizeof *m->head_blocks);
    if (!m->llm_layers || !m->head_blocks) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory binding layers");
    for (int i = 0; i < m->config.llm.num_layers; i++) TUNA_TRY(bind_llm_layer(ck, i, &m->llm_layers[i], err));
    for (int i = 0; i < m->config.head.num_layers; i++) TUNA_TRY(bind_head_block(ck, i, &m->head_blocks[i], err));
    return TUNA_OK;
}

tuna_status tuna_model_load(const char *path, tuna_model *m, tuna_error *err) {
    memset(m, 0, sizeof *m);
    tuna_status s = tuna_checkpoint_open(path, &m->checkpoint, err);
    if (s == TUNA_OK) s = tuna_config_for_checkpoint(m->checkpoint, &m->config, &m->config_source, err);
    if (s == TUNA_OK) s = bind_all(m, err);
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
    memset(m, 0, sizeof *m);
}

float tuna_model_patch_norm_eps(const tuna_model *m) {
    return m->config.patch_norm_eps_is_machine_eps ? FLT_EPSILON : (float)m->config.patch_norm_eps;
}
