#include "model/positions.h"

#include <stdlib.h>

tuna_status tuna_llm_rope_plan(const tuna_config *c, int begin, int rows, tuna_rope_plan *plan, tuna_error *err) {
    int hd = c->llm.head_dim;
    TUNA_TRY(tuna_rope_plan_init(plan, rows, hd, err));
    float *inv = malloc(sizeof(float) * (size_t)(hd / 2));
    if (!inv) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_rope_inv_freq_default(inv, hd, c->llm.rope_theta);
    tuna_rope_plan_fill_rotate_half(plan, 0, rows, begin, inv);
    free(inv);
    return TUNA_OK;
}

tuna_status tuna_head_rope_plan(const tuna_config *c, const tuna_sequence *seq, int begin, int rows,
                                tuna_rope_plan *plan, tuna_error *err) {
    const tuna_head_config *h = &c->head;
    TUNA_TRY(tuna_rope_plan_init(plan, rows, h->head_dim, err));
    float *inv = malloc(sizeof(float) * (size_t)(h->head_dim / 2));
    if (!inv) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    if (h->has_text_rope_scaling)
        tuna_rope_inv_freq_llama3(inv, h->head_dim, h->text_rope_theta, h->text_rope_scaling.factor,
                                  h->text_rope_scaling.low_freq_factor, h->text_rope_scaling.high_freq_factor,
                                  h->text_rope_scaling.original_max_position_embeddings);
    else
        tuna_rope_inv_freq_default(inv, h->head_dim, h->text_rope_theta);
    for (int i = 0; i < rows; i++) {
        int pos = begin + i;
        int k = tuna_segment_at(seq->segments, seq->image_count, pos);
        if (k < 0) {
            tuna_rope_plan_set_rotate_half(plan, i, pos, inv);
        } else if (pos == seq->segments[k].offset) {
            tuna_rope_plan_set_none(plan, i);
        } else {
            int j = pos - seq->segments[k].offset - 1, gw = seq->segments[k].grid_w;
            tuna_rope_plan_set_3d(plan, i, 0.0, j / gw, j % gw, h->image_rope_theta);
        }
    }
    free(inv);
    return TUNA_OK;
}
