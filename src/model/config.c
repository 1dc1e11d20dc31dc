#include "model/config.h"

#include <string.h>

void tuna_config_official_7b(tuna_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 151669;
    c->hidden_size = 3584;
    c->llm = (tuna_llm_config){.num_layers = 28, .num_heads = 28, .num_kv_heads = 4, .head_dim = 128,
                               .intermediate_size = 18944, .rope_theta = 1e6, .rms_norm_eps = 1e-6,
                               .tie_word_embeddings = 0};
    c->head = (tuna_head_config){.num_layers = 16, .num_heads = 56, .num_kv_heads = 14, .head_dim = 64,
                                 .intermediate_size = 18944, .rms_norm_eps = 1e-5, .qk_norm_eps = 1e-6,
                                 .final_norm_eps = 1e-6, .text_rope_theta = 5e5, .has_text_rope_scaling = 1,
                                 .text_rope_scaling = {32.0, 1.0, 4.0, 8192.0}, .image_rope_theta = 1e4};
    c->patch_size = 16;
    c->image_channels = 3;
    c->time_freq_dim = 256;
    c->patch_norm_eps_is_machine_eps = 1;
    c->noise_scale = 2.0;
    c->t_eps = 0.05;
    c->tokens = (tuna_special_tokens){.bos = 151644, .eos = 151645, .boi = 151652, .eoi = 151653,
                                      .image_pad = 151655, .pad = 151665};
}
