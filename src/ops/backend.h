/* The backend seam: every buffer the model graph allocates, every copy and
 * every op it runs goes through one table of function pointers.
 *
 * The graph (src/model) never calls a kernel directly; it calls
 * be->ops->rmsnorm(be, ...). A backend fills the table with its own kernels
 * and keeps what they need to run (the CPU backend: its thread pool) in ctx.
 * The CPU backend (src/ops/cpu/backend_cpu.c) forwards to the kernels of
 * ops/ops.h, so results through the seam are bit-identical to calling them.
 *
 * Weights are tuna_tensor whose dtype picks the kernel (F32, BF16, F16 today;
 * block-quantised types next): the graph never branches on a weight's dtype.
 * Activations are f32 buffers from be->ops->alloc (a tuna_workspace holds
 * them between calls: src/ops/workspace.h). The semantics of each op are
 * those of the kernel of the same name in ops/ops.h (forward and backward
 * side by side there, with the math). */
#ifndef TUNA_OPS_BACKEND_H
#define TUNA_OPS_BACKEND_H

#include "ops/ops.h"

typedef struct tuna_backend tuna_backend;

typedef struct {
    const char *name;

    /* ---- memory: 64-byte aligned buffers of the backend's memory ---- */
    void *(*alloc)(const tuna_backend *be, size_t bytes); /* NULL when out of memory */
    void (*free)(const tuna_backend *be, void *p);
    void (*copy)(const tuna_backend *be, void *dst, const void *src, size_t bytes);
    void (*zero)(const tuna_backend *be, void *dst, size_t bytes);

    /* ---- linear layers ---- */
    tuna_status (*matmul)(const tuna_backend *be, float *y, const float *x, const tuna_tensor *w, const float *bias,
                          int64_t M, int64_t K, tuna_error *err);
    tuna_status (*matmul_group)(const tuna_backend *be, const tuna_matmul_target *targets, int count,
                                const float *x, int64_t M, int64_t K, tuna_error *err);
    tuna_status (*matmul_backward_input)(const tuna_backend *be, float *dx, const float *dy, const tuna_tensor *w,
                                         int64_t M, int accumulate, tuna_error *err);
    void (*matmul_backward_weight)(const tuna_backend *be, float *dW, float *dbias, const float *dy,
                                   const float *x, int64_t M, int64_t N, int64_t K);

    /* ---- normalisation, activations, residuals ---- */
    void (*rmsnorm)(const tuna_backend *be, float *y, float *rstd, const float *x, const float *w, int64_t rows,
                    int64_t dim, float eps);
    void (*rmsnorm_backward)(const tuna_backend *be, float *dx, float *dw, const float *dy, const float *x,
                             const float *w, const float *rstd, int64_t rows, int64_t dim);
    void (*silu)(const tuna_backend *be, float *y, const float *x, int64_t n);
    void (*silu_backward)(const tuna_backend *be, float *dx, const float *dy, const float *x, int64_t n);
    void (*swiglu)(const tuna_backend *be, float *out, const float *gate, const float *up, int64_t n);
    void (*swiglu_backward)(const tuna_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, int64_t n);
    void (*add)(const tuna_backend *be, float *y, const float *x, int64_t n); /* y += x */

    /* ---- positions and attention ---- */
    void (*rope)(const tuna_backend *be, float *x, int64_t L, int heads, const tuna_rope_plan *plan);
    void (*rope_backward)(const tuna_backend *be, float *dx, int64_t L, int heads, const tuna_rope_plan *plan);
    tuna_status (*attention)(const tuna_backend *be, float *out, float *lse, const float *q, const float *k,
                             const float *v, const tuna_attention_params *params, tuna_error *err);
    tuna_status (*attention_backward)(const tuna_backend *be, float *dq, float *dk, float *dv, const float *dout,
                                      const float *q, const float *k, const float *v, const float *out,
                                      const float *lse, const tuna_attention_params *params, tuna_error *err);

    /* ---- adaLN on image segments ---- */
    void (*adaln_modulate)(const tuna_backend *be, float *y, const float *x, const float *shift, const float *scale,
                           int64_t mod_stride, int64_t rows, int64_t dim, const tuna_segment *segments,
                           int n_segments);
    void (*adaln_modulate_backward)(const tuna_backend *be, float *dx, float *dshift, float *dscale,
                                    const float *dy, const float *x, const float *scale, int64_t mod_stride,
                                    int64_t rows, int64_t dim, const tuna_segment *segments, int n_segments);
    void (*adaln_gate_residual)(const tuna_backend *be, float *h, const float *y, const float *gate,
                                int64_t gate_stride, int64_t rows, int64_t dim, const tuna_segment *segments,
                                int n_segments);
    void (*adaln_gate_residual_backward)(const tuna_backend *be, float *dy, float *dgate, const float *dh,
                                         const float *y, const float *gate, int64_t gate_stride, int64_t rows,
                                         int64_t dim, const tuna_segment *segments, int n_segments);

    /* ---- embeddings ---- */
    tuna_status (*embedding)(const tuna_backend *be, float *out, const tuna_tensor *table, const int32_t *ids,
                             int64_t n, tuna_error *err);
    void (*embedding_backward)(const tuna_backend *be, float *dtable, const float *dout, const int32_t *ids,
                               int64_t n, int64_t dim);
    void (*im2col)(const tuna_backend *be, float *cols, const float *image, int C, int H, int W, int p);
    void (*timestep_embedding)(const tuna_backend *be, float *out, const float *t, int64_t n, int dim,
                               double max_period);
    void (*unpatchify)(const tuna_backend *be, float *image, const float *slots, int channels, int height, int width);
    void (*patchify)(const tuna_backend *be, float *slots, const float *image, int channels, int height, int width);

    /* ---- losses (SPEC sections 5, 9) ---- */
    float (*cross_entropy)(const tuna_backend *be, const float *logits, const int32_t *labels, int length,
                           int vocab, int *count, int *invalid);
    void (*cross_entropy_backward)(const tuna_backend *be, const float *logits, const int32_t *labels, int length,
                                   int vocab, float scale, float *dlogits);
    float (*flow_loss)(const tuna_backend *be, const float *const *x_pred, const float *const *x_clean,
                       const float *t, const uint8_t *active, const long *count, int K, float t_eps);
    void (*flow_loss_backward)(const tuna_backend *be, const float *const *x_pred, const float *const *x_clean,
                               const float *t, const uint8_t *active, const long *count, int K, float t_eps,
                               float scale, float *const *dx_pred);

    /* ---- optimizer, on n contiguous elements ---- */
    void (*adamw)(const tuna_backend *be, float *w, float *m, float *v, const float *g, int64_t n,
                  const tuna_adamw_scalars *a);
    double (*sum_squares)(const tuna_backend *be, const float *x, int64_t n); /* double accumulation */
    void (*scale)(const tuna_backend *be, float *y, float s, int64_t n);      /* y *= s */
    void (*ema)(const tuna_backend *be, float *ema, const float *w, float weight, int64_t n); /* ema += weight (w - ema) */
} tuna_backend_ops;

struct tuna_backend {
    const tuna_backend_ops *ops;
    void *ctx; /* the backend's own state (CPU: its tuna_threads, may be NULL = one thread) */
};

/* The CPU backend running on `pool` (NULL: one thread). Stateless: a value
 * that may be copied and shared between threads. */
tuna_backend tuna_backend_cpu(const tuna_threads *pool);

/* The pool of a CPU backend (NULL for one thread or another backend). */
const tuna_threads *tuna_backend_cpu_threads(const tuna_backend *be);

#endif
