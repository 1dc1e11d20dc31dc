/* Arena: a bump allocator for activations.
 *
 * A forward pass takes its scratch tensors from one arena and releases them all
 * at once (tuna_arena_reset, or back to a mark). Allocations are 64-byte aligned
 * so SIMD loads never straddle cache lines. The arena owns one malloc'd block;
 * it never grows behind the caller's back, so peak memory is decided up front. */
#ifndef TUNA_CORE_ARENA_H
#define TUNA_CORE_ARENA_H

#include "core/tensor.h"

typedef struct {
    char *base;
    size_t capacity;
    size_t used;
    size_t peak;
} tuna_arena;

tuna_status tuna_arena_init(tuna_arena *a, size_t capacity, tuna_error *err);
void tuna_arena_free(tuna_arena *a);

/* NULL (and err filled) when the arena is full. */
void *tuna_arena_alloc(tuna_arena *a, size_t bytes, tuna_error *err);
/* A zeroed contiguous tensor living in the arena. */
tuna_status tuna_arena_tensor(tuna_arena *a, tuna_tensor *t, tuna_dtype dtype, int ndim, const int64_t *shape,
                              tuna_error *err);

static inline size_t tuna_arena_mark(const tuna_arena *a) { return a->used; }
static inline void tuna_arena_release(tuna_arena *a, size_t mark) { a->used = mark; }
static inline void tuna_arena_reset(tuna_arena *a) { a->used = 0; }

#endif
