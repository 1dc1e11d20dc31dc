/* The Tuna-2 model (SPEC sections 1-4): weights bound by their official
 * names, and the forward pass over one sequence.
 *
 * Weights stay as the checkpoint stores them (bf16 for the official model,
 * memory-mapped): every tensor below is a read-only view owned by the
 * checkpoint. Computation is in f32. */
#ifndef TUNA_MODEL_TUNA2_H
#define TUNA_MODEL_TUNA2_H

#include "core/status.h"
#include "io/checkpoint.h"
#include "model/config.h"

/* Matrices are tensors in their file dtype; vectors (norm weights, biases)
 * are f32 pointers: used in place when the file stores f32, else converted
 * once at load into buffers the model owns (a few MB even for the 7B). */
typedef struct {
    const tuna_tensor *q_weight, *k_weight, *v_weight, *o_weight;
    const float *q_bias, *k_bias, *v_bias;
    const tuna_tensor *gate_weight, *up_weight, *down_weight;
    const float *input_norm, *post_attention_norm;
} tuna_llm_layer;

typedef struct {
    const tuna_tensor *q_weight, *k_weight, *v_weight, *o_weight;
    const float *q_norm, *k_norm;
    const tuna_tensor *gate_weight, *up_weight, *down_weight;
    const float *input_norm, *post_attention_norm;
    const tuna_tensor *modulation_weight; /* adaLN_modulation.1: [6d, d] */
    const float *modulation_bias;         /* [6d] */
} tuna_head_block;

typedef struct {
    const float *norm;                    /* norm_final [d] */
    const tuna_tensor *linear_weight;     /* [p*p*C, d] */
    const float *linear_bias;             /* [p*p*C] */
    const tuna_tensor *modulation_weight; /* [2d, d] */
    const float *modulation_bias;         /* [2d] */
} tuna_final_layer;

typedef struct {
    tuna_config config;
    tuna_checkpoint *checkpoint; /* owned: every weight points into it */
    const char *config_source;   /* "config.json" or "official 7B (from shapes)" */

    const tuna_tensor *embed_tokens;  /* [V, d] */
    const float *final_norm;          /* tuna.model.norm */
    const tuna_tensor *lm_head;       /* [V, d] (embed_tokens when tied) */
    tuna_llm_layer *llm_layers;       /* owned array */

    const tuna_tensor *patch_weight;  /* [d, C, p, p] */
    const float *patch_bias;          /* [d] */
    const float *patch_norm;          /* [d] */
    const tuna_tensor *time_weight0, *time_weight2; /* time_embed.mlp.0 [d, 256], mlp.2 [d, d] */
    const float *time_bias0, *time_bias2;
    const float *mask_token;          /* [d]; NULL in checkpoints without one */

    tuna_head_block *head_blocks;     /* owned array */
    tuna_final_layer final_layer;

    float **converted;                /* owned f32 copies of non-f32 vectors */
    int converted_count, converted_capacity;
    tuna_tensor **owned_matrices;     /* matrices converted by tuna_model_set_weight_dtype */
    int owned_matrix_count;
} tuna_model;

/* Open weights (file or directory, any format io/checkpoint.h reads), find
 * the configuration (config.json or official shapes), verify every shape and
 * bind the tensors. */
tuna_status tuna_model_load(const char *path, tuna_model *model, tuna_error *err);
void tuna_model_free(tuna_model *model);

/* Convert every weight matrix to dtype (TUNA_F32 or TUNA_BF16): the precision
 * the matmuls then run in (src/model/weight_dtype.c). Matrices already in
 * dtype are left in place. */
tuna_status tuna_model_set_weight_dtype(tuna_model *model, tuna_dtype dtype, tuna_error *err);

/* Bind the model to tensors that live elsewhere (a trainer's f32 master
 * weights): find(ctx, name) returns each tensor by its official name, or NULL.
 * The model owns no checkpoint then; f32 vectors are used in place, so updates
 * to the tensors are seen by the next forward. */
typedef const tuna_tensor *(*tuna_tensor_lookup_fn)(void *ctx, const char *name);
tuna_status tuna_model_bind(tuna_model *model, const tuna_config *config, tuna_tensor_lookup_fn find, void *ctx,
                            tuna_error *err);

/* Patch-embedding RMSNorm epsilon: config value, or the f32 machine epsilon
 * 2^-23 when "patch_norm_eps" is null (SPEC section 1, fp32 compute). */
float tuna_model_patch_norm_eps(const tuna_model *model);

#endif
