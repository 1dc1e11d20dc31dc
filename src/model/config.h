/* Tuna-2 model configuration (SPEC section 8).
 *
 * Read from the config.json beside the weights (src/io/config.c), or, when
 * that file is absent and the tensor shapes are the official ones, filled with
 * the official 7B values. Unknown keys in the file are an error. */
#ifndef TUNA_MODEL_CONFIG_H
#define TUNA_MODEL_CONFIG_H

typedef struct {
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int intermediate_size;
    double rope_theta;        /* 1D rotate-half RoPE over arange(L) */
    double rms_norm_eps;
    int tie_word_embeddings;
} tuna_llm_config;

typedef struct {
    double factor;            /* llama3 scaling: 32 */
    double low_freq_factor;   /* 1 */
    double high_freq_factor;  /* 4 */
    double original_max_position_embeddings; /* 8192 */
} tuna_rope_scaling;

typedef struct {
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;
    int intermediate_size;
    double rms_norm_eps;      /* input/post-attention layernorm: 1e-5 */
    double qk_norm_eps;       /* 1e-6 */
    double final_norm_eps;    /* 1e-6 */
    double text_rope_theta;   /* 5e5, with text_rope_scaling */
    int has_text_rope_scaling;
    tuna_rope_scaling text_rope_scaling;
    double image_rope_theta;  /* 1e4, 3D interleaved, minus angle */
} tuna_head_config;

typedef struct {
    int bos, eos, boi, eoi, image_pad, pad;
} tuna_special_tokens;

/* An image size the model was trained for (config.json "image_sizes": ["WxH", ...]). */
typedef struct {
    int height, width;
} tuna_image_size;

#define TUNA_CONFIG_MAX_IMAGE_SIZES 16
#define TUNA_CONFIG_MAX_NEGATIVE 1024

typedef struct {
    int vocab_size;
    int hidden_size;
    tuna_llm_config llm;
    tuna_head_config head;
    int patch_size;
    int image_channels;
    int time_freq_dim;
    int patch_norm_eps_is_machine_eps; /* "patch_norm_eps": null */
    double patch_norm_eps;             /* used when the flag above is 0 */
    double noise_scale;                /* 2.0 */
    double t_eps;                      /* 0.05 */
    tuna_special_tokens tokens;
    /* Optional keys: what the model was trained with, so that every command
     * (and the server) uses it by default. */
    int image_size_count;              /* "image_sizes"; 0: not recorded */
    tuna_image_size image_sizes[TUNA_CONFIG_MAX_IMAGE_SIZES];
    char negative_prompt[TUNA_CONFIG_MAX_NEGATIVE]; /* "negative_prompt"; "" with has_negative_prompt 0: none */
    int has_negative_prompt;
} tuna_config;

/* The official Tuna-2 7B values of SPEC section 8 (no recorded image sizes:
 * patch-16 models get the 512-class buckets of SPEC section 4 by default;
 * no recorded negative prompt). */
void tuna_config_official_7b(tuna_config *c);

#endif
