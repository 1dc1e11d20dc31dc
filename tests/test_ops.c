/* CPU kernels other than matmul, each against a naive loop written here:
 * rmsnorm, softmax, silu/swiglu, RoPE (three forms, incl. a hand-computed 3D
 * case that pins the minus sign), omni-mask attention (segments, GQA, q_start
 * offset), patch embedding, time embedding, embeddings, adaLN; backwards by
 * finite differences. */
#include "test.h"

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/ops.h"

#include <stdint.h>

static uint64_t seed_state = 987654321;
static float frand(void) {
    seed_state = seed_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((seed_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}
static void fill(float *a, long n) { for (long i = 0; i < n; i++) a[i] = frand(); }
static double dot_d(const float *a, const float *b, long n) {
    double s = 0; for (long i = 0; i < n; i++) s += (double)a[i] * b[i]; return s;
}

/* ---- rmsnorm / softmax / activations ------------------------------------- */

TEST(rmsnorm_matches_naive) {
    const int dims[] = {16, 64, 130, 3584};
    tuna_threads pool; tuna_threads_init(&pool, 2);
    for (int t = 0; t < 4; t++) {
        int rows = 7, dim = dims[t];
        float *x = malloc(sizeof(float) * rows * dim), *y = malloc(sizeof(float) * rows * dim);
        float *ref = malloc(sizeof(float) * rows * dim), *w = malloc(sizeof(float) * dim), rstd[7];
        fill(x, rows * dim); fill(w, dim);
        for (int withw = 0; withw < 2; withw++) {
            for (int r = 0; r < rows; r++) {
                double ss = dot_d(x + r * dim, x + r * dim, dim) / dim;
                double s = 1.0 / sqrt(ss + 1e-6);
                for (int i = 0; i < dim; i++) ref[r * dim + i] = (float)(x[r * dim + i] * s * (withw ? w[i] : 1.0));
            }
            tuna_rmsnorm_forward(y, rstd, x, withw ? w : NULL, rows, dim, 1e-6f, &pool);
            double e = test_max_relative_error(y, ref, (long)rows * dim);
            CHECK(e < 1e-6, "dim %d w=%d rel err %.3g", dim, withw, e);
        }
        /* in place */
        tuna_rmsnorm_forward(x, NULL, x, w, rows, dim, 1e-6f, NULL);
        CHECK(test_max_relative_error(x, ref, (long)rows * dim) < 1e-6, "in place dim %d", dim);
        free(x); free(y); free(ref); free(w);
    }
}

/* loss = sum(dy * f(x)); compare analytic dx with central differences. */
#define FD_CHECK(n, xarr, LOSS_EXPR, analytic, tol, what) do { \
        double worst_ = 0; \
        for (int i_ = 0; i_ < (n); i_++) { \
            float s_ = xarr[i_]; double lp_, lm_; \
            xarr[i_] = s_ + 1e-2f; lp_ = (LOSS_EXPR); xarr[i_] = s_ - 1e-2f; lm_ = (LOSS_EXPR); xarr[i_] = s_; \
            double g_ = (lp_ - lm_) / 2e-2; double d_ = fabs(g_ - (analytic)[i_]); \
            if (d_ > worst_) worst_ = d_; } \
        CHECK(worst_ < (tol), "%s: max |fd - analytic| %.3g", what, worst_); } while (0)

static float g_buf[4096];
static double rms_loss(const float *x, const float *w, const float *dy, int rows, int dim) {
    tuna_rmsnorm_forward(g_buf, NULL, x, w, rows, dim, 1e-5f, NULL);
    return dot_d(g_buf, dy, rows * dim);
}

TEST(rmsnorm_backward_finite_differences) {
    enum { R = 3, D = 9 };
    float x[R * D], w[D], dy[R * D], dx[R * D], dw[D] = {0}, rstd[R], y[R * D];
    fill(x, R * D); fill(w, D); fill(dy, R * D);
    tuna_rmsnorm_forward(y, rstd, x, w, R, D, 1e-5f, NULL);
    tuna_rmsnorm_backward(dx, dw, dy, x, w, rstd, R, D);
    FD_CHECK(R * D, x, rms_loss(x, w, dy, R, D), dx, 2e-3, "rmsnorm dx");
    FD_CHECK(D, w, rms_loss(x, w, dy, R, D), dw, 2e-3, "rmsnorm dw");
}

static double softmax_loss(const float *x, const float *dy, int rows, int dim) {
    tuna_softmax_forward(g_buf, x, rows, dim);
    return dot_d(g_buf, dy, rows * dim);
}

TEST(softmax_and_activations) {
    enum { R = 3, D = 11 };
    float x[R * D], y[R * D], ref[R * D], dy[R * D], dx[R * D];
    fill(x, R * D); fill(dy, R * D);
    for (int i = 0; i < R * D; i++) x[i] *= 5;
    for (int r = 0; r < R; r++) {
        double s = 0;
        for (int i = 0; i < D; i++) s += exp(x[r * D + i]);
        for (int i = 0; i < D; i++) ref[r * D + i] = (float)(exp(x[r * D + i]) / s);
    }
    tuna_softmax_forward(y, x, R, D);
    CHECK(test_max_relative_error(y, ref, R * D) < 1e-6, "softmax");
    tuna_softmax_backward(dx, dy, y, R, D);
    FD_CHECK(R * D, x, softmax_loss(x, dy, R, D), dx, 2e-3, "softmax dx");

    float g[R * D], u[R * D], o[R * D], dg[R * D], du[R * D], sref[R * D];
    fill(g, R * D); fill(u, R * D);
    for (int i = 0; i < R * D; i++) { g[i] *= 4; sref[i] = (float)(g[i] / (1 + exp(-(double)g[i]))); ref[i] = sref[i] * u[i]; }
    tuna_swiglu_forward(o, g, u, R * D);
    CHECK(test_max_relative_error(o, ref, R * D) < 1e-6, "swiglu");
    tuna_silu_forward(o, g, R * D);
    CHECK(test_max_relative_error(o, sref, R * D) < 1e-6, "silu");
    tuna_swiglu_backward(dg, du, dy, g, u, R * D);
    for (int i = 0; i < R * D; i++) {
        double h = 1e-3, gp = g[i] + h, gm = g[i] - h;
        double fp = gp / (1 + exp(-gp)) * u[i], fm = gm / (1 + exp(-gm)) * u[i];
        double num = dy[i] * (fp - fm) / (2 * h);
        CHECK(fabs(num - dg[i]) < 1e-3, "swiglu dgate %d: %g vs %g", i, num, dg[i]);
        CHECK(fabs(dy[i] * sref[i] - du[i]) < 1e-6, "swiglu dup %d", i);
    }
    tuna_silu_backward(dx, dy, g, R * D);
    for (int i = 0; i < R * D; i++) CHECK(fabs(dx[i] - dg[i] / u[i]) < 1e-3 * (1 + fabs(dx[i])), "silu grad %d", i);
}

/* ---- RoPE -------------------------------------------------------------------- */

TEST(rope_rotate_half_plain_and_llama3) {
    enum { L = 5, H = 3, D = 128 };
    static float x[L * H * D], ref[L * H * D];
    fill(x, L * H * D);
    float inv[D / 2], inv3[D / 2];
    tuna_rope_inv_freq_default(inv, D, 1e6);
    tuna_rope_inv_freq_llama3(inv3, D, 5e5, 32, 1, 4, 8192);
    /* llama3 rescaling, written independently in double */
    for (int i = 0; i < D / 2; i++) {
        double f = pow(5e5, -(2.0 * i) / D), wl = 2 * M_PI / f, g;
        if (wl < 8192 / 4.0) g = f;
        else if (wl > 8192 / 1.0) g = f / 32;
        else { double s = (8192 / wl - 1) / (4 - 1); g = (1 - s) * f / 32 + s * f; }
        CHECK(fabs(inv3[i] - g) <= 1e-6 * g, "llama3 inv_freq %d: %g vs %g", i, inv3[i], g);
        CHECK(fabs(inv[i] - pow(1e6, -(2.0 * i) / D)) <= 1e-6 * inv[i], "inv_freq %d", i);
    }
    CHECK(fabsf(inv3[D / 2 - 1] - (float)(pow(5e5, -(D - 2.0) / D) / 32)) < 1e-12f,
          "lowest frequency divided by factor");
    tuna_rope_plan plan;
    REQUIRE(tuna_rope_plan_init(&plan, L, D, NULL) == TUNA_OK, "plan");
    /* tokens 0..1 plain at positions 7, 8; token 2 none; 3..4 llama3 at 1000, 4000 */
    tuna_rope_plan_fill_rotate_half(&plan, 0, 2, 7, inv);
    tuna_rope_plan_set_rotate_half(&plan, 3, 1000, inv3);
    tuna_rope_plan_set_rotate_half(&plan, 4, 4000, inv3);
    const double pos[L] = {7, 8, 0, 1000, 4000};
    for (int t = 0; t < L; t++)
        for (int h = 0; h < H; h++) {
            const float *xi = x + (t * H + h) * D;
            float *ri = ref + (t * H + h) * D;
            for (int p = 0; p < D / 2; p++) {
                const float *f = t < 3 ? inv : inv3;
                double a = (double)(float)((float)pos[t] * f[p]);
                double c = t == 2 ? 1 : cos(a), s = t == 2 ? 0 : sin(a);
                ri[p] = (float)(xi[p] * c - xi[p + D / 2] * s);
                ri[p + D / 2] = (float)(xi[p + D / 2] * c + xi[p] * s);
            }
        }
    static float y[L * H * D];
    memcpy(y, x, sizeof y);
    tuna_rope_forward(y, L, H, &plan, NULL);
    CHECK(test_max_relative_error(y, ref, L * H * D) < 1e-6, "rotate-half forward");
    tuna_rope_backward(y, L, H, &plan, NULL); /* the inverse rotation */
    CHECK(test_max_relative_error(y, x, L * H * D) < 1e-6, "backward inverts forward");
    tuna_rope_plan_free(&plan);
}

TEST(rope_3d_hand_computed_minus_sign) {
    /* head_dim 16: sections 4 (frame) / 6 (row) / 6 (col) dims = 2/3/3 pairs.
     * Token at (0, row 1, col 2): pair 2 is the first row pair, frequency 1,
     * angle 1: (x0, x1) = (1, 0) -> (cos 1, -sin 1). Pair 5 is the first col
     * pair, angle 2: (0, 1) -> (sin 2, cos 2). Frame pairs are identity. */
    enum { D = 16 };
    float x[D] = {0};
    x[0] = 0.5f; x[1] = 0.25f;          /* frame pair 0: unchanged (frame 0) */
    x[4] = 1.0f; x[5] = 0.0f;           /* pair 2 */
    x[10] = 0.0f; x[11] = 1.0f;         /* pair 5 */
    x[6] = 1.0f;                        /* pair 3: second row pair, freq 10000^(-2/6) */
    tuna_rope_plan plan;
    REQUIRE(tuna_rope_plan_init(&plan, 1, D, NULL) == TUNA_OK, "plan");
    tuna_rope_plan_set_3d(&plan, 0, 0, 1, 2, 1e4);
    tuna_rope_forward(x, 1, 1, &plan, NULL);
    CHECK(x[0] == 0.5f && x[1] == 0.25f, "frame pair rotated: %g %g", x[0], x[1]);
    CHECK(fabs(x[4] - cos(1.0)) < 1e-6 && fabs(x[5] + sin(1.0)) < 1e-6, "row pair: %g %g", x[4], x[5]);
    CHECK(fabs(x[10] - sin(2.0)) < 1e-6 && fabs(x[11] - cos(2.0)) < 1e-6, "col pair: %g %g", x[10], x[11]);
    double a3 = pow(1e4, -2.0 / 6);
    CHECK(fabs(x[6] - cos(a3)) < 1e-6 && fabs(x[7] + sin(a3)) < 1e-6, "row pair 2: %g %g", x[6], x[7]);
    tuna_rope_plan_free(&plan);
}

TEST(rope_3d_matches_reference_formula_head64) {
    /* Against build_rope's definition written out: pairs [0,8) frame, [8,20) row,
     * [20,32) col; omega_j = 1e4^(-2j/s); y = [x0 x1] @ [[c,-s],[s,c]]. */
    enum { H = 2, D = 64 };
    float x[H * D], y[H * D], ref[H * D];
    fill(x, H * D);
    memcpy(y, x, sizeof y);
    tuna_rope_plan plan;
    REQUIRE(tuna_rope_plan_init(&plan, 1, D, NULL) == TUNA_OK, "plan");
    tuna_rope_plan_set_3d(&plan, 0, 0, 5, 11, 1e4);
    tuna_rope_forward(y, 1, H, &plan, NULL);
    for (int h = 0; h < H; h++)
        for (int p = 0; p < D / 2; p++) {
            int s, j; double pos;
            if (p < 8) { s = 16; j = p; pos = 0; } else if (p < 20) { s = 24; j = p - 8; pos = 5; } else { s = 24; j = p - 20; pos = 11; }
            double a = pos * pow(1e4, -2.0 * j / s), c = cos(a), sn = sin(a);
            double x0 = x[h * D + 2 * p], x1 = x[h * D + 2 * p + 1];
            ref[h * D + 2 * p] = (float)(x0 * c + x1 * sn);
            ref[h * D + 2 * p + 1] = (float)(-x0 * sn + x1 * c);
        }
    CHECK(test_max_relative_error(y, ref, H * D) < 2e-6, "3d rope err %.3g", test_max_relative_error(y, ref, H * D));
    tuna_rope_plan_free(&plan);
}

/* ---- attention --------------------------------------------------------------- */

static void naive_attention(float *out, float *lse, const float *q, const float *k, const float *v,
                            const tuna_attention_params *p) {
    int D = p->head_dim, G = p->n_heads / p->n_kv_heads;
    double *s = malloc(sizeof(double) * (p->k_len + 1));
    for (int64_t i = 0; i < p->q_len; i++)
        for (int h = 0; h < p->n_heads; h++) {
            int64_t pi = p->q_start + i;
            double mx = -INFINITY;
            for (int64_t j = 0; j < p->k_len; j++) {
                int vis = j <= pi;
                for (int g = 0; g < p->n_segments; g++) {
                    int64_t a = p->segments[g].offset, b = a + p->segments[g].length;
                    if (pi >= a && pi < b && j >= a && j < b) vis = 1;
                }
                if (!vis) { s[j] = -INFINITY; continue; }
                s[j] = dot_d(q + (i * p->n_heads + h) * D, k + (j * p->n_kv_heads + h / G) * D, D) / sqrt(D);
                if (s[j] > mx) mx = s[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < p->k_len; j++) sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
            for (int d = 0; d < D; d++) {
                double o = 0;
                for (int64_t j = 0; j < p->k_len; j++)
                    if (s[j] != -INFINITY) o += exp(s[j] - mx) / sum * v[(j * p->n_kv_heads + h / G) * D + d];
                out[(i * p->n_heads + h) * D + d] = (float)o;
            }
            lse[h * p->q_len + i] = (float)(mx + log(sum));
        }
    free(s);
}

static double attention_case(int Lq, int q_start, int Lk, int Hq, int Hkv, int D,
                             const tuna_segment *segs, int nseg, int threads, double *lse_err) {
    tuna_attention_params p = {.q_len = Lq, .q_start = q_start, .k_len = Lk, .n_heads = Hq,
                               .n_kv_heads = Hkv, .head_dim = D, .segments = segs, .n_segments = nseg};
    long nq = (long)Lq * Hq * D, nk = (long)Lk * Hkv * D;
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk);
    float *o = malloc(sizeof(float) * nq), *ref = malloc(sizeof(float) * nq);
    float *lse = malloc(sizeof(float) * Hq * Lq), *lref = malloc(sizeof(float) * Hq * Lq);
    fill(q, nq); fill(k, nk); fill(v, nk);
    for (long i = 0; i < nq; i++) q[i] *= 3; /* sharper softmax */
    tuna_threads pool; tuna_threads_init(&pool, threads);
    tuna_status st = tuna_attention_forward(o, lse, q, k, v, &p, &pool, NULL);
    naive_attention(ref, lref, q, k, v, &p);
    double e = st == TUNA_OK ? test_max_relative_error(o, ref, nq) : INFINITY;
    double le = 0;
    for (long i = 0; i < (long)Hq * Lq; i++) if (fabs(lse[i] - lref[i]) > le) le = fabs(lse[i] - lref[i]);
    *lse_err = le;
    free(q); free(k); free(v); free(o); free(ref); free(lse); free(lref);
    return e;
}

TEST(attention_omni_mask_gqa_offsets) {
    tuna_segment segs[3] = {{3, 20}, {40, 70}, {150, 5}};
    struct { int Lq, q0, Lk, Hq, Hkv, D, nseg; } cases[] = {
        {37, 0, 37, 4, 2, 16, 1},     /* one segment, causal elsewhere */
        {120, 0, 120, 6, 2, 64, 2},   /* segment crossing query and key tiles */
        {33, 30, 63, 4, 1, 128, 2},   /* q_start offset, as with a KV cache */
        {1, 77, 78, 2, 2, 64, 2},     /* one decode query */
        {160, 0, 160, 3, 3, 24, 3},   /* D not a multiple of 64 */
        {20, 45, 65, 2, 1, 20, 2},    /* queries inside a segment that extends past them */
        {5, 0, 5, 2, 1, 7, 0},        /* odd D, plain causal */
        {70, 25, 95, 6, 2, 32, 2},    /* several query tiles after a cached prefix */
        {64, 0, 0, 2, 1, 8, 0},       /* no keys at all: zeros, lse -inf */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        double le;
        double e = attention_case(cases[c].Lq, cases[c].q0, cases[c].Lk, cases[c].Hq, cases[c].Hkv,
                                  cases[c].D, segs, cases[c].nseg, 1 + (int)(c & 1), &le);
        CHECK(e < 1e-5, "case %zu: rel err %.3g", c, e);
        CHECK(le < 1e-5, "case %zu: lse err %.3g", c, le);
    }
}

static float *g_q, *g_k, *g_v, *g_dout, *g_out;
static tuna_attention_params g_p;
static double attn_loss(void) {
    tuna_attention_forward(g_out, NULL, g_q, g_k, g_v, &g_p, NULL, NULL);
    return dot_d(g_out, g_dout, g_p.q_len * g_p.n_heads * g_p.head_dim);
}

TEST(attention_backward_finite_differences) {
    enum { Lq = 6, Lk = 9, Hq = 4, Hkv = 2, D = 8 };
    static tuna_segment segs[1] = {{4, 4}};
    g_p = (tuna_attention_params){.q_len = Lq, .q_start = 3, .k_len = Lk, .n_heads = Hq, .n_kv_heads = Hkv,
                                  .head_dim = D, .segments = segs, .n_segments = 1};
    static float q[Lq * Hq * D], k[Lk * Hkv * D], v[Lk * Hkv * D], dout[Lq * Hq * D], out[Lq * Hq * D], lse[Hq * Lq];
    static float dq[Lq * Hq * D], dk[Lk * Hkv * D], dv[Lk * Hkv * D];
    fill(q, Lq * Hq * D); fill(k, Lk * Hkv * D); fill(v, Lk * Hkv * D); fill(dout, Lq * Hq * D);
    g_q = q; g_k = k; g_v = v; g_dout = dout; g_out = out;
    REQUIRE(tuna_attention_forward(out, lse, q, k, v, &g_p, NULL, NULL) == TUNA_OK, "forward");
    tuna_threads pool; tuna_threads_init(&pool, 2);
    REQUIRE(tuna_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, &g_p, &pool, NULL) == TUNA_OK, "backward");
    FD_CHECK(Lq * Hq * D, q, attn_loss(), dq, 2e-3, "attention dq");
    FD_CHECK(Lk * Hkv * D, k, attn_loss(), dk, 2e-3, "attention dk");
    FD_CHECK(Lk * Hkv * D, v, attn_loss(), dv, 2e-3, "attention dv");
}

/* Backward against the attention derivatives written out in double, on a
 * sequence longer than one backward row block (64), with GQA (3 q heads per
 * kv head), a head size that is not a multiple of 8, q_start and a segment. */
static void naive_attention_backward(double *dq, double *dk, double *dv, const float *dout, const float *q,
                                     const float *k, const float *v, const tuna_attention_params *p) {
    int D = p->head_dim, G = p->n_heads / p->n_kv_heads;
    double *pr = malloc(sizeof(double) * p->k_len), *dp = malloc(sizeof(double) * p->k_len);
    for (int64_t i = 0; i < p->q_len; i++)
        for (int h = 0; h < p->n_heads; h++) {
            int64_t pi = p->q_start + i;
            const float *qi = q + (i * p->n_heads + h) * D, *doi = dout + (i * p->n_heads + h) * D;
            double mx = -INFINITY, sum = 0, Di = 0;
            for (int64_t j = 0; j < p->k_len; j++) {
                int vis = j <= pi;
                for (int g = 0; g < p->n_segments; g++) {
                    int64_t a = p->segments[g].offset, b = a + p->segments[g].length;
                    if (pi >= a && pi < b && j >= a && j < b) vis = 1;
                }
                pr[j] = vis ? dot_d(qi, k + (j * p->n_kv_heads + h / G) * D, D) / sqrt(D) : -INFINITY;
                if (pr[j] > mx) mx = pr[j];
            }
            for (int64_t j = 0; j < p->k_len; j++) sum += pr[j] == -INFINITY ? 0 : exp(pr[j] - mx);
            for (int64_t j = 0; j < p->k_len; j++) {
                pr[j] = pr[j] == -INFINITY ? 0 : exp(pr[j] - mx) / sum;
                dp[j] = dot_d(doi, v + (j * p->n_kv_heads + h / G) * D, D);
                Di += pr[j] * dp[j];
            }
            for (int64_t j = 0; j < p->k_len; j++) {
                double ds = pr[j] * (dp[j] - Di) / sqrt(D);
                for (int d = 0; d < D; d++) {
                    dq[(i * p->n_heads + h) * D + d] += ds * k[(j * p->n_kv_heads + h / G) * D + d];
                    dk[(j * p->n_kv_heads + h / G) * D + d] += ds * qi[d];
                    dv[(j * p->n_kv_heads + h / G) * D + d] += pr[j] * doi[d];
                }
            }
        }
    free(pr);
    free(dp);
}

static double max_rel_err_d(const float *x, const double *ref, long n) {
    double worst = 0, scale = 0;
    for (long i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (long i = 0; i < n; i++) worst = fmax(worst, fabs(x[i] - ref[i]) / (scale + 1e-30));
    return worst;
}

TEST(attention_backward_matches_naive_over_row_blocks) {
    enum { Lq = 150, q0 = 10, Lk = 160, Hq = 6, Hkv = 2, D = 12 };
    static tuna_segment segs[2] = {{20, 50}, {100, 45}};
    tuna_attention_params p = {.q_len = Lq, .q_start = q0, .k_len = Lk, .n_heads = Hq, .n_kv_heads = Hkv,
                               .head_dim = D, .segments = segs, .n_segments = 2};
    static float q[Lq * Hq * D], k[Lk * Hkv * D], v[Lk * Hkv * D], dout[Lq * Hq * D], out[Lq * Hq * D], lse[Hq * Lq];
    static float dq[Lq * Hq * D], dk[Lk * Hkv * D], dv[Lk * Hkv * D];
    static double rq[Lq * Hq * D], rk[Lk * Hkv * D], rv[Lk * Hkv * D];
    fill(q, Lq * Hq * D); fill(k, Lk * Hkv * D); fill(v, Lk * Hkv * D); fill(dout, Lq * Hq * D);
    memset(dk, 0, sizeof dk); memset(dv, 0, sizeof dv);
    tuna_threads pool; tuna_threads_init(&pool, 2);
    REQUIRE(tuna_attention_forward(out, lse, q, k, v, &p, &pool, NULL) == TUNA_OK, "forward");
    REQUIRE(tuna_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, &p, &pool, NULL) == TUNA_OK, "backward");
    naive_attention_backward(rq, rk, rv, dout, q, k, v, &p);
    CHECK(max_rel_err_d(dq, rq, Lq * Hq * D) < 1e-5, "dq err %.3g", max_rel_err_d(dq, rq, Lq * Hq * D));
    CHECK(max_rel_err_d(dk, rk, Lk * Hkv * D) < 1e-5, "dk err %.3g", max_rel_err_d(dk, rk, Lk * Hkv * D));
    CHECK(max_rel_err_d(dv, rv, Lk * Hkv * D) < 1e-5, "dv err %.3g", max_rel_err_d(dv, rv, Lk * Hkv * D));
}

TEST(attention_rejects_bad_params) {
    tuna_attention_params p = {.q_len = 1, .k_len = 1, .n_heads = 3, .n_kv_heads = 2, .head_dim = 4};
    float buf[16] = {0};
    tuna_error err;
    CHECK(tuna_attention_forward(buf, NULL, buf, buf, buf, &p, NULL, &err) == TUNA_ERR_INVALID, "3 heads / 2 kv");
}

/* ---- embeddings -------------------------------------------------------------- */

TEST(patch_embed_matches_conv) {
    enum { K = 2, C = 3, H = 8, W = 12, P = 4, Dm = 10, N = (H / P) * (W / P) };
    static float img[K * C * H * W], wf[Dm * C * P * P], b[Dm], y[K * N * Dm], ref[K * N * Dm];
    static uint16_t w16[Dm * C * P * P];
    fill(img, K * C * H * W); fill(b, Dm);
    for (int i = 0; i < Dm * C * P * P; i++) { w16[i] = tuna_f32_to_bf16(frand()); wf[i] = tuna_bf16_to_f32(w16[i]); }
    /* direct convolution, stride = kernel = P */
    for (int im = 0; im < K; im++)
        for (int gy = 0; gy < H / P; gy++)
            for (int gx = 0; gx < W / P; gx++)
                for (int o = 0; o < Dm; o++) {
                    double s = b[o];
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < P; ky++)
                            for (int kx = 0; kx < P; kx++)
                                s += (double)wf[((o * C + c) * P + ky) * P + kx] *
                                     img[((im * C + c) * H + gy * P + ky) * W + gx * P + kx];
                    ref[(im * N + gy * (W / P) + gx) * Dm + o] = (float)s;
                }
    int64_t shape[4] = {Dm, C, P, P};
    tuna_tensor wt;
    for (int pass = 0; pass < 2; pass++) {
        tuna_tensor_init_view(&wt, pass ? TUNA_F32 : TUNA_BF16, 4, shape, pass ? (void *)wf : (void *)w16);
        REQUIRE(tuna_patch_embed_forward(y, img, K, C, H, W, P, &wt, b, NULL, NULL) == TUNA_OK, "patch embed");
        CHECK(test_max_relative_error(y, ref, K * N * Dm) < 2e-6, "pass %d", pass);
    }
    CHECK(tuna_patch_embed_forward(y, img, K, C, 9, W, P, &wt, b, NULL, NULL) == TUNA_ERR_INVALID, "H not multiple");
}

TEST(timestep_embedding_formula) {
    float t[3] = {0.0f, 0.37f, 1.0f}, out[3 * 256];
    tuna_timestep_embedding(out, t, 3, 256, 1e4);
    double worst = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 128; j++) {
            double f = exp(-log(1e4) * j / 128.0), a = t[i] * f;
            worst = fmax(worst, fabs(out[i * 256 + j] - cos(a)));
            worst = fmax(worst, fabs(out[i * 256 + 128 + j] - sin(a)));
        }
    CHECK(worst < 1e-6, "max err %.3g", worst);
    CHECK(out[0] == 1.0f && out[128] == 0.0f, "t=0 gives cos 1, sin 0");
}

TEST(embedding_gather_and_scatter) {
    enum { V = 5, Dm = 7 };
    float tf[V * Dm], out[3 * Dm], d[V * Dm] = {0};
    uint16_t tb[V * Dm], th[V * Dm];
    for (int i = 0; i < V * Dm; i++) {
        tb[i] = tuna_f32_to_bf16(frand()); tf[i] = tuna_bf16_to_f32(tb[i]); th[i] = tuna_f32_to_f16(tf[i]);
    }
    int32_t ids[3] = {4, 0, 4};
    int64_t shape[2] = {V, Dm};
    tuna_tensor t;
    const tuna_dtype dts[3] = {TUNA_F32, TUNA_BF16, TUNA_F16};
    void *data[3] = {tf, tb, th};
    for (int k = 0; k < 3; k++) {
        tuna_tensor_init_view(&t, dts[k], 2, shape, data[k]);
        REQUIRE(tuna_embedding_forward(out, &t, ids, 3, NULL) == TUNA_OK, "gather");
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < Dm; j++)
                CHECK(fabsf(out[i * Dm + j] - tf[ids[i] * Dm + j]) <= (k == 2 ? 1e-3f : 0.0f), "dtype %d row %d", k, i);
    }
    int32_t bad[1] = {5};
    tuna_error err;
    CHECK(tuna_embedding_forward(out, &t, bad, 1, &err) == TUNA_ERR_INVALID, "id out of range");
    float dout[3 * Dm];
    for (int i = 0; i < 3 * Dm; i++) dout[i] = 1.0f;
    tuna_embedding_backward(d, dout, ids, 3, Dm);
    CHECK(d[4 * Dm] == 2.0f && d[0] == 1.0f && d[Dm] == 0.0f, "scatter-add");
}

/* ---- adaLN ------------------------------------------------------------------- */

TEST(adaln_modulate_and_gate_on_segments) {
    enum { R = 9, Dm = 5 };
    tuna_segment segs[2] = {{1, 3}, {6, 2}};
    float x[R * Dm], mod[2 * 3 * Dm], y[R * Dm], h[R * Dm], h0[R * Dm];
    fill(x, R * Dm); fill(mod, 2 * 3 * Dm); fill(h, R * Dm);
    memcpy(h0, h, sizeof h);
    /* per-segment [shift | scale | gate], stride 3*Dm */
    tuna_adaln_modulate_forward(y, x, mod, mod + Dm, 3 * Dm, R, Dm, segs, 2);
    tuna_adaln_gate_residual_forward(h, y, mod + 2 * Dm, 3 * Dm, R, Dm, segs, 2);
    for (int r = 0; r < R; r++) {
        int s = r >= 1 && r < 4 ? 0 : r >= 6 && r < 8 ? 1 : -1;
        for (int i = 0; i < Dm; i++) {
            float e = s < 0 ? x[r * Dm + i] : x[r * Dm + i] * (1 + mod[s * 15 + Dm + i]) + mod[s * 15 + i];
            CHECK(fabsf(y[r * Dm + i] - e) < 1e-6f, "modulate r=%d", r);
            float g = s < 0 ? 1.0f : mod[s * 15 + 2 * Dm + i];
            CHECK(fabsf(h[r * Dm + i] - (h0[r * Dm + i] + g * e)) < 1e-6f, "gate r=%d", r);
        }
    }
    /* backward vs finite differences on loss = sum(dh * h_out) */
    float dy[R * Dm], dx[R * Dm], dmod[2 * 3 * Dm] = {0}, dyy[R * Dm];
    fill(dy, R * Dm);
    tuna_adaln_gate_residual_backward(dyy, dmod + 2 * Dm, dy, y, mod + 2 * Dm, 3 * Dm, R, Dm, segs, 2);
    tuna_adaln_modulate_backward(dx, dmod, dmod + Dm, dyy, x, mod + Dm, 3 * Dm, R, Dm, segs, 2);
#define ADALN_LOSS() ({ float yy_[R * Dm], hh_[R * Dm] = {0}; \
        tuna_adaln_modulate_forward(yy_, x, mod, mod + Dm, 3 * Dm, R, Dm, segs, 2); \
        tuna_adaln_gate_residual_forward(hh_, yy_, mod + 2 * Dm, 3 * Dm, R, Dm, segs, 2); \
        dot_d(hh_, dy, R * Dm); })
    FD_CHECK(R * Dm, x, ADALN_LOSS(), dx, 1e-3, "adaln dx");
    FD_CHECK(2 * 3 * Dm, mod, ADALN_LOSS(), dmod, 1e-3, "adaln dmod");
#undef ADALN_LOSS
}

TEST(vector_helpers) {
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {5, 4, 3, 2, 1}, y[5];
    tuna_vec_add(y, a, b, 5);
    CHECK(y[0] == 6 && y[4] == 6, "add");
    tuna_vec_axpy(y, 2, a, 5);
    CHECK(y[1] == 10, "axpy");
    tuna_vec_scale(y, 0.5f, 5);
    CHECK(y[1] == 5, "scale");
    tuna_vec_mul(y, a, b, 5);
    CHECK(y[2] == 9, "mul");
    tuna_add_bias_rows(y, a, 1, 5);
    CHECK(y[2] == 12, "bias rows");
}

int main(void) {
    RUN(rmsnorm_matches_naive);
    RUN(rmsnorm_backward_finite_differences);
    RUN(softmax_and_activations);
    RUN(rope_rotate_half_plain_and_llama3);
    RUN(rope_3d_hand_computed_minus_sign);
    RUN(rope_3d_matches_reference_formula_head64);
    RUN(attention_omni_mask_gqa_offsets);
    RUN(attention_backward_finite_differences);
    RUN(attention_backward_matches_naive_over_row_blocks);
    RUN(attention_rejects_bad_params);
    RUN(patch_embed_matches_conv);
    RUN(timestep_embedding_formula);
    RUN(embedding_gather_and_scatter);
    RUN(adaln_modulate_and_gate_on_segments);
    RUN(vector_helpers);
    return test_summary();
}
