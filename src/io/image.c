/* Images: format detection, ownership, buckets, tensor conversion, the grid.
 * Decoders are in image_png.c / image_jpeg.c, resampling in image_resize.c. */
#include "io/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapped_file.h"

tuna_image_limits tuna_image_default_limits(void) {
    tuna_image_limits l;
    l.max_side = TUNA_IMAGE_DEFAULT_MAX_SIDE;
    l.max_pixels = TUNA_IMAGE_DEFAULT_MAX_PIXELS;
    l.max_chunk_bytes = 8u << 20;
    l.max_jpeg_scans = 1000;
    return l;
}

tuna_image_format tuna_image_detect_format(const uint8_t *bytes, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (bytes && n >= 8 && memcmp(bytes, png_sig, 8) == 0) return TUNA_IMAGE_FORMAT_PNG;
    if (bytes && n >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) return TUNA_IMAGE_FORMAT_JPEG;
    return TUNA_IMAGE_FORMAT_UNKNOWN;
}

tuna_status tuna_image_decode_memory(const uint8_t *bytes, size_t n, const tuna_image_limits *limits,
                                     tuna_image *img, tuna_error *err) {
    memset(img, 0, sizeof *img);
    tuna_image_limits defaults = tuna_image_default_limits();
    if (!limits) limits = &defaults;
    if (n == 0 || !bytes) return tuna_fail(err, TUNA_ERR_FORMAT, "image is empty (0 bytes)");
    switch (tuna_image_detect_format(bytes, n)) {
    case TUNA_IMAGE_FORMAT_PNG: return tuna_image_decode_png(bytes, n, limits, img, err);
    case TUNA_IMAGE_FORMAT_JPEG: return tuna_image_decode_jpeg(bytes, n, limits, img, err);
    default: break;
    }
    /* the message names the size only: a path given by a data file may point at
     * any file, whose bytes do not belong in a log */
    return tuna_fail(err, TUNA_ERR_FORMAT, "not a PNG or JPEG image (%zu bytes)", n);
}

tuna_status tuna_image_decode_file(const char *path, const tuna_image_limits *limits, tuna_image *img,
                                   tuna_error *err) {
    memset(img, 0, sizeof *img);
    tuna_mapped_file f;
    TUNA_TRY(tuna_mapped_file_open(&f, path, err));
    tuna_status s = tuna_image_decode_memory(f.data, f.size, limits, img, err);
    tuna_mapped_file_close(&f);
    if (s != TUNA_OK) return tuna_fail_context(err, s, "decoding %s", path);
    return TUNA_OK;
}

tuna_status tuna_image_alloc(tuna_image *img, int width, int height, tuna_error *err) {
    memset(img, 0, sizeof *img);
    if (width <= 0 || height <= 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "image size %dx%d is not positive", width, height);
    size_t bytes;
    if (tuna_mul_overflows((size_t)width, (size_t)height, &bytes) || tuna_mul_overflows(bytes, 3, &bytes))
        return tuna_fail(err, TUNA_ERR_LIMIT, "image size %dx%d overflows", width, height);
    img->rgb = calloc(bytes, 1);
    if (!img->rgb) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for a %dx%d image", width, height);
    img->width = width;
    img->height = height;
    return TUNA_OK;
}

void tuna_image_free(tuna_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

/* ---- buckets ---------------------------------------------------------------- */

const tuna_bucket tuna_buckets_512[5] = {{512, 512}, {448, 576}, {576, 448}, {384, 672}, {672, 384}};
const tuna_bucket tuna_buckets_1024[5] = {{1024, 1024}, {896, 1152}, {1152, 896}, {768, 1344}, {1344, 768}};

int tuna_image_pick_bucket(int width, int height, const tuna_bucket *buckets, int n, int *bucket_h,
                           int *bucket_w) {
    if (n <= 0 || !buckets || width <= 0 || height <= 0) return -1;
    /* runner.py: in_ar = w / h; diff = |in_ar - b_w / b_h|; strict '<' keeps the first on ties. */
    double image_ar = (double)width / (double)height;
    int best = -1;
    double best_diff = INFINITY;
    for (int i = 0; i < n; i++) {
        if (buckets[i].height <= 0 || buckets[i].width <= 0) continue;
        double diff = fabs(image_ar - (double)buckets[i].width / (double)buckets[i].height);
        if (diff < best_diff) {
            best_diff = diff;
            best = i;
        }
    }
    if (best >= 0) {
        if (bucket_h) *bucket_h = buckets[best].height;
        if (bucket_w) *bucket_w = buckets[best].width;
    }
    return best;
}

/* ---- tensors ----------------------------------------------------------------- */

void tuna_image_to_tensor(const tuna_image *img, float *chw) {
    /* torchvision ToTensor (x / 255 in f32) then Normalize(mean 0.5, std 0.5): (v - 0.5) / 0.5.
     * Done in the same f32 operations so the result is bit-identical. */
    float table[256];
    for (int v = 0; v < 256; v++) table[v] = ((float)v / 255.0f - 0.5f) / 0.5f;
    size_t plane = (size_t)img->width * (size_t)img->height;
    for (size_t i = 0; i < plane; i++) {
        chw[i] = table[img->rgb[3 * i + 0]];
        chw[plane + i] = table[img->rgb[3 * i + 1]];
        chw[2 * plane + i] = table[img->rgb[3 * i + 2]];
    }
}

static uint8_t tensor_value_to_u8(float x) {
    /* pipelines/_common.py denorm: clamp((x + 1) / 2, 0, 1) * 255 -> astype(uint8). */
    float v = (x + 1.0f) / 2.0f;
    if (!(v > 0.0f)) v = 0.0f; /* also NaN -> 0 */
    if (v > 1.0f) v = 1.0f;
    return (uint8_t)(v * 255.0f);
}

tuna_status tuna_image_from_tensor(const float *chw, int height, int width, tuna_image *img, tuna_error *err) {
    TUNA_TRY(tuna_image_alloc(img, width, height, err));
    size_t plane = (size_t)width * (size_t)height;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) img->rgb[3 * i + c] = tensor_value_to_u8(chw[(size_t)c * plane + i]);
    return TUNA_OK;
}

/* ---- grid -------------------------------------------------------------------- */

tuna_status tuna_image_grid(const tuna_image *images, int count, int columns, int margin, uint8_t background,
                            tuna_image *dst, tuna_error *err) {
    memset(dst, 0, sizeof *dst);
    if (count <= 0 || !images) return tuna_fail(err, TUNA_ERR_INVALID, "image grid needs at least one image");
    if (margin < 0 || margin > 4096) return tuna_fail(err, TUNA_ERR_INVALID, "grid margin %d out of range", margin);
    if (columns <= 0 || columns > count) columns = count;
    int rows = (count + columns - 1) / columns;
    int cell_w = 0, cell_h = 0;
    for (int i = 0; i < count; i++) {
        if (!images[i].rgb || images[i].width <= 0 || images[i].height <= 0)
            return tuna_fail(err, TUNA_ERR_INVALID, "grid image %d is empty", i);
        if (images[i].width > cell_w) cell_w = images[i].width;
        if (images[i].height > cell_h) cell_h = images[i].height;
    }
    int64_t total_w = (int64_t)columns * cell_w + (int64_t)(columns + 1) * margin;
    int64_t total_h = (int64_t)rows * cell_h + (int64_t)(rows + 1) * margin;
    if (total_w > TUNA_IMAGE_DEFAULT_MAX_SIDE * 4 || total_h > TUNA_IMAGE_DEFAULT_MAX_SIDE * 4 ||
        total_w * total_h > TUNA_IMAGE_DEFAULT_MAX_PIXELS * 4)
        return tuna_fail(err, TUNA_ERR_LIMIT, "grid of %lldx%lld pixels is too large", (long long)total_w,
                         (long long)total_h);
    TUNA_TRY(tuna_image_alloc(dst, (int)total_w, (int)total_h, err));
    memset(dst->rgb, background, (size_t)total_w * (size_t)total_h * 3);
    for (int i = 0; i < count; i++) {
        int x0 = margin + (i % columns) * (cell_w + margin);
        int y0 = margin + (i / columns) * (cell_h + margin);
        const tuna_image *im = &images[i];
        for (int y = 0; y < im->height; y++)
            memcpy(dst->rgb + ((size_t)(y0 + y) * (size_t)total_w + (size_t)x0) * 3,
                   im->rgb + (size_t)y * (size_t)im->width * 3, (size_t)im->width * 3);
    }
    return TUNA_OK;
}
