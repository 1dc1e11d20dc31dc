/* Block quantisation in ggml's formats: row quantisers / dequantisers, the
 * 8-bit activation quantiser and the scalar reference dot products (see
 * quant.h for the formats). Written from ggml's format description and its
 * reference quantisers' algorithms; the searches are commented where they are. */
#include "ops/cpu/quant.h"
#include "core/dtype.h"
#include "core/tensor.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <string.h>

/* ---- little helpers ------------------------------------------------------- */

static inline void put_f16(uint8_t *p, float v) {
    uint16_t h = tuna_f32_to_f16(v);
    memcpy(p, &h, 2);
}

static inline float get_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return tuna_f16_to_f32(h);
}

/* Round to nearest, ties to even (the default rounding mode), as ggml's
 * nearest_int for the |v| < 2^22 it is used on. */
static inline int round_even(float v) { return (int)nearbyintf(v); }

static inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- Q8_0: d = amax/127, q = round(x/d) (half away from zero) --------------- */

static void quantize_q8_0(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(out, d);
        for (int i = 0; i < 32; i++) out[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
    }
}

static void dequantize_q8_0(const uint8_t *in, float *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, in += 34, y += 32) {
        float d = get_f16(in);
        for (int i = 0; i < 32; i++) y[i] = (float)(int8_t)in[2 + i] * d;
    }
}

/* ---- Q4_0 / Q5_0: the signed extreme max maps to -2^(bits-1):
 *      d = max / -8 (-16), q = min(15 (31), trunc(x/d + 8.5 (16.5)))
 * element j of the block is in the low nibble of byte j (j < 16) or the high
 * nibble of byte j - 16; Q5_0's fifth bits are bit j of a little-endian u32. */

static float signed_extreme(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    return max;
}

static void quantize_q4_0(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 18) {
        float d = signed_extreme(x) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(out, d);
        for (int j = 0; j < 16; j++) {
            int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
            out[2 + j] = (uint8_t)((lo > 15 ? 15 : lo) | (hi > 15 ? 15 : hi) << 4);
        }
    }
}

static void dequantize_q4_0(const uint8_t *in, float *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, in += 18, y += 32) {
        float d = get_f16(in);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((in[2 + j] & 15) - 8) * d;
            y[j + 16] = (float)((in[2 + j] >> 4) - 8) * d;
        }
    }
}

static void quantize_q5_0(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 22) {
        float d = signed_extreme(x) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(out, d);
        uint32_t high = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (int)(x[j] * id + 16.5f), hi = (int)(x[j + 16] * id + 16.5f);
            lo = lo > 31 ? 31 : lo;
            hi = hi > 31 ? 31 : hi;
            out[6 + j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            high |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        uint8_t h[4] = {(uint8_t)high, (uint8_t)(high >> 8), (uint8_t)(high >> 16), (uint8_t)(high >> 24)};
        memcpy(out + 2, h, 4);
    }
}

static void dequantize_q5_0(const uint8_t *in, float *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, in += 22, y += 32) {
        float d = get_f16(in);
        uint32_t high = (uint32_t)in[2] | (uint32_t)in[3] << 8 | (uint32_t)in[4] << 16 | (uint32_t)in[5] << 24;
        for (int j = 0; j < 16; j++) {
            int lo = (in[6 + j] & 15) | (int)((high >> j) & 1) << 4;
            int hi = (in[6 + j] >> 4) | (int)((high >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

/* ---- Q4_K ------------------------------------------------------------------
 * Layout of a super-block: f16 d, f16 dmin, 12 bytes holding 8 6-bit scales
 * and 8 6-bit mins, 128 bytes of nibbles. Scales/mins j < 4 are the low 6
 * bits of bytes j / j+4; j >= 4 have their low 4 bits in byte j+4 (scale low
 * nibble, min high nibble) and their top 2 bits in the top bits of bytes j-4
 * (scale) and j (min). Nibbles: 64 weights per 32 bytes, the first 32 in the
 * low nibbles, the next 32 in the high ones. */

static void q4k_scale_min(const uint8_t *sm, int j, int *scale, int *min) {
    if (j < 4) {
        *scale = sm[j] & 63;
        *min = sm[j + 4] & 63;
    } else {
        *scale = (sm[j + 4] & 15) | (sm[j - 4] >> 6) << 4;
        *min = (sm[j + 4] >> 4) | (sm[j] >> 6) << 4;
    }
}

/* Fit x ~= scale * L + min with L in [0, nmax] and min <= 0, minimising
 * sum_i w_i (scale L_i + min - x_i)^2: start from the min/max grid, then try
 * nstep+1 grids of nmax + rmin + rdelta*k steps over [min, max]; for each, the
 * weighted least-squares (scale, min) of its levels is solved in closed form
 *     D = Sw Sll - Sl^2,  scale = (Sw Sxl - Sx Sl)/D,  min = (Sll Sx - Sl Sxl)/D
 * (min clamped to 0 by refitting the scale alone), and the best error kept.
 * Returns the scale; *neg_min = -min >= 0. (ggml's make_qkx2_quants.) */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                           float rmin, float rdelta, int nstep) {
    float lo = x[0], hi = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *neg_min = -lo;
        return 0.0f;
    }
    float iscale = (float)nmax / (hi - lo), scale = 1.0f / iscale, best = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clamp_int(round_even(iscale * (x[i] - lo)), 0, nmax);
        float diff = scale * L[i] + lo - x[i];
        best += w[i] * (diff * diff);
    }
    uint8_t trial[32];
    for (int step = 0; step <= nstep; step++) {
        iscale = (rmin + rdelta * (float)step + (float)nmax) / (hi - lo);
        float sl = 0, sll = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(round_even(iscale * (x[i] - lo)), 0, nmax);
            trial[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sll += w[i] * (float)l * (float)l;
            sxl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sll - sl * sl;
        if (D <= 0) continue;
        float this_scale = (sum_w * sxl - sum_x * sl) / D, this_min = (sll * sum_x - sl * sxl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sxl / sll;
        }
        float error = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * trial[i] + this_min - x[i];
            error += w[i] * (diff * diff);
        }
        if (error < best) {
            memcpy(L, trial, (size_t)n);
            best = error;
            scale = this_scale;
            lo = this_min;
        }
    }
    *neg_min = -lo;
    return scale;
}

static void quantize_q4_k(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, x += 256, out += 144) {
        uint8_t L[256];
        float scales[8], mins[8], max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            /* weights: the sub-block's rms plus |x| (large weights matter more) */
            const float *xs = x + 32 * j;
            float sum2 = 0, w[32];
            for (int i = 0; i < 32; i++) sum2 += xs[i] * xs[i];
            float rms = sqrtf(sum2 / 32);
            for (int i = 0; i < 32; i++) w[i] = rms + fabsf(xs[i]);
            scales[j] = fit_scale_min(32, 15, xs, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20);
            max_scale = fmaxf(max_scale, scales[j]);
            max_min = fmaxf(max_min, mins[j]);
        }
        /* the 8 scales and mins as 6-bit multiples of d = max_scale/63, dmin = max_min/63 */
        float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        uint8_t *sm = out + 4;
        memset(sm, 0, 12);
        for (int j = 0; j < 8; j++) {
            /* as ggml: the rounded value taken as a byte, then capped */
            int ls = (uint8_t)round_even(inv_scale * scales[j]), lm = (uint8_t)round_even(inv_min * mins[j]);
            ls = ls > 63 ? 63 : ls;
            lm = lm > 63 ? 63 : lm;
            if (j < 4) {
                sm[j] |= (uint8_t)ls;
                sm[j + 4] |= (uint8_t)lm;
            } else {
                sm[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
                sm[j - 4] |= (uint8_t)((ls >> 4) << 6);
                sm[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        put_f16(out, max_scale / 63.0f);
        put_f16(out + 2, max_min / 63.0f);
        /* requantise every weight against the rounded scales */
        float d = get_f16(out), dmin = get_f16(out + 2);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            q4k_scale_min(sm, j, &sc, &mn);
            float ds = d * (float)sc;
            if (ds == 0.0f) continue;
            float dm = dmin * (float)mn;
            for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)clamp_int(round_even((x[32 * j + i] + dm) / ds), 0, 15);
        }
        uint8_t *q = out + 16;
        for (int c = 0; c < 4; c++)
            for (int i = 0; i < 32; i++) q[32 * c + i] = (uint8_t)(L[64 * c + i] | L[64 * c + 32 + i] << 4);
    }
}

static void dequantize_q4_k(const uint8_t *in, float *y, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, in += 144) {
        float d = get_f16(in), dmin = get_f16(in + 2);
        const uint8_t *q = in + 16;
        for (int c = 0; c < 4; c++, q += 32) {
            int s0, m0, s1, m1;
            q4k_scale_min(in + 4, 2 * c, &s0, &m0);
            q4k_scale_min(in + 4, 2 * c + 1, &s1, &m1);
            float d0 = d * (float)s0, n0 = dmin * (float)m0, d1 = d * (float)s1, n1 = dmin * (float)m1;
            for (int i = 0; i < 32; i++) *y++ = d0 * (float)(q[i] & 15) - n0;
            for (int i = 0; i < 32; i++) *y++ = d1 * (float)(q[i] >> 4) - n1;
        }
    }
}

/* ---- Q6_K ------------------------------------------------------------------
 * Layout: ql[128] low nibbles, qh[64] top 2 bits, int8 scales[16], f16 d.
 * Per 128 weights (ql 64 bytes, qh 32 bytes), weight l + 32 t (l < 32, t < 4)
 * has its low nibble in ql[l + 32 (t & 1)] (t < 2: low nibble, else high)
 * and its top bits in bits 2t, 2t+1 of qh[l]. Weight e uses scales[e / 16]. */

/* Symmetric fit x ~= s L, L in [-nmax, nmax-1], minimising sum x^2 (s L - x)^2:
 * the grid through the signed extreme (-nmax/max) and 18 neighbours
 * -(nmax + 0.1 k)/max, each with its least-squares s = Sxl/Sll; the largest
 * Sxl^2/Sll wins. Returns s; L gets the levels + nmax. (ggml's make_qx_quants,
 * rmse_type 1.) */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max, sxl = 0, sll = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sxl += w * x[i] * (float)l;
        sll += w * (float)l * (float)l;
    }
    float scale = sll != 0 ? sxl / sll : 0.0f, best = scale * sxl;
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)k) / max;
        sxl = sll = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sxl += w * x[i] * (float)l;
            sll += w * (float)l * (float)l;
        }
        if (sll > 0 && sxl * sxl > best * sll) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clamp_int(round_even(iscale * x[i]), -nmax, nmax - 1));
            scale = sxl / sll;
            best = scale * sxl;
        }
    }
    return scale;
}

static void quantize_q6_k(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, x += 256, out += 210) {
        int8_t L[256];
        float scales[16], max_scale = 0, max_abs = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(out, 0, 210);
        if (max_abs < 1e-15f) continue; /* all zero: d = 0 */
        /* the 16 scales as int8 multiples of d = -max_scale/128 */
        float iscale = -128.0f / max_scale;
        put_f16(out + 208, 1.0f / iscale);
        int8_t *sc = (int8_t *)(out + 192);
        for (int j = 0; j < 16; j++) {
            int v = round_even(iscale * scales[j]);
            sc[j] = (int8_t)(v > 127 ? 127 : v);
        }
        float d = get_f16(out + 208);
        for (int j = 0; j < 16; j++) {
            float ds = d * (float)sc[j];
            if (ds == 0.0f) continue;
            for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(clamp_int(round_even(x[16 * j + i] / ds), -32, 31) + 32);
        }
        uint8_t *ql = out, *qh = out + 128;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
            const int8_t *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                int a = Lh[l], bb = Lh[l + 32], c = Lh[l + 64], e = Lh[l + 96];
                ql[l] = (uint8_t)((a & 15) | (c & 15) << 4);
                ql[l + 32] = (uint8_t)((bb & 15) | (e & 15) << 4);
                qh[l] = (uint8_t)((a >> 4) | (bb >> 4) << 2 | (c >> 4) << 4 | (e >> 4) << 6);
            }
        }
    }
}

/* weight l + 32 t of a half (128 weights) as its 6-bit level 0..63 */
static inline int q6k_level(const uint8_t *ql, const uint8_t *qh, int l, int t) {
    int nib = t < 2 ? ql[l + 32 * t] & 15 : ql[l + 32 * (t - 2)] >> 4;
    return nib | ((qh[l] >> (2 * t)) & 3) << 4;
}

static void dequantize_q6_k(const uint8_t *in, float *y, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, in += 210) {
        float d = get_f16(in + 208);
        const int8_t *sc = (const int8_t *)(in + 192);
        for (int h = 0; h < 2; h++, y += 128)
            for (int t = 0; t < 4; t++)
                for (int l = 0; l < 32; l++) {
                    int e = 32 * t + l;
                    y[e] = d * (float)sc[8 * h + e / 16] * (float)(q6k_level(in + 64 * h, in + 128 + 32 * h, l, t) - 32);
                }
    }
}

/* ---- row entry points --------------------------------------------------------- */

tuna_status tuna_quantize_row(tuna_dtype type, const float *x, void *dst, int64_t n, tuna_error *err) {
    if (type != TUNA_F32 && type != TUNA_F16 && type != TUNA_BF16 && !tuna_dtype_is_quantized(type))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "quantize: cannot write %s", tuna_dtype_name(type));
    int64_t block = tuna_dtype_block_size(type);
    if (n < 0 || n % block)
        return tuna_fail(err, TUNA_ERR_INVALID, "quantize: %lld values are not whole %s blocks of %lld", (long long)n,
                         tuna_dtype_name(type), (long long)block);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return tuna_fail(err, TUNA_ERR_INVALID, "quantize: value %lld is not finite", (long long)i);
    uint8_t *out = dst;
    switch (type) {
    case TUNA_F32: memcpy(dst, x, (size_t)n * sizeof(float)); break;
    case TUNA_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = tuna_f32_to_f16(x[i]);
        break;
    case TUNA_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = tuna_f32_to_bf16(x[i]);
        break;
    case TUNA_Q8_0: quantize_q8_0(x, out, n); break;
    case TUNA_Q4_0: quantize_q4_0(x, out, n); break;
    case TUNA_Q5_0: quantize_q5_0(x, out, n); break;
    case TUNA_Q4_K: quantize_q4_k(x, out, n); break;
    case TUNA_Q6_K: quantize_q6_k(x, out, n); break;
    default: return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "quantize: cannot write %s", tuna_dtype_name(type));
    }
    return TUNA_OK;
}

typedef struct {
    tuna_dtype type;
    const float *x;
    uint8_t *dst;
    int64_t K;
    size_t row_bytes;
    int failed;
} quantize_job;

static void quantize_range(void *ctx, long begin, long end) {
    quantize_job *j = ctx;
    for (long r = begin; r < end; r++)
        if (tuna_quantize_row(j->type, j->x + r * j->K, j->dst + (size_t)r * j->row_bytes, j->K, NULL) != TUNA_OK)
            __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
}

tuna_status tuna_quantize_rows(tuna_dtype type, const float *x, void *dst, int64_t rows, int64_t K,
                               const tuna_threads *pool, tuna_error *err) {
    if (rows <= 0) return TUNA_OK;
    TUNA_TRY(tuna_quantize_row(type, x, dst, K, err)); /* a bad type or length is reported here */
    quantize_job job = {type, x, dst, K, tuna_dtype_bytes_for(type, K), 0};
    tuna_parallel_for(pool, (long)rows, quantize_range, &job);
    if (!job.failed) return TUNA_OK;
    for (int64_t r = 0; r < rows; r++) /* name the first failing row */
        for (int64_t i = 0; i < K; i++)
            if (!isfinite(x[r * K + i]))
                return tuna_fail(err, TUNA_ERR_INVALID, "quantize: row %lld, column %lld is not finite", (long long)r,
                                 (long long)i);
    return tuna_fail(err, TUNA_ERR_INTERNAL, "quantize: a row failed");
}

int tuna_dequantize_row(tuna_dtype type, const void *src, float *y, int64_t n) {
#if defined(__AVX2__)
    if (tuna_dtype_is_quantized(type)) return tuna_dequantize_row_avx2(type, src, y, n);
#endif
    return tuna_dequantize_row_scalar(type, src, y, n);
}

int tuna_dequantize_row_scalar(tuna_dtype type, const void *src, float *y, int64_t n) {
    const uint8_t *in = src;
    switch (type) {
    case TUNA_F32: memcpy(y, src, (size_t)n * sizeof(float)); return 0;
    case TUNA_F16:
        for (int64_t i = 0; i < n; i++) y[i] = tuna_f16_to_f32(((const uint16_t *)src)[i]);
        return 0;
    case TUNA_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = tuna_bf16_to_f32(((const uint16_t *)src)[i]);
        return 0;
    case TUNA_Q8_0: dequantize_q8_0(in, y, n); return 0;
    case TUNA_Q4_0: dequantize_q4_0(in, y, n); return 0;
    case TUNA_Q5_0: dequantize_q5_0(in, y, n); return 0;
    case TUNA_Q4_K: dequantize_q4_k(in, y, n); return 0;
    case TUNA_Q6_K: dequantize_q6_k(in, y, n); return 0;
    default: return -1;
    }
}

typedef struct {
    tuna_dtype type;
    const uint8_t *src;
    float *y;
    int64_t r0, K;
    size_t row_bytes;
} dequantize_job;

static void dequantize_range(void *ctx, long begin, long end) {
    dequantize_job *j = ctx;
    for (long r = begin; r < end; r++)
        tuna_dequantize_row(j->type, j->src + (size_t)(j->r0 + r) * j->row_bytes, j->y + r * j->K, j->K);
}

void tuna_dequantize_rows(tuna_dtype type, const void *src, float *y, int64_t r0, int64_t r1, int64_t K,
                          const tuna_threads *pool) {
    dequantize_job job = {type, src, y, r0, K, tuna_dtype_bytes_for(type, K)};
    tuna_parallel_for(pool, (long)(r1 - r0), dequantize_range, &job);
}

/* ---- activations ------------------------------------------------------------------ */

/* One block of 32: d = amax/127, q = round-even(x/d); the sums of q over each
 * half. A NaN or inf in the block makes d NaN (the product then shows it)
 * and q zero. */
static float q8_block_scalar(const float *x, int8_t *q, int *sum0, int *sum1) {
    float amax = 0;
    int bad = 0;
    for (int i = 0; i < TUNA_Q8_BLOCK; i++) {
        float a = fabsf(x[i]);
        bad |= !(a <= FLT_MAX);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = d != 0.0f && !bad ? 1.0f / d : 0.0f;
    *sum0 = *sum1 = 0;
    for (int i = 0; i < TUNA_Q8_BLOCK; i++) {
        q[i] = bad ? 0 : (int8_t)clamp_int(round_even(x[i] * id), -127, 127);
        *(i < 16 ? sum0 : sum1) += q[i];
    }
    return bad ? NAN : d;
}

#if defined(__AVX2__)
/* The same in AVX2: the same float operations (|x| max, amax/127, 1/d, x*id,
 * round to nearest even), so the same bytes. */
static float q8_block(const float *x, int8_t *q, int *sum0, int *sum1) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    if (!(amax <= FLT_MAX)) return q8_block_scalar(x, q, sum0, sum1); /* inf; max_ps may drop a NaN: check */
    for (int i = 0; i < TUNA_Q8_BLOCK; i++)
        if (x[i] != x[i]) return q8_block_scalar(x, q, sum0, sum1);
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    __m256i r[4];
    for (int i = 0; i < 4; i++) r[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid)); /* nearest even */
    /* |x*id| <= 127 up to rounding: saturating packs keep -127..127 */
    __m256i p16a = _mm256_packs_epi32(r[0], r[1]), p16b = _mm256_packs_epi32(r[2], r[3]);
    /* the packs work per 128-bit lane: 4-byte groups come out as r0 r1 r2 r3 (low
     * halves), r0 r1 r2 r3 (high halves); put them back in order */
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    p8 = _mm256_max_epi8(p8, _mm256_set1_epi8(-127));
    _mm256_storeu_si256((__m256i *)q, p8);
    __m256i s = _mm256_add_epi32(r[0], r[1]), t = _mm256_add_epi32(r[2], r[3]);
    int lo[8], hi[8];
    _mm256_storeu_si256((__m256i *)lo, s);
    _mm256_storeu_si256((__m256i *)hi, t);
    *sum0 = lo[0] + lo[1] + lo[2] + lo[3] + lo[4] + lo[5] + lo[6] + lo[7];
    *sum1 = hi[0] + hi[1] + hi[2] + hi[3] + hi[4] + hi[5] + hi[6] + hi[7];
    return d;
}
#else
#define q8_block q8_block_scalar
#endif

tuna_status tuna_q8_act_quantize(tuna_q8_act *a, const float *x, int64_t rows, int64_t K, tuna_error *err) {
    memset(a, 0, sizeof *a);
    if (rows < 0 || K <= 0 || K % TUNA_Q8_BLOCK)
        return tuna_fail(err, TUNA_ERR_INVALID, "quantised matmul: K = %lld is not a multiple of %d", (long long)K,
                         TUNA_Q8_BLOCK);
    int64_t blocks = rows * (K / TUNA_Q8_BLOCK);
    a->q = malloc((size_t)(rows * K) + 64);
    a->d = malloc(sizeof(float) * (size_t)blocks + 64);
    a->s = malloc(sizeof(float) * (size_t)blocks + 64);
    a->s16 = malloc(sizeof(int16_t) * (size_t)(2 * blocks) + 64);
    if (!a->q || !a->d || !a->s || !a->s16) {
        tuna_q8_act_free(a);
        return tuna_fail(err, TUNA_ERR_NOMEM, "quantised matmul: out of memory for the quantised input");
    }
    a->rows = rows;
    a->K = K;
    for (int64_t b = 0; b < blocks; b++) {
        int sum0, sum1;
        float d = q8_block(x + b * TUNA_Q8_BLOCK, a->q + b * TUNA_Q8_BLOCK, &sum0, &sum1);
        a->d[b] = d;
        a->s[b] = d * (float)(sum0 + sum1);
        a->s16[2 * b] = (int16_t)sum0;
        a->s16[2 * b + 1] = (int16_t)sum1;
    }
    return TUNA_OK;
}

void tuna_q8_act_free(tuna_q8_act *a) {
    free(a->q);
    free(a->d);
    free(a->s);
    free(a->s16);
    memset(a, 0, sizeof *a);
}

/* ---- scalar reference dot products --------------------------------------------------
 * One weight row against x row m, block by block; integer sums inside a block. */

static float qdot_scalar(const uint8_t *w, tuna_dtype type, const tuna_q8_act *a, int64_t m) {
    int64_t K = a->K, nb = K / 32;
    const int8_t *xq = a->q + m * K;
    const float *xd = a->d + m * nb, *xs = a->s + m * nb;
    const int16_t *x16 = a->s16 + m * 2 * nb;
    float sum = 0;
    switch (type) {
    case TUNA_Q8_0:
        for (int64_t b = 0; b < nb; b++, w += 34) {
            int acc = 0;
            for (int i = 0; i < 32; i++) acc += (int8_t)w[2 + i] * xq[32 * b + i];
            sum += get_f16(w) * xd[b] * (float)acc;
        }
        break;
    case TUNA_Q4_0:
        for (int64_t b = 0; b < nb; b++, w += 18) {
            int acc = 0;
            for (int j = 0; j < 16; j++) acc += (w[2 + j] & 15) * xq[32 * b + j] + (w[2 + j] >> 4) * xq[32 * b + 16 + j];
            float d = get_f16(w);
            sum += d * xd[b] * (float)acc - 8.0f * d * xs[b];
        }
        break;
    case TUNA_Q5_0:
        for (int64_t b = 0; b < nb; b++, w += 22) {
            uint32_t high = (uint32_t)w[2] | (uint32_t)w[3] << 8 | (uint32_t)w[4] << 16 | (uint32_t)w[5] << 24;
            int acc = 0;
            for (int j = 0; j < 16; j++) {
                int lo = (w[6 + j] & 15) | (int)((high >> j) & 1) << 4, hi = (w[6 + j] >> 4) | (int)((high >> (j + 16)) & 1) << 4;
                acc += lo * xq[32 * b + j] + hi * xq[32 * b + 16 + j];
            }
            float d = get_f16(w);
            sum += d * xd[b] * (float)acc - 16.0f * d * xs[b];
        }
        break;
    case TUNA_Q4_K:
        for (int64_t s = 0; s < nb / 8; s++, w += 144) {
            float d = get_f16(w), dmin = get_f16(w + 2);
            for (int j = 0; j < 8; j++) {
                int sc, mn;
                q4k_scale_min(w + 4, j, &sc, &mn);
                const uint8_t *q = w + 16 + 32 * (j / 2);
                const int8_t *xb = xq + (8 * s + j) * 32;
                int acc = 0;
                for (int i = 0; i < 32; i++) acc += (j & 1 ? q[i] >> 4 : q[i] & 15) * xb[i];
                int64_t b = 8 * s + j;
                sum += d * (float)sc * xd[b] * (float)acc - dmin * (float)mn * xs[b];
            }
        }
        break;
    case TUNA_Q6_K:
        for (int64_t s = 0; s < nb / 8; s++, w += 210) {
            float d = get_f16(w + 208);
            const int8_t *sc = (const int8_t *)(w + 192);
            for (int h = 0; h < 2; h++)
                for (int t = 0; t < 4; t++) {
                    int64_t b = 8 * s + 4 * h + t; /* x block of weights 128h + 32t .. +32 */
                    const int8_t *xb = xq + b * 32;
                    int acc0 = 0, acc1 = 0;
                    for (int l = 0; l < 16; l++) acc0 += q6k_level(w + 64 * h, w + 128 + 32 * h, l, t) * xb[l];
                    for (int l = 16; l < 32; l++) acc1 += q6k_level(w + 64 * h, w + 128 + 32 * h, l, t) * xb[l];
                    int s0 = sc[8 * h + 2 * t], s1 = sc[8 * h + 2 * t + 1];
                    int acc = s0 * (acc0 - 32 * x16[2 * b]) + s1 * (acc1 - 32 * x16[2 * b + 1]);
                    sum += d * xd[b] * (float)acc;
                }
        }
        break;
    default: break;
    }
    return sum;
}

void tuna_qgemv_scalar(float *y, int64_t y_stride, const void *w, tuna_dtype type, const tuna_q8_act *a,
                       const float *bias, int64_t n_begin, int64_t n_end) {
    size_t row_bytes = tuna_dtype_bytes_for(type, a->K);
    for (int64_t n = n_begin; n < n_end; n++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)n * row_bytes;
        for (int64_t m = 0; m < a->rows; m++)
            y[m * y_stride + n] = qdot_scalar(row, type, a, m) + (bias ? bias[n] : 0.0f);
    }
}

tuna_qgemv_fn tuna_qgemv_kernel(void) {
#if defined(__AVX2__)
    const char *isa = getenv("TUNA_ISA");
    if (!(isa && strcmp(isa, "scalar") == 0)) return tuna_qgemv_avx2;
#endif
    return tuna_qgemv_scalar;
}
