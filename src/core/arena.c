#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64

tuna_status tuna_arena_init(tuna_arena *a, size_t capacity, tuna_error *err) {
    memset(a, 0, sizeof *a);
    capacity = (capacity + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    a->base = aligned_alloc(ARENA_ALIGN, capacity ? capacity : ARENA_ALIGN);
    if (!a->base) return tuna_fail(err, TUNA_ERR_NOMEM, "cannot allocate a %zu-byte arena", capacity);
    a->capacity = capacity;
    return TUNA_OK;
}

void tuna_arena_free(tuna_arena *a) {
    free(a->base);
    memset(a, 0, sizeof *a);
}

void *tuna_arena_alloc(tuna_arena *a, size_t bytes, tuna_error *err) {
    size_t rounded;
    if (tuna_add_overflows(bytes, ARENA_ALIGN - 1, &rounded)) {
        tuna_fail(err, TUNA_ERR_LIMIT, "arena request of %zu bytes overflows", bytes);
        return NULL;
    }
    rounded &= ~(size_t)(ARENA_ALIGN - 1);
    if (rounded > a->capacity - a->used) {
        tuna_fail(err, TUNA_ERR_NOMEM, "arena full: %zu of %zu bytes used, %zu more requested", a->used,
                  a->capacity, bytes);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += rounded;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

tuna_status tuna_arena_tensor(tuna_arena *a, tuna_tensor *t, tuna_dtype dtype, int ndim, const int64_t *shape,
                              tuna_error *err) {
    if (ndim < 0 || ndim > TUNA_MAX_DIMS) return tuna_fail(err, TUNA_ERR_INVALID, "tensor rank %d out of range", ndim);
    size_t bytes = tuna_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || tuna_mul_overflows(bytes, (size_t)shape[i], &bytes))
            return tuna_fail(err, TUNA_ERR_LIMIT, "bad tensor shape for the arena");
    }
    void *data = tuna_arena_alloc(a, bytes, err);
    if (!data) return err ? err->code : TUNA_ERR_NOMEM;
    memset(data, 0, bytes);
    tuna_tensor_init_view(t, dtype, ndim, shape, data);
    return TUNA_OK;
}
