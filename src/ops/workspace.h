/* Workspace: the activation memory of one kind of forward, sized once and
 * reused.
 *
 * A call (one decode token, one Euler step, one training step) takes its
 * buffers with tuna_workspace_alloc and gives them all back at once with
 * tuna_workspace_reset before the next call. Memory comes from the backend
 * (be->ops->alloc). While a call asks for more than the block holds, the
 * extra requests get chunks of their own (pointers never move); the next
 * reset frees them and the block, and the next alloc takes one block of the
 * peak size. So the first call of a shape sizes the workspace and every
 * later call of that shape or smaller allocates nothing: no malloc per
 * decoded token or per Euler step in steady state. */
#ifndef TUNA_OPS_WORKSPACE_H
#define TUNA_OPS_WORKSPACE_H

#include "ops/backend.h"

typedef struct {
    tuna_backend backend;   /* a copy: the workspace outlives the caller's backend value */
    char *block;            /* one backend allocation of `capacity` bytes */
    size_t capacity, used;  /* used: bytes handed out of block this call */
    void **chunks;          /* overflow of this call, freed at reset */
    int chunk_count, chunk_capacity;
    size_t requested;       /* bytes handed out this call (block + chunks) */
    size_t peak;            /* largest `requested` of any call */
    int grows;              /* times the block was (re)allocated: a test's view of "sized once" */
} tuna_workspace;

void tuna_workspace_init(tuna_workspace *ws, const tuna_backend *backend);
void tuna_workspace_free(tuna_workspace *ws);

/* *out = a 64-byte aligned buffer of `bytes`, uninitialised (zeroed: filled
 * with zeros), valid until the next reset. Fails with TUNA_ERR_NOMEM when the
 * backend is out of memory. */
tuna_status tuna_workspace_alloc(tuna_workspace *ws, size_t bytes, int zeroed, void **out, tuna_error *err);

/* n floats (the size checked for overflow), as tuna_workspace_alloc. */
tuna_status tuna_workspace_floats(tuna_workspace *ws, int64_t n, int zeroed, float **out, tuna_error *err);

/* Give every buffer back (and fold this call's overflow into one block). */
void tuna_workspace_reset(tuna_workspace *ws);

#endif
