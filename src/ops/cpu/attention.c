/* Multi-head attention with grouped KV heads and the omni mask (SPEC section 3).
 *
 *   out_i = sum_j softmax_j(scale q_i . k_j + mask_ij) v_j
 *
 * Mask: key j is visible to query position i iff j <= i, or i and j lie in the
 * same segment [offset, offset+length). Since a segment containing i starts at
 * or before i, the visible keys of a row are always a prefix [0, vis(i)):
 *     vis(i) = min(Lk, max(i + 1, end of every segment containing i)).
 * So the mask is one integer per row and no mask matrix exists.
 *
 * Forward: flash-attention style. Work unit = (kv head, tile of queries); keys
 * in tiles of BK with a running max m, running sum l and an unnormalised
 * accumulator per row (online softmax), so memory is O(BQ*(BK + D)).
 * Scores for a tile: S[r][0..BK) += (scale q_r[d]) * Kt[d][0..BK) (K tile
 * transposed once, vectors along keys); then acc_r += sum_c P[r][c] V[c]
 * (vectors along D). Both are broadcast-FMA loops, no horizontal sums. */
#include "ops/ops.h"
#include "ops/cpu/vec_math.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A work unit is (kv head, tile of queries) and covers every q head of that kv
 * group, so each K tile is transposed once for up to ATT_ROWS (head, query)
 * rows: with 7 q heads per kv head (Qwen2.5-7B) a tile is 18 queries x 7 heads,
 * which halves the K/V traffic of long sequences against 64 rows. */
enum { ATT_ROWS = 128, ATT_BK = 32 };

/* End (exclusive) of the visible key prefix of query position i. */
static int64_t visible_end(const tuna_attention_params *p, int64_t i) {
    int64_t end = i + 1;
    for (int s = 0; s < p->n_segments; s++) {
        int64_t a = p->segments[s].offset, b = a + p->segments[s].length;
        if (i >= a && i < b && b > end) end = b;
    }
    return end < p->k_len ? end : p->k_len;
}

static tuna_status check_params(const tuna_attention_params *p, tuna_error *err) {
    if (!p || p->q_len < 0 || p->k_len < 0 || p->q_start < 0 || p->n_heads <= 0 ||
        p->n_kv_heads <= 0 || p->head_dim <= 0 || p->n_heads % p->n_kv_heads != 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "attention: bad shape parameters");
    if (p->n_segments < 0 || (p->n_segments > 0 && !p->segments))
        return tuna_fail(err, TUNA_ERR_INVALID, "attention: bad segment list");
    for (int s = 0; s < p->n_segments; s++)
        if (p->segments[s].offset < 0 || p->segments[s].length < 0)
            return tuna_fail(err, TUNA_ERR_INVALID, "attention: segment %d is negative", s);
    return TUNA_OK;
}

typedef struct {
    float *out, *lse;
    const float *q, *k, *v;
    const tuna_attention_params *p;
    float scale;
    int64_t q_tiles;
    int bq; /* queries per tile: ATT_ROWS / group */
    int failed;
} att_job;

/* Per-thread scratch. */
typedef struct {
    float *qs;  /* [ROWS][D]  scaled queries */
    float *kt;  /* [D][BK]    transposed key tile (zero padded) */
    float *s;   /* [ROWS][BK] scores / probabilities */
    float *acc; /* [ROWS][D] */
    float m[ATT_ROWS], l[ATT_ROWS];
    int64_t vis[ATT_ROWS];
} att_scratch;

/* acc_r[0..D) += sum_{c < nc} P[c] * V[c][0..D) */
static void accumulate_pv(float *acc, const float *P, const float *vbase, int64_t vstride, int nc,
                          int D) {
    int d = 0;
    for (; d + 64 <= D; d += 64) {
        __m256 a[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) a[u] = _mm256_loadu_ps(acc + d + 8 * u);
        for (int c = 0; c < nc; c++) {
            __m256 pc = _mm256_set1_ps(P[c]);
            const float *vr = vbase + c * vstride + d;
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) a[u] = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 8 * u), a[u]);
        }
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) _mm256_storeu_ps(acc + d + 8 * u, a[u]);
    }
    for (; d + 8 <= D; d += 8) {
        __m256 a = _mm256_loadu_ps(acc + d);
        for (int c = 0; c < nc; c++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(P[c]), _mm256_loadu_ps(vbase + c * vstride + d), a);
        _mm256_storeu_ps(acc + d, a);
    }
    for (; d < D; d++) {
        float a = acc[d];
        for (int c = 0; c < nc; c++) a += P[c] * vbase[c * vstride + d];
        acc[d] = a;
    }
}

/* Two rows at once: each V load feeds two FMAs. */
static void accumulate_pv2(float *acc0, float *acc1, const float *P0, const float *P1,
                           const float *vbase, int64_t vstride, int nc, int D) {
    int d = 0;
    for (; d + 32 <= D; d += 32) {
        __m256 a0 = _mm256_loadu_ps(acc0 + d), a1 = _mm256_loadu_ps(acc0 + d + 8);
        __m256 a2 = _mm256_loadu_ps(acc0 + d + 16), a3 = _mm256_loadu_ps(acc0 + d + 24);
        __m256 b0 = _mm256_loadu_ps(acc1 + d), b1 = _mm256_loadu_ps(acc1 + d + 8);
        __m256 b2 = _mm256_loadu_ps(acc1 + d + 16), b3 = _mm256_loadu_ps(acc1 + d + 24);
        for (int c = 0; c < nc; c++) {
            const float *vr = vbase + c * vstride + d;
            __m256 v0 = _mm256_loadu_ps(vr), v1 = _mm256_loadu_ps(vr + 8);
            __m256 v2 = _mm256_loadu_ps(vr + 16), v3 = _mm256_loadu_ps(vr + 24);
            __m256 p = _mm256_set1_ps(P0[c]);
            a0 = _mm256_fmadd_ps(p, v0, a0); a1 = _mm256_fmadd_ps(p, v1, a1);
            a2 = _mm256_fmadd_ps(p, v2, a2); a3 = _mm256_fmadd_ps(p, v3, a3);
            p = _mm256_set1_ps(P1[c]);
            b0 = _mm256_fmadd_ps(p, v0, b0); b1 = _mm256_fmadd_ps(p, v1, b1);
            b2 = _mm256_fmadd_ps(p, v2, b2); b3 = _mm256_fmadd_ps(p, v3, b3);
        }
        _mm256_storeu_ps(acc0 + d, a0); _mm256_storeu_ps(acc0 + d + 8, a1);
        _mm256_storeu_ps(acc0 + d + 16, a2); _mm256_storeu_ps(acc0 + d + 24, a3);
        _mm256_storeu_ps(acc1 + d, b0); _mm256_storeu_ps(acc1 + d + 8, b1);
        _mm256_storeu_ps(acc1 + d + 16, b2); _mm256_storeu_ps(acc1 + d + 24, b3);
    }
    if (d < D) { /* D % 32 tail */
        accumulate_pv(acc0 + d, P0, vbase + d, vstride, nc, D - d);
        accumulate_pv(acc1 + d, P1, vbase + d, vstride, nc, D - d);
    }
}

/* S[r..r+nr)[0..BK) = qs[r..r+nr) . Kt  (nr = 1..3, constant after inlining) */
static inline __attribute__((always_inline)) void scores_rows(att_scratch *w, int r, int D, int nr) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    const float *q0 = w->qs + (int64_t)r * D;
    const float *q1 = q0 + (nr > 1 ? D : 0), *q2 = q0 + (nr > 2 ? 2 * D : 0);
    for (int d = 0; d < D; d++) {
        const float *kt = w->kt + d * ATT_BK;
        __m256 k0 = _mm256_load_ps(kt), k1 = _mm256_load_ps(kt + 8);
        __m256 k2 = _mm256_load_ps(kt + 16), k3 = _mm256_load_ps(kt + 24);
        __m256 q = _mm256_set1_ps(q0[d]);
        a0 = _mm256_fmadd_ps(q, k0, a0); a1 = _mm256_fmadd_ps(q, k1, a1);
        a2 = _mm256_fmadd_ps(q, k2, a2); a3 = _mm256_fmadd_ps(q, k3, a3);
        if (nr > 1) {
            q = _mm256_set1_ps(q1[d]);
            b0 = _mm256_fmadd_ps(q, k0, b0); b1 = _mm256_fmadd_ps(q, k1, b1);
            b2 = _mm256_fmadd_ps(q, k2, b2); b3 = _mm256_fmadd_ps(q, k3, b3);
        }
        if (nr > 2) {
            q = _mm256_set1_ps(q2[d]);
            c0 = _mm256_fmadd_ps(q, k0, c0); c1 = _mm256_fmadd_ps(q, k1, c1);
            c2 = _mm256_fmadd_ps(q, k2, c2); c3 = _mm256_fmadd_ps(q, k3, c3);
        }
    }
    float *s = w->s + (int64_t)r * ATT_BK;
    _mm256_store_ps(s, a0); _mm256_store_ps(s + 8, a1); _mm256_store_ps(s + 16, a2); _mm256_store_ps(s + 24, a3);
    if (nr > 1) {
        s += ATT_BK;
        _mm256_store_ps(s, b0); _mm256_store_ps(s + 8, b1); _mm256_store_ps(s + 16, b2); _mm256_store_ps(s + 24, b3);
    }
    if (nr > 2) {
        s += ATT_BK;
        _mm256_store_ps(s, c0); _mm256_store_ps(s + 8, c1); _mm256_store_ps(s + 16, c2); _mm256_store_ps(s + 24, c3);
    }
}

/* Row rr of a tile is query r0 + rr % bq of q head kvh*group + rr / bq. */
static void attention_tile(const att_job *j, att_scratch *w, int kvh, int64_t qt) {
    const tuna_attention_params *p = j->p;
    const int D = p->head_dim;
    const int group = p->n_heads / p->n_kv_heads;
    const int64_t qstride = (int64_t)p->n_heads * D, kvstride = (int64_t)p->n_kv_heads * D;
    const int bq = j->bq;
    int64_t r0 = qt * bq;
    int nq = p->q_len - r0 >= bq ? bq : (int)(p->q_len - r0);
    int rows = nq * group;
    int64_t kmax = 0;
    for (int rr = 0; rr < rows; rr++) {
        int h = kvh * group + rr / nq;
        int64_t qi = r0 + rr % nq;
        const float *qr = j->q + qi * qstride + (int64_t)h * D;
        for (int d = 0; d < D; d++) w->qs[rr * D + d] = qr[d] * j->scale;
        w->vis[rr] = visible_end(p, p->q_start + qi);
        if (w->vis[rr] > kmax) kmax = w->vis[rr];
        w->m[rr] = -INFINITY;
        w->l[rr] = 0.0f;
    }
    memset(w->acc, 0, (size_t)rows * D * sizeof(float));
    const float *kbase = j->k + (int64_t)kvh * D, *vbase = j->v + (int64_t)kvh * D;

    for (int64_t k0 = 0; k0 < kmax; k0 += ATT_BK) {
        int nc = kmax - k0 >= ATT_BK ? ATT_BK : (int)(kmax - k0);
        for (int c = 0; c < nc; c++) {
            const float *kr = kbase + (k0 + c) * kvstride;
            for (int d = 0; d < D; d++) w->kt[d * ATT_BK + c] = kr[d];
        }
        if (nc < ATT_BK)
            for (int d = 0; d < D; d++) memset(w->kt + d * ATT_BK + nc, 0, (size_t)(ATT_BK - nc) * sizeof(float));
        /* scores of every row, three rows at a time (12 accumulators, each
         * K-tile load feeds three FMAs) */
        int r = 0;
        for (; r + 3 <= rows; r += 3) scores_rows(w, r, D, 3);
        if (rows - r == 2) scores_rows(w, r, D, 2);
        else if (rows - r == 1) scores_rows(w, r, D, 1);
        int nv[ATT_ROWS];
        for (r = 0; r < rows; r++) {
            int64_t vis = w->vis[r] - k0; /* visible columns of this tile */
            float *srow = w->s + r * ATT_BK;
            if (vis <= 0) {
                nv[r] = 0;
                memset(srow, 0, sizeof(float) * ATT_BK);
                continue;
            }
            int nvis = vis < nc ? (int)vis : nc;
            nv[r] = nvis;
            for (int c = nvis; c < ATT_BK; c++) srow[c] = -INFINITY;
            __m256 mx = _mm256_load_ps(srow);
            for (int u = 1; u < ATT_BK / 8; u++) mx = _mm256_max_ps(mx, _mm256_load_ps(srow + 8 * u));
            float tile_max = hmax8(mx);
            float m_new = tile_max > w->m[r] ? tile_max : w->m[r];
            float corr = expf(w->m[r] - m_new); /* 0 when m was -inf */
            __m256 mv = _mm256_set1_ps(m_new), sum = _mm256_setzero_ps();
            for (int u = 0; u < ATT_BK / 8; u++) {
                __m256 e = exp256(_mm256_sub_ps(_mm256_load_ps(srow + 8 * u), mv));
                _mm256_store_ps(srow + 8 * u, e);
                sum = _mm256_add_ps(sum, e);
            }
            w->l[r] = w->l[r] * corr + hsum8(sum);
            w->m[r] = m_new;
            float *acc = w->acc + (int64_t)r * D;
            if (corr != 1.0f)
                for (int d = 0; d < D; d++) acc[d] *= corr;
        }
        /* acc += P V, two rows at a time (masked probabilities are 0) */
        const float *vt = vbase + k0 * kvstride;
        for (r = 0; r + 2 <= rows; r += 2) {
            int n2 = nv[r] > nv[r + 1] ? nv[r] : nv[r + 1];
            if (n2 > 0)
                accumulate_pv2(w->acc + (int64_t)r * D, w->acc + (int64_t)(r + 1) * D,
                               w->s + r * ATT_BK, w->s + (r + 1) * ATT_BK, vt, kvstride, n2, D);
        }
        if (r < rows && nv[r] > 0) accumulate_pv(w->acc + (int64_t)r * D, w->s + r * ATT_BK, vt, kvstride, nv[r], D);
    }
    for (int rr = 0; rr < rows; rr++) {
        int h = kvh * group + rr / nq;
        int64_t qi = r0 + rr % nq;
        float *o = j->out + qi * qstride + (int64_t)h * D;
        float inv = w->l[rr] > 0.0f ? 1.0f / w->l[rr] : 0.0f;
        for (int d = 0; d < D; d++) o[d] = w->acc[(int64_t)rr * D + d] * inv;
        if (j->lse)
            j->lse[(int64_t)h * p->q_len + qi] =
                w->l[rr] > 0.0f ? w->m[rr] + logf(w->l[rr]) : -INFINITY;
    }
}

static void attention_range(void *ctx, long begin, long end) {
    att_job *j = ctx;
    int D = j->p->head_dim;
    att_scratch w;
    w.qs = aligned_alloc(64, sizeof(float) * ATT_ROWS * (size_t)((D + 15) & ~15));
    w.kt = aligned_alloc(64, sizeof(float) * ATT_BK * (size_t)D);
    w.s = aligned_alloc(64, sizeof(float) * ATT_ROWS * ATT_BK);
    w.acc = aligned_alloc(64, sizeof(float) * ATT_ROWS * (size_t)((D + 15) & ~15));
    if (w.qs && w.kt && w.s && w.acc) {
        for (long t = begin; t < end; t++)
            attention_tile(j, &w, (int)(t / j->q_tiles), t % j->q_tiles);
    } else {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
    }
    free(w.qs);
    free(w.kt);
    free(w.s);
    free(w.acc);
}

tuna_status tuna_attention_forward(float *out, float *lse, const float *q, const float *k,
                                   const float *v, const tuna_attention_params *params,
                                   const tuna_threads *pool, tuna_error *err) {
    TUNA_TRY(check_params(params, err));
    if (params->q_len == 0) return TUNA_OK;
    att_job job = {
        .out = out, .lse = lse, .q = q, .k = k, .v = v, .p = params,
        .scale = params->scale != 0.0f ? params->scale : 1.0f / sqrtf((float)params->head_dim),
        .failed = 0,
    };
    int group = params->n_heads / params->n_kv_heads;
    job.bq = group >= ATT_ROWS ? 1 : ATT_ROWS / group;
    if (group > ATT_ROWS) /* more q heads per kv head than rows in a tile */
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "attention: more than %d q heads per kv head", ATT_ROWS);
    job.q_tiles = (params->q_len + job.bq - 1) / job.bq;
    tuna_parallel_for(pool, (long)(job.q_tiles * params->n_kv_heads), attention_range, &job);
    if (job.failed) return tuna_fail(err, TUNA_ERR_NOMEM, "attention: out of memory");
    return TUNA_OK;
}

/* ---- backward -------------------------------------------------------------
 * Work unit = one kv head with all the q heads that read it, so dk/dv of a kv
 * head are written by one thread only. Per query row i and visible key c:
 *   s_c  = q_i . k_c                    p_c = exp(scale s_c - lse_i)  (0 past vis)
 *   dp_c = do_i . v_c                   ds_c = p_c (dp_c - D_i),  D_i = do_i . o_i
 *   dq_i = scale sum_c ds_c k_c         dk_c += scale ds_c q_i     dv_c += p_c do_i */

typedef struct {
    float *dq, *dk, *dv;
    const float *dout, *q, *k, *v, *out, *lse;
    const tuna_attention_params *p;
    float scale;
    int failed;
} att_bwd_job;

/* Backward by blocks of BWD_ROWS query rows of one head, as five GEMMs
 * (OpenBLAS, single-threaded inside our pool) on the block's visible keys
 * [0, n), n = max vis(i) over the block:
 *   S  = Q K^T                 P = exp(scale S - lse) (0 where c >= vis(i))
 *   dP = dO V^T                dS = P o (dP - D),  D_i = do_i . o_i
 *   dQ = scale dS K            dK += scale dS^T Q        dV += P^T dO
 * The block's S/P and dP/dS scratch is BWD_ROWS x k_len floats each. Heads
 * of one kv group run in one work unit so dK and dV are written race-free. */
enum { BWD_ROWS = 64 };

static float dot_f32(const float *a, const float *b, int n) {
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s);
    float r = hsum8(s);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* P and dS of one block, in place: pr holds S on entry and P on exit, ds holds
 * dP on entry and dS on exit; rows r < nb, columns c < n (ld n). */
static void softmax_grad_block(const att_bwd_job *j, int h, int64_t i0, int nb, int64_t n, float *pr, float *ds) {
    const tuna_attention_params *p = j->p;
    const int D = p->head_dim;
    const int64_t qstride = (int64_t)p->n_heads * D;
    for (int r = 0; r < nb; r++) {
        int64_t i = i0 + r;
        float *prow = pr + r * n, *drow = ds + r * n;
        float lse = j->lse[(int64_t)h * p->q_len + i];
        int64_t vis = visible_end(p, p->q_start + i);
        if (!(lse > -INFINITY)) vis = 0;
        float Di = dot_f32(j->dout + i * qstride + (int64_t)h * D, j->out + i * qstride + (int64_t)h * D, D);
        const __m256 scale = _mm256_set1_ps(j->scale), lsev = _mm256_set1_ps(lse), Dv = _mm256_set1_ps(Di);
        int64_t c = 0;
        for (; c + 8 <= vis; c += 8) {
            __m256 pc = exp256(_mm256_fmsub_ps(scale, _mm256_loadu_ps(prow + c), lsev));
            _mm256_storeu_ps(prow + c, pc);
            _mm256_storeu_ps(drow + c, _mm256_mul_ps(pc, _mm256_sub_ps(_mm256_loadu_ps(drow + c), Dv)));
        }
        for (; c < vis; c++) {
            float pc = expf(j->scale * prow[c] - lse);
            prow[c] = pc;
            drow[c] = pc * (drow[c] - Di);
        }
        for (; c < n; c++) prow[c] = drow[c] = 0.0f;
    }
}

static void attention_backward_block(const att_bwd_job *j, int h, int64_t i0, int nb, float *pr, float *ds) {
    const tuna_attention_params *p = j->p;
    const int D = p->head_dim, kvh = h / (p->n_heads / p->n_kv_heads);
    const int64_t qstride = (int64_t)p->n_heads * D, kvstride = (int64_t)p->n_kv_heads * D;
    int64_t n = 0;
    for (int r = 0; r < nb; r++) {
        int64_t vis = visible_end(p, p->q_start + i0 + r);
        if (vis > n) n = vis;
    }
    float *dq = j->dq + i0 * qstride + (int64_t)h * D;
    if (n <= 0) {
        for (int r = 0; r < nb; r++) memset(dq + r * qstride, 0, (size_t)D * sizeof(float));
        return;
    }
    const float *q = j->q + i0 * qstride + (int64_t)h * D, *dout = j->dout + i0 * qstride + (int64_t)h * D;
    const float *k = j->k + (int64_t)kvh * D, *v = j->v + (int64_t)kvh * D;
    float *dk = j->dk + (int64_t)kvh * D, *dv = j->dv + (int64_t)kvh * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, (int)n, D, 1.0f, q, (int)qstride, k, (int)kvstride, 0.0f,
                pr, (int)n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, (int)n, D, 1.0f, dout, (int)qstride, v, (int)kvstride,
                0.0f, ds, (int)n);
    softmax_grad_block(j, h, i0, nb, n, pr, ds);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, (int)n, j->scale, ds, (int)n, k, (int)kvstride,
                0.0f, dq, (int)qstride);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, D, nb, j->scale, ds, (int)n, q, (int)qstride, 1.0f,
                dk, (int)kvstride);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, D, nb, 1.0f, pr, (int)n, dout, (int)qstride, 1.0f,
                dv, (int)kvstride);
}

static void attention_backward_range(void *ctx, long begin, long end) {
    att_bwd_job *j = ctx;
    const tuna_attention_params *p = j->p;
    const int group = p->n_heads / p->n_kv_heads;
    float *buf = malloc(sizeof(float) * 2 * BWD_ROWS * (size_t)p->k_len);
    if (!buf) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    for (long kvh = begin; kvh < end; kvh++)
        for (int h = (int)kvh * group; h < ((int)kvh + 1) * group; h++)
            for (int64_t i0 = 0; i0 < p->q_len; i0 += BWD_ROWS) {
                int nb = (int)(p->q_len - i0 < BWD_ROWS ? p->q_len - i0 : BWD_ROWS);
                attention_backward_block(j, h, i0, nb, buf, buf + BWD_ROWS * p->k_len);
            }
    free(buf);
}

tuna_status tuna_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *lse,
                                    const tuna_attention_params *params,
                                    const tuna_threads *pool, tuna_error *err) {
    TUNA_TRY(check_params(params, err));
    if (!lse) return tuna_fail(err, TUNA_ERR_INVALID, "attention backward needs the forward's lse");
    att_bwd_job job = {
        .dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v, .out = out,
        .lse = lse, .p = params,
        .scale = params->scale != 0.0f ? params->scale : 1.0f / sqrtf((float)params->head_dim),
    };
    if (params->q_len == 0 || params->k_len == 0) {
        for (int64_t i = 0; i < params->q_len * params->n_heads * params->head_dim; i++) dq[i] = 0.0f;
        return TUNA_OK;
    }
    tuna_parallel_for(pool, params->n_kv_heads, attention_backward_range, &job);
    if (job.failed) return tuna_fail(err, TUNA_ERR_NOMEM, "attention backward: out of memory");
    return TUNA_OK;
}
