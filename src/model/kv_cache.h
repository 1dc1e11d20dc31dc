/* Key/value cache of one sequence, for the LLM layers and the head blocks.
 *
 * Rows [0, length) of every layer hold the rotated keys and the values of the
 * positions already computed. Understanding decodes one token at a time on top
 * of it; generation computes the text before the image once and then, at each
 * Euler step, only the image segment, truncating back to the prefix after the
 * step (tuna_kv_cache_truncate). Stored in f32. */
#ifndef TUNA_MODEL_KV_CACHE_H
#define TUNA_MODEL_KV_CACHE_H

#include "model/tuna2.h"

typedef struct {
    int capacity;          /* rows allocated per layer */
    int llm_length;        /* rows valid in the LLM layers */
    int head_length;       /* rows valid in the head blocks */
    int llm_layers, head_layers;
    int64_t llm_row, head_row; /* floats per row: kv_heads * head_dim */
    float *llm_keys, *llm_values;   /* [layers][capacity][llm_row] */
    float *head_keys, *head_values; /* [layers][capacity][head_row] */
} tuna_kv_cache;

/* with_head = 0 leaves out the head blocks' rows (text-only decoding). */
tuna_status tuna_kv_cache_init(tuna_kv_cache *cache, const tuna_config *config, int capacity, int with_head,
                               tuna_error *err);
void tuna_kv_cache_free(tuna_kv_cache *cache);
void tuna_kv_cache_truncate(tuna_kv_cache *cache, int length);
size_t tuna_kv_cache_bytes(const tuna_kv_cache *cache);

static inline float *tuna_kv_llm_keys(const tuna_kv_cache *c, int layer) {
    return c->llm_keys + (size_t)layer * c->capacity * c->llm_row;
}
static inline float *tuna_kv_llm_values(const tuna_kv_cache *c, int layer) {
    return c->llm_values + (size_t)layer * c->capacity * c->llm_row;
}
static inline float *tuna_kv_head_keys(const tuna_kv_cache *c, int layer) {
    return c->head_keys + (size_t)layer * c->capacity * c->head_row;
}
static inline float *tuna_kv_head_values(const tuna_kv_cache *c, int layer) {
    return c->head_values + (size_t)layer * c->capacity * c->head_row;
}

#endif
