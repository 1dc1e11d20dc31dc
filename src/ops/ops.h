/* CPU kernels of the Tuna-2 engine (SPEC sections 1-3).
 *
 * Conventions for every kernel here:
 *  - Activations are f32, contiguous, row-major. "[L, H, D]" means a buffer of
 *    L*H*D floats with D fastest.
 *  - Weights of linear layers are tuna_tensor in PyTorch Linear layout [N, K]
 *    (out_features, in_features), dtype F32, BF16, F16 or a ggml block type
 *    (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K: ops/cpu/quant.h), contiguous. They are
 *    never converted as a whole: 16-bit and quantised weights are read in place.
 *  - Small parameter vectors (norm weights, biases, adaLN vectors) are f32.
 *  - `pool` may be NULL (one thread). Kernels that can reject their input return
 *    tuna_status and take `err` (may be NULL); pure arithmetic on sizes the
 *    caller already owns returns void.
 *  - Every forward has its backward beside it (same file). Backwards
 *    ACCUMULATE into parameter gradients (dW, dbias, dweight: +=) and WRITE
 *    (=) the input gradient unless stated otherwise.
 *  - y may alias x where noted ("in place ok").
 */
#ifndef TUNA_OPS_OPS_H
#define TUNA_OPS_OPS_H

#include <stdint.h>

#include "tuna.h"
#include "core/status.h"
#include "core/threads.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Matmul (linear layer)
 * ====================================================================== */

/* y[M,N] = x[M,K] @ W^T (+ bias[N]), W = weight of shape [N,K].
 *   F32 weight: OpenBLAS cblas_sgemm.
 *   BF16/F16:   own SIMD kernels reading the 16-bit weights in place:
 *               M <= 8:      bandwidth-bound GEMV streaming W once (AVX2 on
 *                            every CPU: it is bound by memory);
 *               8 < M < 64:  tiled GEMM, tiles of W widened to a per-thread
 *                            f32 panel + FMA micro-kernel (an AVX-512F variant
 *                            is chosen at run time by tuna_cpu_detect();
 *                            TUNA_ISA=avx2 forces AVX2);
 *               M >= 64:     blocks of W widened to f32 for OpenBLAS.
 *               Arithmetic is f32 throughout (no AVX-512-BF16 dot products).
 *   Q8_0/Q4_0/Q5_0/Q4_K/Q6_K (K a multiple of the block; matmul_quant.c):
 *               M <= 32:     x quantised to 8 bits per 32, integer dot products
 *                            (AVX2; scalar without it);
 *               M >  32:     blocks of W dequantised to f32 for OpenBLAS.
 * Parallel over N. bias may be NULL. y must not alias x.
 * Fails (TUNA_ERR_INVALID / UNSUPPORTED) on a non-2D weight, K mismatch, or
 * unsupported dtype. */
tuna_status tuna_matmul_forward(float *y, const float *x, const tuna_tensor *weight,
                                const float *bias, int64_t M, int64_t K,
                                const tuna_threads *pool, tuna_error *err);

/* The same on a raw pointer: w is [N,K] of dtype w_dtype (F32, BF16, F16, a block type). */
tuna_status tuna_matmul_forward_raw(float *y, const float *x, const void *w, tuna_dtype w_dtype,
                                    const float *bias, int64_t M, int64_t N, int64_t K,
                                    const tuna_threads *pool, tuna_error *err);

/* Several products of the same input in one parallel region:
 *   targets[i].y[M, N_i] = x[M,K] targets[i].weight^T + targets[i].bias
 * (q/k/v, gate/up). Identical results to one tuna_matmul_forward per target;
 * the output columns of all targets are split over the pool together, so a
 * one-token decode step wakes the threads once instead of once per matrix. */
typedef struct {
    float *y;
    const tuna_tensor *weight;
    const float *bias; /* may be NULL */
} tuna_matmul_target;

#define TUNA_MATMUL_GROUP_MAX 8
tuna_status tuna_matmul_forward_group(const tuna_matmul_target *targets, int count, const float *x, int64_t M,
                                      int64_t K, const tuna_threads *pool, tuna_error *err);

/* Input gradient: dx[M,K] = dy[M,N] @ W[N,K]  (accumulate != 0: dx += ...).
 * W in F32, BF16, F16 or a block type (16-bit W widened, quantised W
 * dequantised, in row blocks: a frozen quantised matrix stays quantised). */
tuna_status tuna_matmul_backward_input(float *dx, const float *dy, const tuna_tensor *weight,
                                       int64_t M, int accumulate,
                                       const tuna_threads *pool, tuna_error *err);

/* Weight gradient (f32): dW[N,K] += dy[M,N]^T @ x[M,K];
 * dbias[N] += sum_m dy[m,:] (dbias may be NULL). */
void tuna_matmul_backward_weight(float *dW, float *dbias, const float *dy, const float *x,
                                 int64_t M, int64_t N, int64_t K, const tuna_threads *pool);

/* Name of the kernel family the matmul dispatcher picks on this CPU:
 * "avx512" (the tiled 16-bit GEMM in AVX-512F) or "avx2-fma" (static string). */
const char *tuna_matmul_isa(void);

/* ======================================================================
 * Normalisation, activations
 * ====================================================================== */

/* RMSNorm over rows of width dim (in place ok):
 *   rstd[r] = 1 / sqrt(mean_i x[r,i]^2 + eps)
 *   y[r,i]  = x[r,i] * rstd[r] * w[i]          (w == NULL: no scale)
 * Used with dim = hidden, and with dim = head_dim on [L*heads, head_dim] for
 * the q/k norms. rstd [rows] may be NULL; the backward needs it. */
void tuna_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w,
                          int64_t rows, int64_t dim, float eps, const tuna_threads *pool);

/* With xhat = x*rstd:  dx = rstd * (g - xhat * mean(g*xhat)),  g = dy*w;
 * dw[i] += sum_r dy[r,i]*xhat[r,i] (dw may be NULL; w NULL means w = 1). */
void tuna_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                           const float *w, const float *rstd, int64_t rows, int64_t dim);

/* Row softmax (in place ok): y[r,i] = exp(x[r,i] - max_r) / sum_j exp(x[r,j] - max_r). */
void tuna_softmax_forward(float *y, const float *x, int64_t rows, int64_t dim);
/* dx = y * (dy - sum_i dy_i*y_i) per row. */
void tuna_softmax_backward(float *dx, const float *dy, const float *y, int64_t rows, int64_t dim);

/* silu(x) = x * sigmoid(x) (in place ok). */
void tuna_silu_forward(float *y, const float *x, int64_t n);
/* dx = dy * s * (1 + x*(1-s)), s = sigmoid(x). */
void tuna_silu_backward(float *dx, const float *dy, const float *x, int64_t n);

/* SwiGLU: out = silu(gate) * up, elementwise over n (out may alias gate or up). */
void tuna_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
/* dgate = dout * up * silu'(gate), dup = dout * silu(gate). */
void tuna_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t n);

/* ======================================================================
 * Rotary position embedding (SPEC section 2)
 * ====================================================================== */

/* Per-token rotation. x is [L, heads, head_dim]; a token's rotation is the
 * same for all its heads. For pair p in [0, head_dim/2) the plan stores
 * (cos th, sin th) with th = angle[t][p], and the token's mode says which two
 * components form pair p:
 *   ROTATE_HALF (Qwen2/llama): (x[p], x[p + D/2])
 *   INTERLEAVED (3D image):    (x[2p], x[2p+1])
 * and the pair is rotated by th:  y_a = a cos th - b sin th,
 *                                 y_b = a sin th + b cos th.
 * The 3D builder stores th = MINUS the reference angle (SPEC section 2: the
 * reference rotates patch pairs as y0 = x0 cos + x1 sin, y1 = -x0 sin + x1 cos),
 * so the apply code has one rotation. NONE leaves the token unchanged. */
typedef enum {
    TUNA_ROPE_NONE = 0,
    TUNA_ROPE_ROTATE_HALF = 1,
    TUNA_ROPE_INTERLEAVED = 2,
} tuna_rope_mode;

typedef struct {
    int64_t len;      /* tokens */
    int head_dim;     /* even */
    uint8_t *mode;    /* [len] tuna_rope_mode */
    float *cos;       /* [len, head_dim/2] */
    float *sin;       /* [len, head_dim/2] */
} tuna_rope_plan;

/* Allocate a plan of len tokens, every token NONE. Freed by tuna_rope_plan_free. */
tuna_status tuna_rope_plan_init(tuna_rope_plan *plan, int64_t len, int head_dim, tuna_error *err);
void tuna_rope_plan_free(tuna_rope_plan *plan);

/* Inverse frequencies for rotate-half RoPE, inv_freq[D/2]:
 * plain: inv_freq[i] = theta^(-2i/D) (Qwen2 LLM: theta 1e6). */
void tuna_rope_inv_freq_default(float *inv_freq, int head_dim, double theta);

/* llama3 rescaling of the plain frequencies, as HF transformers'
 * _compute_llama3_parameters (head text RoPE: theta 5e5, factor 32, low 1,
 * high 4, original_max 8192):
 *   wavelen = 2 pi / f;  low_wl = orig_max/low;  high_wl = orig_max/high
 *   wavelen > low_wl  -> f / factor
 *   wavelen < high_wl -> f
 *   otherwise         -> (1-s) f/factor + s f,  s = (orig_max/wavelen - low)/(high - low) */
void tuna_rope_inv_freq_llama3(float *inv_freq, int head_dim, double theta, double factor,
                               double low_freq_factor, double high_freq_factor,
                               double original_max_position);

/* Token t gets ROTATE_HALF at `position`: th[p] = position * inv_freq[p]
 * (angles computed in double, then cos/sin rounded to f32). */
void tuna_rope_plan_set_rotate_half(tuna_rope_plan *plan, int64_t token, double position,
                                    const float *inv_freq);
/* Tokens [begin, end) get ROTATE_HALF at positions first_position + (t - begin). */
void tuna_rope_plan_fill_rotate_half(tuna_rope_plan *plan, int64_t begin, int64_t end,
                                     double first_position, const float *inv_freq);

/* Token t gets the 3D interleaved rotation at (frame, row, col) with base theta
 * (1e4): head_dim splits into sections of D/4 (frame), 3D/8 (row), 3D/8 (col)
 * dimensions, in that order; inside a section of width s, pair j uses frequency
 * theta^(-2j/s) times that section's coordinate. Stored as minus the angle
 * (see above). Requires head_dim % 16 == 0 (checked by the caller). */
void tuna_rope_plan_set_3d(tuna_rope_plan *plan, int64_t token, double frame, double row,
                           double col, double theta);
void tuna_rope_plan_set_none(tuna_rope_plan *plan, int64_t token);

/* Apply the plan in place to x [L, heads, head_dim] (L == plan->len). */
void tuna_rope_forward(float *x, int64_t L, int heads, const tuna_rope_plan *plan,
                       const tuna_threads *pool);
/* Backward in place on the gradient: rotate by -th (the transpose). */
void tuna_rope_backward(float *dx, int64_t L, int heads, const tuna_rope_plan *plan,
                        const tuna_threads *pool);

/* ======================================================================
 * Attention with the omni mask (SPEC section 3)
 * ====================================================================== */

/* An image segment [offset, offset + length) of sequence positions. Also used
 * as a row range by the adaLN kernels. */
typedef struct {
    int64_t offset;
    int64_t length;
} tuna_segment;

typedef struct {
    int64_t q_len;        /* Lq: queries are sequence positions [q_start, q_start+Lq) */
    int64_t q_start;
    int64_t k_len;        /* Lk: keys/values are positions [0, Lk); Lk >= q_start+Lq not required */
    int n_heads;          /* Hq */
    int n_kv_heads;       /* Hkv, divides Hq: q head h reads kv head h / (Hq/Hkv) */
    int head_dim;         /* D */
    float scale;          /* 0: 1/sqrt(D) */
    const tuna_segment *segments; /* omni mask segments (may be NULL when n == 0) */
    int n_segments;
} tuna_attention_params;

/* out[Lq, Hq, D] = softmax(scale * q k^T + mask) v per head, with
 *   q [Lq, Hq, D], k, v [Lk, Hkv, D],
 *   key j visible to query position i iff j <= i, or i and j lie in the same
 *   segment. A query with no visible key gets zeros.
 * Tiled with an online softmax (no Lq x Lk matrix); parallel over heads and
 * query tiles. lse [Hq, Lq] (may be NULL): log-sum-exp of the scaled masked
 * scores per row, for the backward (-inf for a row with no visible key).
 * Fails on inconsistent params. */
tuna_status tuna_attention_forward(float *out, float *lse, const float *q, const float *k,
                                   const float *v, const tuna_attention_params *params,
                                   const tuna_threads *pool, tuna_error *err);

/* Backward from out, lse of the forward:
 *   P = exp(scale q k^T - lse) (masked), Di = sum_d dout*out,
 *   dS = P * (dout v^T - Di),  dq = scale dS k,  dk += scale dS^T q,  dv += P^T dout.
 * dq is written; dk, dv [Lk, Hkv, D] are ACCUMULATED (zero them first). */
tuna_status tuna_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *lse,
                                    const tuna_attention_params *params,
                                    const tuna_threads *pool, tuna_error *err);

/* ======================================================================
 * Embeddings (SPEC sections 1, 3)
 * ====================================================================== */

/* im2col of one image [C, H, W] with patch p (H, W multiples of p):
 * cols[N, C*p*p], N = (H/p)(W/p), patch k = grid cell (k / (W/p), k % (W/p)),
 * inside a patch (c, ky, kx) order, i.e. the Conv2d weight's flattening. */
void tuna_im2col_patches(float *cols, const float *image, int C, int H, int W, int p);

/* Patch embedding as a GEMM: for each of the n_images images [C,H,W],
 *   y[img*N + k, :] = cols_k @ weight^T + bias,  weight [d, C, p, p] (viewed as
 *   [d, C*p*p], F32/BF16/F16), bias [d] f32 (may be NULL).
 * y is [n_images*N, d]. Fails on shape mismatch or H, W not multiples of p. */
tuna_status tuna_patch_embed_forward(float *y, const float *images, int n_images, int C, int H,
                                     int W, int p, const tuna_tensor *weight, const float *bias,
                                     const tuna_threads *pool, tuna_error *err);

/* Sinusoidal time embedding (SPEC section 1), out [n, dim], dim even:
 *   half = dim/2, freq_j = exp(-ln(max_period) * j / half), a_j = t * freq_j,
 *   out = [cos(a_0..a_{half-1}), sin(a_0..a_{half-1})]   (cos half first).
 * Tuna-2: dim 256, max_period 1e4, t in [0,1] unscaled. */
void tuna_timestep_embedding(float *out, const float *t, int64_t n, int dim, double max_period);

/* out[i, :] = table[ids[i], :] converted to f32; table [V, dim] F32/BF16/F16 or a block type.
 * Fails on an id outside [0, V) (nothing written past the failing row). */
tuna_status tuna_embedding_forward(float *out, const tuna_tensor *table, const int32_t *ids,
                                   int64_t n, tuna_error *err);
/* dtable[ids[i], :] += dout[i, :] (ids assumed valid: the forward checked them). */
void tuna_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t n,
                             int64_t dim);

/* Raster-strip unpatchify (SPEC section 4): the head rows of one image
 * segment (the N patch rows after its t slot) [N, p*p*C] -> image [C, H, W].
 * Slot k holds raster-order pixels [p*p*k, p*p*(k+1)) with channels
 * interleaved, i.e. the slots viewed flat are the image in (H*W, C) order. */
void tuna_unpatchify(float *image, const float *slots, int channels, int height, int width);
/* The inverse (training labels, and the gradient of the unpatchify). */
void tuna_patchify_labels(float *slots, const float *image, int channels, int height, int width);

/* ======================================================================
 * adaLN modulation on image segments (SPEC section 2)
 * ====================================================================== */

/* Modulation vectors differ per image segment (each image has its own t), so
 * segment s reads shift + s*mod_stride and scale + s*mod_stride ([dim] each;
 * mod_stride 0 = one vector for all). Rows are the rows of x [rows, dim].
 *
 * Modulate (in place ok):
 *   y[r] = x[r] * (1 + scale_s) + shift_s   for r in segment s
 *   y[r] = x[r]                             for r in no segment */
void tuna_adaln_modulate_forward(float *y, const float *x, const float *shift,
                                 const float *scale, int64_t mod_stride, int64_t rows,
                                 int64_t dim, const tuna_segment *segments, int n_segments);
/* dx = dy*(1+scale_s) inside (dy outside); dshift_s += sum_r dy[r];
 * dscale_s += sum_r dy[r]*x[r] over rows of segment s (dshift/dscale use the same
 * mod_stride layout; may be NULL). dx may alias dy. */
void tuna_adaln_modulate_backward(float *dx, float *dshift, float *dscale, const float *dy,
                                  const float *x, const float *scale, int64_t mod_stride,
                                  int64_t rows, int64_t dim, const tuna_segment *segments,
                                  int n_segments);

/* Gated residual: h[r] += gate_s * y[r] inside segment s, h[r] += y[r] outside. */
void tuna_adaln_gate_residual_forward(float *h, const float *y, const float *gate,
                                      int64_t gate_stride, int64_t rows, int64_t dim,
                                      const tuna_segment *segments, int n_segments);
/* Given dh: dy = dh*gate_s inside (dh outside), dgate_s += sum_r dh[r]*y[r]
 * (dgate may be NULL). The residual's dh passes through unchanged. */
void tuna_adaln_gate_residual_backward(float *dy, float *dgate, const float *dh,
                                       const float *y, const float *gate, int64_t gate_stride,
                                       int64_t rows, int64_t dim,
                                       const tuna_segment *segments, int n_segments);

/* ======================================================================
 * Losses (SPEC sections 5 and 9), forward and backward side by side
 * ====================================================================== */

/* Shifted cross-entropy, as Hugging Face computes it:
 *   loss = mean over i with labels[i+1] != -100 of
 *          logsumexp(logits[i]) - logits[i][labels[i+1]]
 * over positions i = 0..L-2; 0 when no label counts. *count receives how many
 * positions count (may be NULL). Labels outside [0, vocab) are skipped and
 * counted in *invalid (may be NULL). Accumulates in double. */
float tuna_cross_entropy_shifted_forward(const float *logits, const int32_t *labels, int length, int vocab,
                                         int *count, int *invalid);
/* d loss / d logits (written into dlogits [L, vocab]; rows that do not count are zero). */
void tuna_cross_entropy_shifted_backward(const float *logits, const int32_t *labels, int length, int vocab,
                                         float dloss, float *dlogits);

/* The JiT flow loss (SPEC section 9): one pooled mean over every element of
 * the flow images of (x_pred - target)^2 / max(1 - t_k, t_eps)^2. count[k] is
 * image k's element count. 0 when no image is in the loss (the empty-mask
 * guard of SPEC section 5). */
float tuna_flow_loss_forward(const float *const *x_pred, const float *const *targets, const float *t,
                             const uint8_t *flow_images, const long *count, int images, float t_eps);
/* d loss / d x_pred for each image (dx_pred[k] zero-filled for images out of the loss). */
void tuna_flow_loss_backward(const float *const *x_pred, const float *const *targets, const float *t,
                             const uint8_t *flow_images, const long *count, int images, float t_eps, float dloss,
                             float *const *dx_pred);

/* ======================================================================
 * Optimizer element kernels (SPEC section 5), on n contiguous elements
 * ====================================================================== */

/* AdamW scalars of one update (torch.optim.AdamW, single-tensor path, f32):
 *   m = m + one_minus_b1 (g - m)           (torch.lerp)
 *   v = b2 v + one_minus_b2 g^2
 *   w = w*decay - step_size * m / (sqrt(v)/bias2_sqrt + eps)
 * with decay = 1 - lr wd, step_size = lr/(1 - b1^k), bias2_sqrt = sqrt(1 - b2^k). */
typedef struct {
    float decay, one_minus_b1, b2, one_minus_b2, step_size, bias2_sqrt, eps;
} tuna_adamw_scalars;

void tuna_adamw_update(float *w, float *m, float *v, const float *g, int64_t n, const tuna_adamw_scalars *a);
/* sum_i x_i^2 in double, in a fixed order (8 lanes into two 4-double accumulators). */
double tuna_sum_squares(const float *x, int64_t n);
/* ema += weight (w - ema)   (torch.lerp, AveragedModel). */
void tuna_ema_lerp(float *ema, const float *w, float weight, int64_t n);

/* ======================================================================
 * Small vector helpers
 * ====================================================================== */

void tuna_vec_add(float *y, const float *a, const float *b, int64_t n); /* y = a + b */
void tuna_vec_acc(float *y, const float *x, int64_t n);                 /* y += x */
void tuna_vec_axpy(float *y, float alpha, const float *x, int64_t n);   /* y += alpha x */
void tuna_vec_scale(float *y, float s, int64_t n);                      /* y *= s */
void tuna_vec_mul(float *y, const float *a, const float *b, int64_t n); /* y = a * b */
void tuna_vec_copy(float *y, const float *x, int64_t n);
void tuna_vec_zero(float *y, int64_t n);
/* Add bias[dim] to every row of y[rows, dim]. */
void tuna_add_bias_rows(float *y, const float *bias, int64_t rows, int64_t dim);

#ifdef __cplusplus
}
#endif
#endif
