#include "model/kv_cache.h"

#include <stdlib.h>
#include <string.h>

static tuna_status alloc_rows(float **out, int layers, int capacity, int64_t row, tuna_error *err) {
    size_t n;
    if (tuna_mul_overflows((size_t)layers * (size_t)capacity, (size_t)row * sizeof(float), &n))
        return tuna_fail(err, TUNA_ERR_LIMIT, "KV cache size overflows");
    *out = malloc(n ? n : 1);
    if (!*out) return tuna_fail(err, TUNA_ERR_NOMEM, "cannot allocate a %zu-byte KV cache", n);
    return TUNA_OK;
}

tuna_status tuna_kv_cache_init(tuna_kv_cache *c, const tuna_config *config, int capacity, int with_head,
                               tuna_error *err) {
    memset(c, 0, sizeof *c);
    if (capacity <= 0) return tuna_fail(err, TUNA_ERR_INVALID, "KV cache capacity must be positive");
    c->capacity = capacity;
    c->llm_layers = config->llm.num_layers;
    c->head_layers = with_head ? config->head.num_layers : 0;
    c->llm_row = (int64_t)config->llm.num_kv_heads * config->llm.head_dim;
    c->head_row = (int64_t)config->head.num_kv_heads * config->head.head_dim;
    tuna_status s = alloc_rows(&c->llm_keys, c->llm_layers, capacity, c->llm_row, err);
    if (s == TUNA_OK) s = alloc_rows(&c->llm_values, c->llm_layers, capacity, c->llm_row, err);
    if (s == TUNA_OK && with_head) s = alloc_rows(&c->head_keys, c->head_layers, capacity, c->head_row, err);
    if (s == TUNA_OK && with_head) s = alloc_rows(&c->head_values, c->head_layers, capacity, c->head_row, err);
    if (s != TUNA_OK) tuna_kv_cache_free(c);
    return s;
}

void tuna_kv_cache_free(tuna_kv_cache *c) {
    free(c->llm_keys);
    free(c->llm_values);
    free(c->head_keys);
    free(c->head_values);
    memset(c, 0, sizeof *c);
}

void tuna_kv_cache_truncate(tuna_kv_cache *c, int length) {
    if (length < c->llm_length) c->llm_length = length;
    if (length < c->head_length) c->head_length = length;
}

size_t tuna_kv_cache_bytes(const tuna_kv_cache *c) {
    return sizeof(float) * 2 * (size_t)c->capacity *
           ((size_t)c->llm_layers * c->llm_row + (size_t)c->head_layers * c->head_row);
}
