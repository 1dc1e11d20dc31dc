/* PSNR and SSIM; see metrics.h for the definitions matched. */
#include "infer/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static tuna_status check_pair(const tuna_image *a, const tuna_image *b, tuna_error *err) {
    if (!a || !b || !a->rgb || !b->rgb) return tuna_fail(err, TUNA_ERR_INVALID, "metric on an empty image");
    if (a->width != b->width || a->height != b->height)
        return tuna_fail(err, TUNA_ERR_INVALID, "metric on images of different sizes (%dx%d vs %dx%d)", a->width,
                         a->height, b->width, b->height);
    return TUNA_OK;
}

static double psnr_from_mse(double mse, double range) {
    if (mse <= 0.0) return INFINITY;
    return 10.0 * log10(range * range / mse);
}

tuna_status tuna_psnr(const tuna_image *a, const tuna_image *b, double *psnr_db, tuna_error *err) {
    TUNA_TRY(check_pair(a, b, err));
    size_t n = (size_t)a->width * a->height * 3;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a->rgb[i] - (double)b->rgb[i];
        sum += d * d;
    }
    *psnr_db = psnr_from_mse(sum / (double)n, 255.0);
    return TUNA_OK;
}

double tuna_psnr_float(const float *a, const float *b, long n) {
    if (n <= 0) return NAN;
    double sum = 0.0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        sum += d * d;
    }
    return psnr_from_mse(sum / (double)n, 2.0);
}

/* scipy.ndimage Gaussian kernel: exp(-x^2 / (2 sigma^2)) for |x| <= radius, normalised. */
#define SSIM_RADIUS 5
#define SSIM_TAPS (2 * SSIM_RADIUS + 1)

static void ssim_kernel(double k[SSIM_TAPS]) {
    const double sigma = 1.5;
    double total = 0.0;
    for (int i = 0; i < SSIM_TAPS; i++) {
        double x = i - SSIM_RADIUS;
        k[i] = exp(-0.5 * x * x / (sigma * sigma));
        total += k[i];
    }
    for (int i = 0; i < SSIM_TAPS; i++) k[i] /= total;
}

/* Mean SSIM of one channel over the interior [r, H-r) x [r, W-r). Only the
 * interior is averaged, and its window never leaves the image, so the border
 * mode of the filter (reflect in skimage) never enters the result. */
static double ssim_channel(const uint8_t *a, const uint8_t *b, int w, int h, int c, double *rows) {
    const double C1 = (0.01 * 255) * (0.01 * 255), C2 = (0.03 * 255) * (0.03 * 255);
    double k[SSIM_TAPS];
    ssim_kernel(k);
    int iw = w - 2 * SSIM_RADIUS; /* interior columns */
    /* Pass 1: filter along x for every row -> 5 planes [h][iw]: a, b, aa, bb, ab. */
    size_t plane = (size_t)h * iw;
    double *pa = rows, *pb = rows + plane, *paa = rows + 2 * plane, *pbb = rows + 3 * plane, *pab = rows + 4 * plane;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < iw; x++) {
            double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
            for (int t = 0; t < SSIM_TAPS; t++) {
                size_t idx = ((size_t)y * w + x + t) * 3 + c;
                double va = a[idx], vb = b[idx];
                sa += k[t] * va;
                sb += k[t] * vb;
                saa += k[t] * (va * va);
                sbb += k[t] * (vb * vb);
                sab += k[t] * (va * vb);
            }
            size_t o = (size_t)y * iw + x;
            pa[o] = sa; pb[o] = sb; paa[o] = saa; pbb[o] = sbb; pab[o] = sab;
        }
    }
    /* Pass 2: along y for the interior rows, and the SSIM map. */
    double total = 0.0;
    for (int y = SSIM_RADIUS; y < h - SSIM_RADIUS; y++) {
        for (int x = 0; x < iw; x++) {
            double ux = 0, uy = 0, uxx = 0, uyy = 0, uxy = 0;
            for (int t = 0; t < SSIM_TAPS; t++) {
                size_t o = (size_t)(y - SSIM_RADIUS + t) * iw + x;
                ux += k[t] * pa[o];
                uy += k[t] * pb[o];
                uxx += k[t] * paa[o];
                uyy += k[t] * pbb[o];
                uxy += k[t] * pab[o];
            }
            double vx = uxx - ux * ux, vy = uyy - uy * uy, vxy = uxy - ux * uy;
            double num = (2 * ux * uy + C1) * (2 * vxy + C2);
            double den = (ux * ux + uy * uy + C1) * (vx + vy + C2);
            total += num / den;
        }
    }
    return total / ((double)(h - 2 * SSIM_RADIUS) * iw);
}

tuna_status tuna_ssim(const tuna_image *a, const tuna_image *b, double *ssim, tuna_error *err) {
    TUNA_TRY(check_pair(a, b, err));
    if (a->width < SSIM_TAPS || a->height < SSIM_TAPS)
        return tuna_fail(err, TUNA_ERR_INVALID, "SSIM needs images of at least %dx%d, got %dx%d", SSIM_TAPS,
                         SSIM_TAPS, a->width, a->height);
    size_t plane = (size_t)a->height * (size_t)(a->width - 2 * SSIM_RADIUS);
    double *scratch = malloc(plane * 5 * sizeof *scratch);
    if (!scratch) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for SSIM");
    double sum = 0.0;
    for (int c = 0; c < 3; c++) sum += ssim_channel(a->rgb, b->rgb, a->width, a->height, c, scratch);
    free(scratch);
    *ssim = sum / 3.0;
    return TUNA_OK;
}
