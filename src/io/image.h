/* Images in and out: PNG/JPEG decoding of untrusted bytes, the reference's
 * resize + centre crop to a bucket, conversion to/from the model's float
 * [-1, 1] CHW tensors, PNG writing, and a grid compositor for `tuna demo`.
 *
 * What the reference (facebookresearch/tuna-2) does, and what we match:
 *   decode    PIL Image.open(...).convert("RGB"): gray is replicated, palette is
 *             looked up, alpha (and tRNS) is DROPPED, never composited on a
 *             background; 16-bit samples keep their high byte; no gamma, no ICC,
 *             no EXIF rotation.
 *   bucket    SPEC section 4; tuna/inference/runner.py (mmu, height="auto") and
 *             tuna/data/datasets/ti_dataset.py (multi_resolution): the bucket whose
 *             W/H is nearest the image's W/H, |b_w/b_h - w/h|, first one on a tie.
 *   resize    PIL Image.resize(BICUBIC): Keys cubic a=-0.5, support scaled by the
 *             downscale factor (antialiased), separable, horizontal pass first,
 *             fixed-point weights, uint8 rounding after each pass. Exact to PIL.
 *   crop      inference (runner.py _resize_center_crop): scale to cover the bucket
 *             with round(), crop at floor((new - target) / 2). Training
 *             (transforms.py build_image_transform): torchvision Resize(min(H, W))
 *             with int() truncation, then CenterCrop with round-half-even offsets
 *             and zero padding when the resized image is smaller than the crop.
 *   tensor    ToTensor + Normalize(0.5, 0.5): (x / 255 - 0.5) / 0.5 in f32.
 *   output    pipelines/_common.py denorm: clamp((x + 1) / 2, 0, 1) * 255, then
 *             astype(uint8), i.e. TRUNCATION (not rounding).
 * See docs/images.md. */
#ifndef TUNA_IO_IMAGE_H
#define TUNA_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC). */
typedef struct {
    int width;
    int height;
    uint8_t *rgb; /* owned: width * height * 3 bytes, freed by tuna_image_free */
} tuna_image;

/* Refusal limits for untrusted input, checked against the DECLARED size in the
 * header before any pixel buffer is allocated or any data is decompressed. */
typedef struct {
    int max_side;            /* largest width or height accepted */
    int64_t max_pixels;      /* largest width * height accepted */
    size_t max_chunk_bytes;  /* PNG: largest ancillary chunk (libpng chunk malloc max) */
    int max_jpeg_scans;      /* JPEG: most progressive scans (CPU bomb guard) */
} tuna_image_limits;

#define TUNA_IMAGE_DEFAULT_MAX_SIDE 16384
#define TUNA_IMAGE_DEFAULT_MAX_PIXELS (64ll * 1024 * 1024)

/* 16384 per side, 64 Mpixel, 8 MiB chunks, 1000 scans. */
tuna_image_limits tuna_image_default_limits(void);

typedef enum {
    TUNA_IMAGE_FORMAT_UNKNOWN = 0,
    TUNA_IMAGE_FORMAT_PNG,
    TUNA_IMAGE_FORMAT_JPEG,
} tuna_image_format;

/* By magic bytes: PNG signature, or JPEG SOI (FF D8 FF). */
tuna_image_format tuna_image_detect_format(const uint8_t *bytes, size_t n);

/* Decode PNG or JPEG into 8-bit RGB. limits may be NULL (defaults). On failure
 * *img is left empty (rgb NULL) and nothing leaks. */
tuna_status tuna_image_decode_memory(const uint8_t *bytes, size_t n, const tuna_image_limits *limits,
                                     tuna_image *img, tuna_error *err);
tuna_status tuna_image_decode_file(const char *path, const tuna_image_limits *limits, tuna_image *img,
                                   tuna_error *err);
/* The format-specific decoders (bytes already known to be that format). */
tuna_status tuna_image_decode_png(const uint8_t *bytes, size_t n, const tuna_image_limits *limits,
                                  tuna_image *img, tuna_error *err);
tuna_status tuna_image_decode_jpeg(const uint8_t *bytes, size_t n, const tuna_image_limits *limits,
                                   tuna_image *img, tuna_error *err);

/* A zeroed (black) image. */
tuna_status tuna_image_alloc(tuna_image *img, int width, int height, tuna_error *err);
void tuna_image_free(tuna_image *img);

/* ---- buckets (SPEC section 4) ------------------------------------------- */
typedef struct {
    int height;
    int width;
} tuna_bucket;

/* 512x512, 448x576, 576x448, 384x672, 672x384 (H x W), in the reference's order. */
extern const tuna_bucket tuna_buckets_512[5];
/* 1024x1024, 896x1152, 1152x896, 768x1344, 1344x768. */
extern const tuna_bucket tuna_buckets_1024[5];

/* Index of the bucket whose aspect ratio W/H is nearest the image's (linear
 * distance, the first on a tie), as the reference's mmu "auto" mode and the
 * multi-resolution training dataset do. -1 if n <= 0 or w/h are not positive. */
int tuna_image_pick_bucket(int width, int height, const tuna_bucket *buckets, int n, int *bucket_h,
                           int *bucket_w);

/* ---- resize and crop ------------------------------------------------------ */
/* PIL Image.resize((out_w, out_h), Image.BICUBIC) on an RGB image, bit-exact. */
tuna_status tuna_image_resize_bicubic(const tuna_image *src, int out_w, int out_h, tuna_image *dst,
                                      tuna_error *err);

typedef enum {
    /* runner.py image_transform (understanding and editing inputs at inference):
     * scale = max(W/w, H/h); resize to (round(w*scale), round(h*scale)); crop at
     * ((new_w - W) // 2, (new_h - H) // 2). Always covers: no padding. */
    TUNA_CROP_COVER = 0,
    /* transforms.py build_image_transform (training images and targets):
     * torchvision Resize(min(H, W), BICUBIC) then CenterCrop((H, W)); the crop
     * pads with black where the resized image is smaller than (H, W). */
    TUNA_CROP_SHORT_SIDE,
    /* resize straight to (H, W), ignoring the aspect ratio (centercrop=False). */
    TUNA_CROP_NONE,
} tuna_crop_mode;

/* Resize (bicubic, as PIL) and centre-crop src to exactly out_h x out_w. */
tuna_status tuna_image_resize_crop_mode(const tuna_image *src, int out_h, int out_w, tuna_crop_mode mode,
                                        tuna_image *dst, tuna_error *err);
/* The inference mode (TUNA_CROP_COVER). */
tuna_status tuna_image_resize_crop(const tuna_image *src, int out_h, int out_w, tuna_image *dst,
                                   tuna_error *err);
/* Copy the rectangle [left, left+w) x [top, top+h) of src; parts outside src are black. */
tuna_status tuna_image_crop(const tuna_image *src, int left, int top, int w, int h, tuna_image *dst,
                            tuna_error *err);

/* ---- tensors ------------------------------------------------------------- */
/* chw[c*H*W + y*W + x] = (rgb / 255 - 0.5) / 0.5 in f32, in [-1, 1]. chw holds 3*H*W floats. */
void tuna_image_to_tensor(const tuna_image *img, float *chw);
/* uint8 = (uint8_t)(clamp((x + 1) / 2, 0, 1) * 255) (truncation, as the reference);
 * NaN becomes 0. */
tuna_status tuna_image_from_tensor(const float *chw, int height, int width, tuna_image *img,
                                   tuna_error *err);

/* ---- output -------------------------------------------------------------- */
/* 8-bit RGB PNG written as tuna_write_file_atomic writes ("-": standard output). */
tuna_status tuna_image_write_png(const char *path, const tuna_image *img, tuna_error *err);
/* The same with n_text (at most 16) UTF-8 text chunks key -> value (iTXt, as
 * stable-diffusion.cpp records its parameters); keys are 1 to 79 bytes. */
tuna_status tuna_image_write_png_text(const char *path, const tuna_image *img, const char *const *keys,
                                      const char *const *values, int n_text, tuna_error *err);
/* PNG bytes in a malloc'd buffer (*bytes freed by the caller with free()). */
tuna_status tuna_image_encode_png_memory(const tuna_image *img, uint8_t **bytes, size_t *n, tuna_error *err);

/* K images side by side in `columns` columns (<= 0: all in one row), each cell
 * as large as the largest image, `margin` pixels between cells and around the
 * border, background gray `background` (0..255). Images are top-left aligned. */
tuna_status tuna_image_grid(const tuna_image *images, int count, int columns, int margin, uint8_t background,
                            tuna_image *dst, tuna_error *err);

#endif
