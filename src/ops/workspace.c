#include "ops/workspace.h"

#include <stdlib.h>
#include <string.h>

#define WS_ALIGN 64

void tuna_workspace_init(tuna_workspace *ws, const tuna_backend *backend) {
    memset(ws, 0, sizeof *ws);
    ws->backend = *backend;
}

static void free_chunks(tuna_workspace *ws) {
    for (int i = 0; i < ws->chunk_count; i++) ws->backend.ops->free(&ws->backend, ws->chunks[i]);
    ws->chunk_count = 0;
}

void tuna_workspace_free(tuna_workspace *ws) {
    if (!ws->backend.ops) return;
    free_chunks(ws);
    free(ws->chunks);
    if (ws->block) ws->backend.ops->free(&ws->backend, ws->block);
    memset(ws, 0, sizeof *ws);
}

void tuna_workspace_reset(tuna_workspace *ws) {
    if (ws->requested > ws->peak) ws->peak = ws->requested;
    if (ws->chunk_count) { /* this call outgrew the block: the next alloc takes one of the peak size */
        free_chunks(ws);
        if (ws->block) ws->backend.ops->free(&ws->backend, ws->block);
        ws->block = NULL;
        ws->capacity = 0;
    }
    ws->used = 0;
    ws->requested = 0;
}

static tuna_status overflow_chunk(tuna_workspace *ws, size_t bytes, void **out, tuna_error *err) {
    if (ws->chunk_count == ws->chunk_capacity) {
        int capacity = ws->chunk_capacity ? 2 * ws->chunk_capacity : 64;
        void **chunks = realloc(ws->chunks, sizeof *chunks * (size_t)capacity);
        if (!chunks) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the workspace");
        ws->chunks = chunks;
        ws->chunk_capacity = capacity;
    }
    void *p = ws->backend.ops->alloc(&ws->backend, bytes);
    if (!p) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory: %zu bytes of activations", bytes);
    ws->chunks[ws->chunk_count++] = p;
    *out = p;
    return TUNA_OK;
}

static tuna_status take(tuna_workspace *ws, size_t bytes, void **out, tuna_error *err) {
    size_t rounded = (bytes + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    if (rounded < bytes) return tuna_fail(err, TUNA_ERR_LIMIT, "workspace request of %zu bytes overflows", bytes);
    if (rounded == 0) rounded = WS_ALIGN;
    if (!ws->block && ws->used == 0 && ws->peak > 0) { /* first request after a reset that dropped the block */
        ws->block = ws->backend.ops->alloc(&ws->backend, ws->peak);
        ws->capacity = ws->block ? ws->peak : 0;
        ws->grows += ws->block != NULL;
    }
    ws->requested += rounded;
    if (ws->block && ws->capacity - ws->used >= rounded) {
        *out = ws->block + ws->used;
        ws->used += rounded;
        return TUNA_OK;
    }
    ws->used = ws->capacity; /* the rest of this call goes to chunks too: the order stays simple */
    return overflow_chunk(ws, rounded, out, err);
}

tuna_status tuna_workspace_alloc(tuna_workspace *ws, size_t bytes, int zeroed, void **out, tuna_error *err) {
    *out = NULL;
    TUNA_TRY(take(ws, bytes, out, err));
    if (zeroed) ws->backend.ops->zero(&ws->backend, *out, bytes);
    return TUNA_OK;
}

tuna_status tuna_workspace_floats(tuna_workspace *ws, int64_t n, int zeroed, float **out, tuna_error *err) {
    size_t bytes;
    void *p = NULL;
    *out = NULL;
    if (n < 0 || tuna_mul_overflows((size_t)n, sizeof(float), &bytes))
        return tuna_fail(err, TUNA_ERR_LIMIT, "buffer of %lld floats", (long long)n);
    TUNA_TRY(tuna_workspace_alloc(ws, bytes, zeroed, &p, err));
    *out = p;
    return TUNA_OK;
}
