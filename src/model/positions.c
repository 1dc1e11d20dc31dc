#include "model/positions.h"

void tuna_llm_rope_fill(const tuna_config *c, int begin, tuna_rope_plan *plan, float *inv_freq) {
    tuna_rope_inv_freq_default(inv_freq, c->llm.head_dim, c->llm.rope_theta);
    tuna_rope_plan_fill_rotate_half(plan, 0, plan->len, begin, inv_freq);
}

void tuna_head_rope_fill(const tuna_config *c, const tuna_sequence *seq, int begin, tuna_rope_plan *plan,
                         float *inv_freq) {
    const tuna_head_config *h = &c->head;
    if (h->has_text_rope_scaling)
        tuna_rope_inv_freq_llama3(inv_freq, h->head_dim, h->text_rope_theta, h->text_rope_scaling.factor,
                                  h->text_rope_scaling.low_freq_factor, h->text_rope_scaling.high_freq_factor,
                                  h->text_rope_scaling.original_max_position_embeddings);
    else
        tuna_rope_inv_freq_default(inv_freq, h->head_dim, h->text_rope_theta);
    for (int64_t i = 0; i < plan->len; i++) {
        int pos = begin + (int)i;
        int k = tuna_segment_at(seq->segments, seq->image_count, pos);
        if (k < 0) {
            tuna_rope_plan_set_rotate_half(plan, i, pos, inv_freq);
        } else if (pos == seq->segments[k].offset) {
            tuna_rope_plan_set_none(plan, i);
        } else {
            int j = pos - seq->segments[k].offset - 1, gw = seq->segments[k].grid_w;
            tuna_rope_plan_set_3d(plan, i, 0.0, j / gw, j % gw, h->image_rope_theta);
        }
    }
}
