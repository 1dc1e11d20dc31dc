/* Bicubic resampling exactly as PIL's Image.resize(size, Image.BICUBIC), and the
 * reference's two resize-then-centre-crop recipes (see image.h).
 *
 * PIL's algorithm (libImaging/Resample.c), reproduced here from its definition:
 *   scale = in / out; filterscale = max(scale, 1); support = 2 * filterscale
 *   (the cubic kernel is stretched when shrinking, so it also low-pass filters:
 *   "antialiasing"). For output index i:
 *     center = (i + 0.5) * scale
 *     taps j in [int(center - support + 0.5), int(center + support + 0.5)) clipped to [0, in)
 *     w_j = K((j - center + 0.5) / filterscale), normalised to sum 1
 *   with Keys' cubic K (a = -0.5):
 *     |x| < 1: (a+2)|x|^3 - (a+3)|x|^2 + 1;  1 <= |x| < 2: a(|x|^3 - 5|x|^2 + 8|x| - 4)
 *   The weights become fixed point with 22 fraction bits (rounded away from 0);
 *   each output is (2^21 + sum in_j * w_j) >> 22 clamped to 0..255. The
 *   first pass's uint8 result feeds the second; a pass whose size does not
 *   change is skipped. Pass order: horizontal first, except (Pillow >= 12) when
 *   the height loses more than twice as many pixels as the width. Checked
 *   against Pillow 13.0.0's libImaging/Resample.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"

#define RESAMPLE_PRECISION_BITS (32 - 8 - 2)

typedef struct {
    int ksize;       /* taps per output sample (the stride of weights) */
    int *bounds;     /* [out][2]: first input index, number of taps */
    int32_t *weights; /* [out][ksize] fixed point */
} resample_plan;

static double keys_cubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static void resample_plan_free(resample_plan *p) {
    free(p->bounds);
    free(p->weights);
    memset(p, 0, sizeof *p);
}

static tuna_status resample_plan_build(int in_size, int out_size, resample_plan *p, tuna_error *err) {
    memset(p, 0, sizeof *p);
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *taps = malloc((size_t)ksize * sizeof *taps);
    p->bounds = malloc((size_t)out_size * 2 * sizeof *p->bounds);
    p->weights = malloc((size_t)out_size * (size_t)ksize * sizeof *p->weights);
    if (!taps || !p->bounds || !p->weights) {
        free(taps);
        resample_plan_free(p);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for resampling weights");
    }
    p->ksize = ksize;
    double inv_filterscale = 1.0 / filterscale;
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        int first = (int)(center - support + 0.5);
        if (first < 0) first = 0;
        int last = (int)(center + support + 0.5);
        if (last > in_size) last = in_size;
        int count = last - first;
        double total = 0.0;
        for (int j = 0; j < count; j++) {
            taps[j] = keys_cubic((j + first - center + 0.5) * inv_filterscale);
            total += taps[j];
        }
        int32_t *w = p->weights + (size_t)i * ksize;
        for (int j = 0; j < ksize; j++) {
            double v = j < count ? (total != 0.0 ? taps[j] / total : taps[j]) : 0.0;
            double fixed = v * (1 << RESAMPLE_PRECISION_BITS);
            w[j] = (int32_t)(v < 0 ? fixed - 0.5 : fixed + 0.5);
        }
        p->bounds[2 * i] = first;
        p->bounds[2 * i + 1] = count;
    }
    free(taps);
    return TUNA_OK;
}

static inline uint8_t resample_clip(int32_t sum) {
    int32_t v = sum >> RESAMPLE_PRECISION_BITS; /* arithmetic shift: floor */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void resample_horizontal(const uint8_t *in, int in_w, int height, uint8_t *out, int out_w,
                                const resample_plan *p) {
    for (int y = 0; y < height; y++) {
        const uint8_t *row = in + (size_t)y * in_w * 3;
        uint8_t *dst = out + (size_t)y * out_w * 3;
        for (int x = 0; x < out_w; x++) {
            int first = p->bounds[2 * x], count = p->bounds[2 * x + 1];
            const int32_t *w = p->weights + (size_t)x * p->ksize;
            int32_t s0 = 1 << (RESAMPLE_PRECISION_BITS - 1), s1 = s0, s2 = s0;
            const uint8_t *src = row + (size_t)first * 3;
            for (int j = 0; j < count; j++) {
                s0 += src[3 * j + 0] * w[j];
                s1 += src[3 * j + 1] * w[j];
                s2 += src[3 * j + 2] * w[j];
            }
            dst[3 * x + 0] = resample_clip(s0);
            dst[3 * x + 1] = resample_clip(s1);
            dst[3 * x + 2] = resample_clip(s2);
        }
    }
}

static void resample_vertical(const uint8_t *in, int width, uint8_t *out, int out_h, const resample_plan *p) {
    size_t stride = (size_t)width * 3;
    for (int y = 0; y < out_h; y++) {
        int first = p->bounds[2 * y], count = p->bounds[2 * y + 1];
        const int32_t *w = p->weights + (size_t)y * p->ksize;
        uint8_t *dst = out + (size_t)y * stride;
        for (size_t x = 0; x < stride; x++) {
            int32_t s = 1 << (RESAMPLE_PRECISION_BITS - 1);
            const uint8_t *src = in + (size_t)first * stride + x;
            for (int j = 0; j < count; j++) s += src[(size_t)j * stride] * w[j];
            dst[x] = resample_clip(s);
        }
    }
}

static tuna_status image_copy(const tuna_image *src, tuna_image *dst, tuna_error *err) {
    TUNA_TRY(tuna_image_alloc(dst, src->width, src->height, err));
    memcpy(dst->rgb, src->rgb, (size_t)src->width * src->height * 3);
    return TUNA_OK;
}

tuna_status tuna_image_resize_bicubic(const tuna_image *src, int out_w, int out_h, tuna_image *dst,
                                      tuna_error *err) {
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || src->width <= 0 || src->height <= 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "cannot resize an empty image");
    if (out_w <= 0 || out_h <= 0 || out_w > 65536 || out_h > 65536)
        return tuna_fail(err, TUNA_ERR_INVALID, "resize target %dx%d out of range", out_w, out_h);
    int need_h = out_w != src->width, need_v = out_h != src->height;
    if (!need_h && !need_v) return image_copy(src, dst, err);

    /* Pillow >= 12 runs the vertical pass first when the height shrinks by more
     * than twice as many pixels as the width (it makes the horizontal pass
     * cheaper); the order changes the uint8 rounding in between, so follow it. */
    int shrink_h = src->height - out_h, shrink_w = src->width - out_w;
    int vertical_first = shrink_h > 0 && shrink_h > shrink_w * 2;
    resample_plan plan_h = {0}, plan_v = {0};
    tuna_image mid = {0};
    tuna_status s = TUNA_OK;
    if (need_h) s = resample_plan_build(src->width, out_w, &plan_h, err);
    if (s == TUNA_OK && need_v) s = resample_plan_build(src->height, out_h, &plan_v, err);
    if (s == TUNA_OK && need_h && need_v)
        s = vertical_first ? tuna_image_alloc(&mid, src->width, out_h, err) : tuna_image_alloc(&mid, out_w, src->height, err);
    if (s == TUNA_OK) s = tuna_image_alloc(dst, out_w, out_h, err);
    if (s == TUNA_OK) {
        if (need_h && need_v && vertical_first) {
            resample_vertical(src->rgb, src->width, mid.rgb, out_h, &plan_v);
            resample_horizontal(mid.rgb, src->width, out_h, dst->rgb, out_w, &plan_h);
        } else if (need_h && need_v) {
            resample_horizontal(src->rgb, src->width, src->height, mid.rgb, out_w, &plan_h);
            resample_vertical(mid.rgb, out_w, dst->rgb, out_h, &plan_v);
        } else if (need_h) {
            resample_horizontal(src->rgb, src->width, src->height, dst->rgb, out_w, &plan_h);
        } else {
            resample_vertical(src->rgb, src->width, dst->rgb, out_h, &plan_v);
        }
    } else {
        tuna_image_free(dst);
    }
    resample_plan_free(&plan_h);
    resample_plan_free(&plan_v);
    tuna_image_free(&mid);
    return s;
}

tuna_status tuna_image_crop(const tuna_image *src, int left, int top, int w, int h, tuna_image *dst,
                            tuna_error *err) {
    TUNA_TRY(tuna_image_alloc(dst, w, h, err)); /* zeroed: outside src stays black */
    for (int y = 0; y < h; y++) {
        int sy = top + y;
        if (sy < 0 || sy >= src->height) continue;
        int x0 = left < 0 ? -left : 0;
        int x1 = src->width - left < w ? src->width - left : w;
        if (x1 <= x0) continue;
        memcpy(dst->rgb + ((size_t)y * w + x0) * 3, src->rgb + ((size_t)sy * src->width + left + x0) * 3,
               (size_t)(x1 - x0) * 3);
    }
    return TUNA_OK;
}

tuna_status tuna_image_resize_crop_mode(const tuna_image *src, int out_h, int out_w, tuna_crop_mode mode,
                                        tuna_image *dst, tuna_error *err) {
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || src->width <= 0 || src->height <= 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "cannot resize an empty image");
    if (out_w <= 0 || out_h <= 0 || out_w > 65536 || out_h > 65536)
        return tuna_fail(err, TUNA_ERR_INVALID, "crop target %dx%d out of range", out_w, out_h);
    int w = src->width, h = src->height;
    int new_w, new_h, left, top;
    switch (mode) {
    case TUNA_CROP_NONE: return tuna_image_resize_bicubic(src, out_w, out_h, dst, err);
    case TUNA_CROP_COVER: {
        /* runner.py _resize_center_crop: Python round() is half-to-even, as rint(). */
        double sx = (double)out_w / w, sy = (double)out_h / h;
        double scale = sx > sy ? sx : sy;
        double fw = rint(w * scale), fh = rint(h * scale);
        if (fw > 65536 || fh > 65536) return tuna_fail(err, TUNA_ERR_LIMIT, "resize of %dx%d to cover %dx%d is too large", w, h, out_w, out_h);
        new_w = (int)fw;
        new_h = (int)fh;
        left = (new_w - out_w) / 2; /* new >= out, so C division is Python's // */
        top = (new_h - out_h) / 2;
        break;
    }
    case TUNA_CROP_SHORT_SIDE: {
        /* torchvision Resize(size = min(H, W)): the short side becomes size, the long
         * side int(size * long / short) (truncation). */
        int size = out_h < out_w ? out_h : out_w;
        int shorter = w <= h ? w : h, longer = w <= h ? h : w;
        double fl = floor((double)size * (double)longer / (double)shorter);
        if (fl > 65536) return tuna_fail(err, TUNA_ERR_LIMIT, "resize of %dx%d is too large", w, h);
        int new_long = (int)fl;
        new_w = w <= h ? size : new_long;
        new_h = w <= h ? new_long : size;
        /* torchvision CenterCrop: pad with zeros by (crop - size) // 2 on the left/top
         * where the image is smaller, then offset int(round((size - crop) / 2)). */
        left = out_w > new_w ? -((out_w - new_w) / 2) : (int)rint((new_w - out_w) / 2.0);
        top = out_h > new_h ? -((out_h - new_h) / 2) : (int)rint((new_h - out_h) / 2.0);
        break;
    }
    default: return tuna_fail(err, TUNA_ERR_INVALID, "unknown crop mode %d", (int)mode);
    }
    tuna_image resized;
    TUNA_TRY(tuna_image_resize_bicubic(src, new_w, new_h, &resized, err));
    tuna_status s = tuna_image_crop(&resized, left, top, out_w, out_h, dst, err);
    tuna_image_free(&resized);
    return s;
}

tuna_status tuna_image_resize_crop(const tuna_image *src, int out_h, int out_w, tuna_image *dst,
                                   tuna_error *err) {
    return tuna_image_resize_crop_mode(src, out_h, out_w, TUNA_CROP_COVER, dst, err);
}
