/* Image quality metrics for tests, evaluation and `tuna demo`.
 *
 * PSNR  = 10 log10(R^2 / MSE), MSE over every pixel and channel; +INFINITY for
 *         identical images. On uint8 images R = 255; on float images in [-1, 1]
 *         R = 2 (the same number as on the [0, 255] values they stand for).
 * SSIM  = Wang et al. 2004, computed as skimage.metrics.structural_similarity(
 *         a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
 *         data_range=255, channel_axis=2): per channel, Gaussian-weighted local
 *         means/variances (11x11 window: sigma 1.5 truncated at 3.5 sigma, i.e.
 *         radius 5), K1 = 0.01, K2 = 0.03, the SSIM map averaged over the pixels at
 *         least 5 from the border, then the mean over the 3 channels.
 * Both work in double precision. */
#ifndef TUNA_INFER_METRICS_H
#define TUNA_INFER_METRICS_H

#include "core/status.h"
#include "io/image.h"

/* PSNR in dB of two same-size uint8 RGB images (R = 255). */
tuna_status tuna_psnr(const tuna_image *a, const tuna_image *b, double *psnr_db, tuna_error *err);
/* PSNR in dB of two float arrays of n values in [-1, 1] (R = 2; no clamping). */
double tuna_psnr_float(const float *a, const float *b, long n);

/* Mean SSIM of two same-size uint8 RGB images (data range 255); both sides >= 11. */
tuna_status tuna_ssim(const tuna_image *a, const tuna_image *b, double *ssim, tuna_error *err);

#endif
