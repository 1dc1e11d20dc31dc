/* Quantised weight rows times 8-bit-quantised x rows, AVX2 (x86-64-v3).
 *
 * Per block of 32 weights and x row m (see quant.h):
 *     sum_i w_i x_i = d_w dx_b sum_i q_i qx_i - offset_w * dx_b sum_i qx_i
 * The integer sum is vpmaddubsw (unsigned 8-bit q times signed 8-bit qx, pairs
 * summed to 16 bits) then vpmaddwd against ones (or against the sub-block's
 * integer scale) to 8 lanes of 32 bits, converted and multiply-added into a
 * float accumulator with the block's d_w dx_b. Weights unpack to unsigned
 * levels (nibbles, nibble + fifth bit, 6-bit levels) so the maddubs operand
 * order needs no sign trick, except Q8_0 whose signed q goes through
 * |q| and sign(qx, q). Offsets (Q4_0's 8, Q5_0's 16, Q6_K's 32, Q4_K's minima)
 * use the precomputed sums of qx and are subtracted once per row in scalar.
 *
 * Bounds: maddubs pairs reach 2*63*127 = 16002 (Q6_K) or 2*128*127 = 32512
 * (Q8_0's |-128|, never produced by our quantiser but legal in a file): below
 * the int16 saturation. vpmaddwd with a Q6_K scale (|s| <= 128) stays far
 * inside int32.
 *
 * Up to 4 x rows share one pass over a weight row: the unpacking is done once
 * per block for all of them. The weight stream is prefetched QG_PREFETCH bytes
 * ahead (the existing 16-bit GEMV measured the same gain). */
#include "ops/cpu/quant.h"
#include "ops/cpu/vec_math.h"
#include "core/tensor.h"

#include <immintrin.h>
#include <string.h>

enum { QG_PREFETCH = 1024, QG_XROWS = 4 };

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 8 lanes of int32: pairs of u8*s8 summed, then pairs of those summed */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* The 32 fifth bits of a Q5_0 block as 0x10 in the bytes whose bit is set. */
static inline __m256i q5_high_bits(uint32_t bits) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                            3, 3, 3, 3, 3, 3, 3);
    const __m256i select = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(v, select), select);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* The accumulator of x row r for block b. A single x row (decode) rotates
 * over four independent chains: with one, every block waits for the previous
 * block's FMA; several rows are independent chains already. Every loop over
 * rows and blocks inside a step is unrolled (UNROLL), so that mb, the row and
 * the slot are constants and the accumulators live in registers: indexed by a
 * run-time value they were kept on the stack, and the store/reload of each
 * FMA's accumulator bound the kernels at ~21 G weights/s per core. */
#define SLOT(mb, r, b) ((mb) == 1 ? (int)((b) & 3) : (r))
#define UNROLL _Pragma("GCC unroll 8")

/* The sum of the chains of row r. */
static inline __m256 row_total(const __m256 *acc, int mb, int r) {
    if (mb != 1) return acc[r];
    return _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
}

typedef struct {
    const int8_t *q[QG_XROWS];
    const float *d[QG_XROWS], *s[QG_XROWS];
    const int16_t *s16[QG_XROWS];
} xrows;

static inline __attribute__((always_inline)) void row_q8_0(const uint8_t *w, const xrows *x, int64_t nb, int mb,
                                                           float *out) {
    __m256 acc[QG_XROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b0 = 0; b0 < nb; b0 += 4) {
        UNROLL for (int j = 0; j < 4; j++) {
            int64_t b = b0 + j;
            if (b >= nb) break;
            const uint8_t *blk = w + 34 * b;
            _mm_prefetch((const char *)blk + QG_PREFETCH, _MM_HINT_T0);
            __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 2));
            __m256i aq = _mm256_sign_epi8(q, q);
            float dw = f16_at(blk);
            UNROLL for (int r = 0; r < mb; r++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x->q[r] + 32 * b));
                __m256i p = dot_u8s8(aq, _mm256_sign_epi8(xv, q));
                int k = SLOT(mb, r, j);
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * x->d[r][b]), acc[k]);
            }
        }
    }
    UNROLL for (int r = 0; r < mb; r++) out[r] = hsum8(row_total(acc, mb, r));
}

/* Q4_0 (high = 0, offset 8) and Q5_0 (fifth bits, offset 16) */
static inline __attribute__((always_inline)) void row_q4_q5_0(const uint8_t *w, const xrows *x, int64_t nb, int mb,
                                                              int five, float *out) {
    __m256 acc[QG_XROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float corr[QG_XROWS] = {0, 0, 0, 0};
    const __m256i low4 = _mm256_set1_epi8(15);
    size_t bytes = five ? 22 : 18;
    for (int64_t b0 = 0; b0 < nb; b0 += 4) {
        UNROLL for (int j = 0; j < 4; j++) {
            int64_t b = b0 + j;
            if (b >= nb) break;
            const uint8_t *blk = w + bytes * (size_t)b;
            _mm_prefetch((const char *)blk + QG_PREFETCH, _MM_HINT_T0);
            __m128i raw = _mm_loadu_si128((const __m128i *)(blk + (five ? 6 : 2)));
            __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
            if (five) {
                uint32_t bits;
                memcpy(&bits, blk + 2, 4);
                q = _mm256_or_si256(q, q5_high_bits(bits));
            }
            float dw = f16_at(blk);
            UNROLL for (int r = 0; r < mb; r++) {
                __m256i p = dot_u8s8(q, _mm256_loadu_si256((const __m256i *)(x->q[r] + 32 * b)));
                int k = SLOT(mb, r, j);
                acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * x->d[r][b]), acc[k]);
                corr[r] += dw * x->s[r][b];
            }
        }
    }
    float offset = five ? 16.0f : 8.0f;
    UNROLL for (int r = 0; r < mb; r++) out[r] = hsum8(row_total(acc, mb, r)) - offset * corr[r];
}

/* Q4_K: the 8 scales and mins of a super-block unpacked with 32-bit masks
 * (bytes 0-3: scale j low 6 bits, top 2 = scale j+4's high bits; bytes 4-7
 * the same for mins; bytes 8-11: scale/min j+4 low nibbles), widened to
 * floats at once; per x row the 8 products d sc_j dx_b in one multiply, the
 * minima's term dmin m_j (dx_b sum qx) as one vector multiply-add. */
static inline __attribute__((always_inline)) void row_q4_k(const uint8_t *w, const xrows *x, int64_t nb, int mb,
                                                           float *out) {
    __m256 acc[QG_XROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 corr[QG_XROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i low4 = _mm256_set1_epi8(15);
    for (int64_t s = 0; s < nb / 8; s++, w += 144) {
        _mm_prefetch((const char *)w + QG_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QG_PREFETCH + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QG_PREFETCH + 128, _MM_HINT_T0);
        uint32_t a[3];
        memcpy(a, w + 4, 12);
        uint32_t sc_lo = a[0] & 0x3f3f3f3fu, mn_lo = a[1] & 0x3f3f3f3fu;
        uint32_t sc_hi = (a[2] & 0x0f0f0f0fu) | ((a[0] >> 6) & 0x03030303u) << 4;
        uint32_t mn_hi = ((a[2] >> 4) & 0x0f0f0f0fu) | ((a[1] >> 6) & 0x03030303u) << 4;
        __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sc_hi, (int)sc_lo)));
        __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)mn_hi, (int)mn_lo)));
        __m256 ds = _mm256_mul_ps(sc, _mm256_set1_ps(f16_at(w)));
        __m256 dm = _mm256_mul_ps(mn, _mm256_set1_ps(f16_at(w + 2)));
        float f[QG_XROWS][8];
        UNROLL for (int r = 0; r < mb; r++) {
            _mm256_storeu_ps(f[r], _mm256_mul_ps(ds, _mm256_loadu_ps(x->d[r] + 8 * s)));
            corr[r] = _mm256_fmadd_ps(dm, _mm256_loadu_ps(x->s[r] + 8 * s), corr[r]);
        }
        UNROLL for (int c = 0; c < 4; c++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * c));
            __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            const int64_t b = 8 * s + 2 * c;
            UNROLL for (int r = 0; r < mb; r++) {
                __m256i p0 = dot_u8s8(lo, _mm256_loadu_si256((const __m256i *)(x->q[r] + 32 * b)));
                __m256i p1 = dot_u8s8(hi, _mm256_loadu_si256((const __m256i *)(x->q[r] + 32 * b + 32)));
                int k0 = SLOT(mb, r, 2 * c), k1 = SLOT(mb, r, 2 * c + 1);
                acc[k0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_broadcast_ss(&f[r][2 * c]), acc[k0]);
                acc[k1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_broadcast_ss(&f[r][2 * c + 1]), acc[k1]);
            }
        }
    }
    UNROLL for (int r = 0; r < mb; r++) out[r] = hsum8(_mm256_sub_ps(row_total(acc, mb, r), corr[r]));
}

/* Q6_K: per super-block, the offsets 32 d dx_b (s_2b qsum_2b + s_2b+1 qsum_2b+1)
 * of its 8 x blocks come from one vpmaddwd of the 16 scales with the 16 sums
 * of qx, and the 8 products d dx_b from one multiply. */
static inline __attribute__((always_inline)) void row_q6_k(const uint8_t *w, const xrows *x, int64_t nb, int mb,
                                                           float *out) {
    __m256 acc[QG_XROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 corr[QG_XROWS] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i low4 = _mm256_set1_epi8(15), top2 = _mm256_set1_epi8(0x30);
    for (int64_t s = 0; s < nb / 8; s++, w += 210) {
        _mm_prefetch((const char *)w + QG_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QG_PREFETCH + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QG_PREFETCH + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QG_PREFETCH + 192, _MM_HINT_T0);
        __m256 d = _mm256_set1_ps(f16_at(w + 208));
        const int8_t *sc = (const int8_t *)(w + 192);
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        float f[QG_XROWS][8];
        UNROLL for (int r = 0; r < mb; r++) {
            __m256 fd = _mm256_mul_ps(d, _mm256_loadu_ps(x->d[r] + 8 * s));
            _mm256_storeu_ps(f[r], fd);
            __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(x->s16[r] + 16 * s)));
            corr[r] = _mm256_fmadd_ps(_mm256_mul_ps(fd, _mm256_set1_ps(32.0f)), _mm256_cvtepi32_ps(off), corr[r]);
        }
        UNROLL for (int h = 0; h < 2; h++) {
            __m256i A = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
            __m256i B = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
            __m256i H = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(A, low4), _mm256_and_si256(_mm256_slli_epi16(H, 4), top2)),
                _mm256_or_si256(_mm256_and_si256(B, low4), _mm256_and_si256(_mm256_slli_epi16(H, 2), top2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), low4), _mm256_and_si256(H, top2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), low4),
                                _mm256_and_si256(_mm256_srli_epi16(H, 2), top2)),
            };
            UNROLL for (int t = 0; t < 4; t++) {
                __m256i scale = _mm256_set_m128i(_mm_set1_epi16(sc[8 * h + 2 * t + 1]), _mm_set1_epi16(sc[8 * h + 2 * t]));
                const int bl = 4 * h + t;
                UNROLL for (int r = 0; r < mb; r++) {
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(x->q[r] + 32 * (8 * s + bl)));
                    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[t], xv), scale);
                    int k = SLOT(mb, r, bl);
                    acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(&f[r][bl]), acc[k]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < mb; r++) out[r] = hsum8(_mm256_sub_ps(row_total(acc, mb, r), corr[r]));
}

static inline __attribute__((always_inline)) void row_dispatch(const uint8_t *w, tuna_dtype type, const xrows *x,
                                                               int64_t nb, int mb, float *out) {
    switch (type) {
    case TUNA_Q8_0: row_q8_0(w, x, nb, mb, out); break;
    case TUNA_Q4_0: row_q4_q5_0(w, x, nb, mb, 0, out); break;
    case TUNA_Q5_0: row_q4_q5_0(w, x, nb, mb, 1, out); break;
    case TUNA_Q4_K: row_q4_k(w, x, nb, mb, out); break;
    case TUNA_Q6_K: row_q6_k(w, x, nb, mb, out); break;
    default:
        for (int r = 0; r < mb; r++) out[r] = 0.0f;
        break;
    }
}

void tuna_qgemv_avx2(float *y, int64_t y_stride, const void *w, tuna_dtype type, const tuna_q8_act *a,
                     const float *bias, int64_t n_begin, int64_t n_end) {
    int64_t K = a->K, nb = K / 32;
    size_t row_bytes = tuna_dtype_bytes_for(type, K);
    for (int64_t n = n_begin; n < n_end; n++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)n * row_bytes;
        for (int64_t m0 = 0; m0 < a->rows; m0 += QG_XROWS) {
            int mb = a->rows - m0 >= QG_XROWS ? QG_XROWS : (int)(a->rows - m0);
            xrows x;
            for (int r = 0; r < mb; r++) {
                x.q[r] = a->q + (m0 + r) * K;
                x.d[r] = a->d + (m0 + r) * nb;
                x.s[r] = a->s + (m0 + r) * nb;
                x.s16[r] = a->s16 + (m0 + r) * 2 * nb;
            }
            float out[QG_XROWS];
            switch (mb) {
            case 4: row_dispatch(row, type, &x, nb, 4, out); break;
            case 3: row_dispatch(row, type, &x, nb, 3, out); break;
            case 2: row_dispatch(row, type, &x, nb, 2, out); break;
            default: row_dispatch(row, type, &x, nb, 1, out); break;
            }
            for (int r = 0; r < mb; r++) y[(m0 + r) * y_stride + n] = out[r] + (bias ? bias[n] : 0.0f);
        }
    }
}

/* ---- dequantisation (the prefill path widens blocks of W for OpenBLAS) ------
 * The same float operations as the scalar dequantisers (quant.c), in the same
 * order (a multiply, then for Q4_K a separate subtract: no fused multiply-add),
 * so both give identical values. */

static inline void store_scaled(float *y, __m256i q8x32, __m256 scale) { /* 32 int8 -> 32 floats * scale */
    __m128i lo = _mm256_castsi256_si128(q8x32), hi = _mm256_extracti128_si256(q8x32, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), scale));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), scale));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), scale));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), scale));
}

static inline void store_scaled_min(float *y, __m256i q8x32, __m256 scale, __m256 min) { /* (q * scale) - min */
    __m128i lo = _mm256_castsi256_si128(q8x32), hi = _mm256_extracti128_si256(q8x32, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int i = 0; i < 4; i++)
        _mm256_storeu_ps(y + 8 * i,
                         _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[i])), scale), min));
}

int tuna_dequantize_row_avx2(tuna_dtype type, const void *src, float *y, int64_t n) {
    const uint8_t *w = src;
    const __m256i low4 = _mm256_set1_epi8(15), top2 = _mm256_set1_epi8(0x30);
    switch (type) {
    case TUNA_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, w += 34, y += 32)
            store_scaled(y, _mm256_loadu_si256((const __m256i *)(w + 2)), _mm256_set1_ps(f16_at(w)));
        return 0;
    case TUNA_Q4_0:
    case TUNA_Q5_0: {
        int five = type == TUNA_Q5_0;
        for (int64_t b = 0; b < n / 32; b++, w += five ? 22 : 18, y += 32) {
            __m128i raw = _mm_loadu_si128((const __m128i *)(w + (five ? 6 : 2)));
            __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
            if (five) {
                uint32_t bits;
                memcpy(&bits, w + 2, 4);
                q = _mm256_or_si256(q, q5_high_bits(bits));
            }
            q = _mm256_sub_epi8(q, _mm256_set1_epi8(five ? 16 : 8));
            store_scaled(y, q, _mm256_set1_ps(f16_at(w)));
        }
        return 0;
    }
    case TUNA_Q4_K:
        for (int64_t s = 0; s < n / 256; s++, w += 144) {
            float d = f16_at(w), dmin = f16_at(w + 2);
            const uint8_t *sm = w + 4;
            for (int c = 0; c < 4; c++, y += 64) {
                int sc[2], mn[2];
                for (int h = 0; h < 2; h++) {
                    int j = 2 * c + h;
                    sc[h] = j < 4 ? sm[j] & 63 : (sm[j + 4] & 15) | (sm[j - 4] >> 6) << 4;
                    mn[h] = j < 4 ? sm[j + 4] & 63 : (sm[j + 4] >> 4) | (sm[j] >> 6) << 4;
                }
                __m256i raw = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * c));
                store_scaled_min(y, _mm256_and_si256(raw, low4), _mm256_set1_ps(d * (float)sc[0]),
                                 _mm256_set1_ps(dmin * (float)mn[0]));
                store_scaled_min(y + 32, _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4),
                                 _mm256_set1_ps(d * (float)sc[1]), _mm256_set1_ps(dmin * (float)mn[1]));
            }
        }
        return 0;
    case TUNA_Q6_K:
        for (int64_t s = 0; s < n / 256; s++, w += 210) {
            float d = f16_at(w + 208);
            const int8_t *sc = (const int8_t *)(w + 192);
            for (int h = 0; h < 2; h++, y += 128) {
                __m256i A = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
                __m256i B = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
                __m256i H = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
                __m256i q[4] = {
                    _mm256_or_si256(_mm256_and_si256(A, low4), _mm256_and_si256(_mm256_slli_epi16(H, 4), top2)),
                    _mm256_or_si256(_mm256_and_si256(B, low4), _mm256_and_si256(_mm256_slli_epi16(H, 2), top2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), low4), _mm256_and_si256(H, top2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), low4),
                                    _mm256_and_si256(_mm256_srli_epi16(H, 2), top2)),
                };
                for (int t = 0; t < 4; t++) {
                    __m256i v = _mm256_sub_epi8(q[t], _mm256_set1_epi8(32));
                    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                    __m256 s0 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * t]), s1 = _mm256_set1_ps(d * (float)sc[8 * h + 2 * t + 1]);
                    float *o = y + 32 * t;
                    _mm256_storeu_ps(o, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                    _mm256_storeu_ps(o + 8, _mm256_mul_ps(s0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                    _mm256_storeu_ps(o + 16, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                    _mm256_storeu_ps(o + 24, _mm256_mul_ps(s1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
                }
            }
        }
        return 0;
    default: return -1;
    }
}
