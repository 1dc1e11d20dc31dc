/* The Tuna-2 forward pass (SPEC sections 1-4) over rows of one or more
 * sequences at once.
 *
 * A request computes rows [row_begin, row_end) of its sequence on top of a KV
 * cache that already holds rows [0, row_begin). Several requests run as one
 * batch: their rows are stacked for every matmul (the weights are read once)
 * while RoPE, attention and modulation stay per sequence. This one entry point
 * serves the whole-sequence forward of `tuna forward` (one request, rows
 * [0, L), empty cache), prefill and one-token decoding for understanding, and
 * the Euler steps of generation (the image segment of the conditional and
 * unconditional sequences, two requests, after a cached text prefix). */
#ifndef TUNA_MODEL_FORWARD_H
#define TUNA_MODEL_FORWARD_H

#include "model/kv_cache.h"
#include "model/sequence.h"
#include "model/tuna2.h"
#include "ops/workspace.h"

typedef enum {
    TUNA_LOGITS_NONE = 0,
    TUNA_LOGITS_LAST, /* only the last computed row: [1, V] */
    TUNA_LOGITS_ALL,  /* every computed row: [n, V] */
    TUNA_LOGITS_ROWS, /* the rows listed in logit_rows: [logit_row_count, V] */
} tuna_logits_mode;

typedef struct {
    const tuna_sequence *sequence; /* ids of rows [0, row_end) at least, segments, images, t */
    tuna_kv_cache *cache;          /* llm_length == row_begin (and head_length when run_head); NULL: the rows
                                      attend to themselves only (row_begin must be 0) */
    int row_begin, row_end;
    int run_head;                  /* run the flow head on these rows */
    tuna_logits_mode logits_mode;
    const int *logit_rows;         /* TUNA_LOGITS_ROWS: sequence positions in [row_begin, row_end) */
    int logit_row_count;
    float *hidden;                 /* [n, d] LLM output after its final norm, or NULL */
    float *logits;                 /* [1, n or logit_row_count, V], or NULL */
    float *head_out;               /* [n, p*p*C] final-layer output per row, or NULL */
} tuna_forward_request;

/* All requests must agree on run_head. On success each cache has grown to
 * row_end rows. Activations live in ws (reset at the start of the call: what
 * an earlier call left there is gone); ws == NULL uses a workspace of the
 * call's own. */
tuna_status tuna_model_forward(const tuna_model *model, tuna_forward_request *requests, int count,
                               const tuna_backend *be, tuna_workspace *ws, tuna_error *err);

#endif
