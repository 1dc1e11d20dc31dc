/* The CPU backend: the seam of src/ops/backend.h filled with the kernels of
 * ops/ops.h. Each entry forwards its arguments, adding the thread pool the
 * backend carries, so results through the seam are the kernels' bit for bit. */
#include "ops/backend.h"

#include <stdlib.h>
#include <string.h>

static const tuna_threads *pool_of(const tuna_backend *be) { return be->ctx; }

/* ---- memory ---- */

static void *cpu_alloc(const tuna_backend *be, size_t bytes) {
    (void)be;
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    return posix_memalign(&p, 64, rounded ? rounded : 64) == 0 ? p : NULL;
}
static void cpu_free(const tuna_backend *be, void *p) { (void)be, free(p); }
static void cpu_copy(const tuna_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
}
static void cpu_zero(const tuna_backend *be, void *dst, size_t bytes) {
    (void)be;
    if (bytes) memset(dst, 0, bytes);
}

/* ---- linear layers ---- */

static tuna_status cpu_matmul(const tuna_backend *be, float *y, const float *x, const tuna_tensor *w,
                              const float *bias, int64_t M, int64_t K, tuna_error *err) {
    return tuna_matmul_forward(y, x, w, bias, M, K, pool_of(be), err);
}
static tuna_status cpu_matmul_group(const tuna_backend *be, const tuna_matmul_target *targets, int count,
                                    const float *x, int64_t M, int64_t K, tuna_error *err) {
    return tuna_matmul_forward_group(targets, count, x, M, K, pool_of(be), err);
}
static tuna_status cpu_matmul_backward_input(const tuna_backend *be, float *dx, const float *dy,
                                             const tuna_tensor *w, int64_t M, int accumulate, tuna_error *err) {
    return tuna_matmul_backward_input(dx, dy, w, M, accumulate, pool_of(be), err);
}
static void cpu_matmul_backward_weight(const tuna_backend *be, float *dW, float *dbias, const float *dy,
                                       const float *x, int64_t M, int64_t N, int64_t K) {
    tuna_matmul_backward_weight(dW, dbias, dy, x, M, N, K, pool_of(be));
}

/* ---- normalisation, activations ---- */

static void cpu_rmsnorm(const tuna_backend *be, float *y, float *rstd, const float *x, const float *w,
                        int64_t rows, int64_t dim, float eps) {
    tuna_rmsnorm_forward(y, rstd, x, w, rows, dim, eps, pool_of(be));
}
static void cpu_rmsnorm_backward(const tuna_backend *be, float *dx, float *dw, const float *dy, const float *x,
                                 const float *w, const float *rstd, int64_t rows, int64_t dim) {
    (void)be;
    tuna_rmsnorm_backward(dx, dw, dy, x, w, rstd, rows, dim);
}
static void cpu_silu(const tuna_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    tuna_silu_forward(y, x, n);
}
static void cpu_silu_backward(const tuna_backend *be, float *dx, const float *dy, const float *x, int64_t n) {
    (void)be;
    tuna_silu_backward(dx, dy, x, n);
}
static void cpu_swiglu(const tuna_backend *be, float *out, const float *gate, const float *up, int64_t n) {
    (void)be;
    tuna_swiglu_forward(out, gate, up, n);
}
static void cpu_swiglu_backward(const tuna_backend *be, float *dgate, float *dup, const float *dout,
                                const float *gate, const float *up, int64_t n) {
    (void)be;
    tuna_swiglu_backward(dgate, dup, dout, gate, up, n);
}
static void cpu_add(const tuna_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    tuna_vec_acc(y, x, n);
}

/* ---- positions and attention ---- */

static void cpu_rope(const tuna_backend *be, float *x, int64_t L, int heads, const tuna_rope_plan *plan) {
    tuna_rope_forward(x, L, heads, plan, pool_of(be));
}
static void cpu_rope_backward(const tuna_backend *be, float *dx, int64_t L, int heads, const tuna_rope_plan *plan) {
    tuna_rope_backward(dx, L, heads, plan, pool_of(be));
}
static tuna_status cpu_attention(const tuna_backend *be, float *out, float *lse, const float *q, const float *k,
                                 const float *v, const tuna_attention_params *params, tuna_error *err) {
    return tuna_attention_forward(out, lse, q, k, v, params, pool_of(be), err);
}
static tuna_status cpu_attention_backward(const tuna_backend *be, float *dq, float *dk, float *dv,
                                          const float *dout, const float *q, const float *k, const float *v,
                                          const float *out, const float *lse, const tuna_attention_params *params,
                                          tuna_error *err) {
    return tuna_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, params, pool_of(be), err);
}

/* ---- adaLN ---- */

static void cpu_adaln_modulate(const tuna_backend *be, float *y, const float *x, const float *shift,
                               const float *scale, int64_t mod_stride, int64_t rows, int64_t dim,
                               const tuna_segment *segments, int n_segments) {
    (void)be;
    tuna_adaln_modulate_forward(y, x, shift, scale, mod_stride, rows, dim, segments, n_segments);
}
static void cpu_adaln_modulate_backward(const tuna_backend *be, float *dx, float *dshift, float *dscale,
                                        const float *dy, const float *x, const float *scale, int64_t mod_stride,
                                        int64_t rows, int64_t dim, const tuna_segment *segments, int n_segments) {
    (void)be;
    tuna_adaln_modulate_backward(dx, dshift, dscale, dy, x, scale, mod_stride, rows, dim, segments, n_segments);
}
static void cpu_adaln_gate_residual(const tuna_backend *be, float *h, const float *y, const float *gate,
                                    int64_t gate_stride, int64_t rows, int64_t dim, const tuna_segment *segments,
                                    int n_segments) {
    (void)be;
    tuna_adaln_gate_residual_forward(h, y, gate, gate_stride, rows, dim, segments, n_segments);
}
static void cpu_adaln_gate_residual_backward(const tuna_backend *be, float *dy, float *dgate, const float *dh,
                                             const float *y, const float *gate, int64_t gate_stride, int64_t rows,
                                             int64_t dim, const tuna_segment *segments, int n_segments) {
    (void)be;
    tuna_adaln_gate_residual_backward(dy, dgate, dh, y, gate, gate_stride, rows, dim, segments, n_segments);
}

/* ---- embeddings ---- */

static tuna_status cpu_embedding(const tuna_backend *be, float *out, const tuna_tensor *table, const int32_t *ids,
                                 int64_t n, tuna_error *err) {
    (void)be;
    return tuna_embedding_forward(out, table, ids, n, err);
}
static void cpu_embedding_backward(const tuna_backend *be, float *dtable, const float *dout, const int32_t *ids,
                                   int64_t n, int64_t dim) {
    (void)be;
    tuna_embedding_backward(dtable, dout, ids, n, dim);
}
static void cpu_im2col(const tuna_backend *be, float *cols, const float *image, int C, int H, int W, int p) {
    (void)be;
    tuna_im2col_patches(cols, image, C, H, W, p);
}
static void cpu_timestep_embedding(const tuna_backend *be, float *out, const float *t, int64_t n, int dim,
                                   double max_period) {
    (void)be;
    tuna_timestep_embedding(out, t, n, dim, max_period);
}

static void cpu_unpatchify(const tuna_backend *be, float *image, const float *slots, int channels, int height,
                           int width) {
    (void)be;
    tuna_unpatchify(image, slots, channels, height, width);
}
static void cpu_patchify(const tuna_backend *be, float *slots, const float *image, int channels, int height,
                         int width) {
    (void)be;
    tuna_patchify_labels(slots, image, channels, height, width);
}

/* ---- losses ---- */

static float cpu_cross_entropy(const tuna_backend *be, const float *logits, const int32_t *labels, int length,
                               int vocab, int *count, int *invalid) {
    (void)be;
    return tuna_cross_entropy_shifted_forward(logits, labels, length, vocab, count, invalid);
}
static void cpu_cross_entropy_backward(const tuna_backend *be, const float *logits, const int32_t *labels,
                                       int length, int vocab, float scale, float *dlogits) {
    (void)be;
    tuna_cross_entropy_shifted_backward(logits, labels, length, vocab, scale, dlogits);
}
static float cpu_flow_loss(const tuna_backend *be, const float *const *x_pred, const float *const *x_clean,
                           const float *t, const uint8_t *active, const long *count, int K, float t_eps) {
    (void)be;
    return tuna_flow_loss_forward(x_pred, x_clean, t, active, count, K, t_eps);
}
static void cpu_flow_loss_backward(const tuna_backend *be, const float *const *x_pred, const float *const *x_clean,
                                   const float *t, const uint8_t *active, const long *count, int K, float t_eps,
                                   float scale, float *const *dx_pred) {
    (void)be;
    tuna_flow_loss_backward(x_pred, x_clean, t, active, count, K, t_eps, scale, dx_pred);
}

/* ---- optimizer ---- */

static void cpu_adamw(const tuna_backend *be, float *w, float *m, float *v, const float *g, int64_t n,
                      const tuna_adamw_scalars *a) {
    (void)be;
    tuna_adamw_update(w, m, v, g, n, a);
}
static double cpu_sum_squares(const tuna_backend *be, const float *x, int64_t n) {
    (void)be;
    return tuna_sum_squares(x, n);
}
static void cpu_scale(const tuna_backend *be, float *y, float s, int64_t n) {
    (void)be;
    tuna_vec_scale(y, s, n);
}
static void cpu_ema(const tuna_backend *be, float *ema, const float *w, float weight, int64_t n) {
    (void)be;
    tuna_ema_lerp(ema, w, weight, n);
}

static const tuna_backend_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .matmul = cpu_matmul,
    .matmul_group = cpu_matmul_group,
    .matmul_backward_input = cpu_matmul_backward_input,
    .matmul_backward_weight = cpu_matmul_backward_weight,
    .rmsnorm = cpu_rmsnorm,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .silu = cpu_silu,
    .silu_backward = cpu_silu_backward,
    .swiglu = cpu_swiglu,
    .swiglu_backward = cpu_swiglu_backward,
    .add = cpu_add,
    .rope = cpu_rope,
    .rope_backward = cpu_rope_backward,
    .attention = cpu_attention,
    .attention_backward = cpu_attention_backward,
    .adaln_modulate = cpu_adaln_modulate,
    .adaln_modulate_backward = cpu_adaln_modulate_backward,
    .adaln_gate_residual = cpu_adaln_gate_residual,
    .adaln_gate_residual_backward = cpu_adaln_gate_residual_backward,
    .embedding = cpu_embedding,
    .embedding_backward = cpu_embedding_backward,
    .im2col = cpu_im2col,
    .timestep_embedding = cpu_timestep_embedding,
    .unpatchify = cpu_unpatchify,
    .patchify = cpu_patchify,
    .cross_entropy = cpu_cross_entropy,
    .cross_entropy_backward = cpu_cross_entropy_backward,
    .flow_loss = cpu_flow_loss,
    .flow_loss_backward = cpu_flow_loss_backward,
    .adamw = cpu_adamw,
    .sum_squares = cpu_sum_squares,
    .scale = cpu_scale,
    .ema = cpu_ema,
};

tuna_backend tuna_backend_cpu(const tuna_threads *pool) {
    return (tuna_backend){.ops = &cpu_ops, .ctx = (void *)pool};
}

const tuna_threads *tuna_backend_cpu_threads(const tuna_backend *be) {
    return be && be->ops == &cpu_ops ? pool_of(be) : NULL;
}
