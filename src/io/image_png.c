/* PNG decoding (untrusted bytes) and encoding, with libpng.
 *
 * libpng reports errors by calling our error function, which records the
 * message and longjmps back to the setjmp in png_decode_guarded. That function
 * has no locals that change after setjmp; everything the error path frees is in
 * a job struct owned by the caller, so nothing is indeterminate after the jump
 * and nothing leaks. Limits are enforced twice: png_set_user_limits makes
 * libpng itself refuse an oversized IHDR, and we check width * height against
 * max_pixels after png_read_info, before allocating a single row.
 *
 * Conversion to RGB follows PIL's convert("RGB"): gray is replicated, palette
 * entries are looked up, 1/2/4-bit gray is scaled to 0..255, 16-bit samples
 * keep their high byte (PIL's "RGB;16B" raw modes), and alpha or tRNS is
 * dropped, not composited. */
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapped_file.h"
#include "io/image.h"

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t pos;
    tuna_status code;  /* what the failure was (FORMAT unless we say otherwise) */
    char message[256]; /* libpng's message, or ours */
} png_reader;

static void png_on_error(png_structp png, png_const_charp message) {
    png_reader *r = png_get_error_ptr(png);
    if (r) {
        if (r->code == TUNA_OK) r->code = TUNA_ERR_FORMAT;
        if (!r->message[0]) snprintf(r->message, sizeof r->message, "%s", message ? message : "unknown error");
    }
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message; /* benign (bad ancillary chunk CRC, unknown sRGB profile, ...): PIL ignores them too */
}

/* Record our own failure reason and unwind through libpng's error path. */
static void png_reader_fail(png_structp png, png_reader *r, tuna_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
static void png_reader_fail(png_structp png, png_reader *r, tuna_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    r->code = code;
    png_longjmp(png, 1);
}

static void png_read_from_memory(png_structp png, png_bytep out, png_size_t length) {
    png_reader *r = png_get_io_ptr(png);
    if (length > r->size - r->pos)
        png_reader_fail(png, r, TUNA_ERR_FORMAT, "file is truncated (needed %zu bytes at offset %zu of %zu)",
                        (size_t)length, r->pos, r->size);
    memcpy(out, r->data + r->pos, length);
    r->pos += length;
}

/* Ancillary chunks we never need: libpng skips them without parsing or inflating. */
static const png_byte png_ignored_chunks[] = "iCCP\0zTXt\0iTXt\0tEXt\0sPLT\0eXIf\0tIME\0pHYs\0oFFs\0pCAL\0"
                                              "sCAL\0hIST\0sBIT\0gAMA\0cHRM\0sRGB\0bKGD\0";

/* Everything the decoder touches lives here, in the caller's frame: the
 * function that calls setjmp (png_decode_guarded) owns no locals that change
 * after it, so nothing is left indeterminate by a longjmp (C11 7.13.2.1). */
typedef struct {
    png_reader reader;
    png_structp png;
    png_infop info;
    tuna_image_limits limits;
    uint8_t *pixels; /* width * height * (3 or 4), freed on failure */
    int width, height;
} png_decode_job;

static void png_decode_body(png_decode_job *job) {
    png_structp png = job->png;
    png_infop info = job->info;
    png_reader *reader = &job->reader;
    const tuna_image_limits *limits = &job->limits;

    png_set_read_fn(png, reader, png_read_from_memory);
    png_uint_32 side = limits->max_side > 0 ? (png_uint_32)limits->max_side : 1;
    png_set_user_limits(png, side, side);
    png_set_chunk_cache_max(png, 256);
    png_set_chunk_malloc_max(png, limits->max_chunk_bytes ? limits->max_chunk_bytes : (8u << 20));
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, png_ignored_chunks,
                                (int)(sizeof png_ignored_chunks / 5));

    png_read_info(png, info);
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (width == 0 || height == 0 || width > side || height > side)
        png_reader_fail(png, reader, TUNA_ERR_LIMIT, "declared size %ux%u is outside 1..%u per side",
                        (unsigned)width, (unsigned)height, (unsigned)side);
    if ((int64_t)width * (int64_t)height > limits->max_pixels)
        png_reader_fail(png, reader, TUNA_ERR_LIMIT, "declared size %ux%u exceeds the limit of %lld pixels",
                        (unsigned)width, (unsigned)height, (long long)limits->max_pixels);

    /* To 8-bit gray/RGB (+ maybe alpha), then gray to RGB. */
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png); /* keep the high byte, as PIL's ;16B raw modes */
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 8 || (channels != 3 && channels != 4) ||
        rowbytes != (size_t)width * (size_t)channels)
        png_reader_fail(png, reader, TUNA_ERR_UNSUPPORTED, "unexpected layout after conversion (%d channels, %d bits)",
                        channels, png_get_bit_depth(png, info));

    /* One buffer, read row by row (each interlace pass revisits every row); an
     * alpha channel is squeezed out in place afterwards. */
    job->pixels = malloc(rowbytes * height);
    if (!job->pixels)
        png_reader_fail(png, reader, TUNA_ERR_NOMEM, "out of memory for %ux%u pixels", (unsigned)width,
                        (unsigned)height);
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < height; y++) png_read_row(png, job->pixels + (size_t)y * rowbytes, NULL);

    if (channels == 4) {
        uint8_t *rgb = job->pixels;
        size_t count = (size_t)width * height;
        for (size_t i = 0; i < count; i++) {
            rgb[3 * i + 0] = rgb[4 * i + 0];
            rgb[3 * i + 1] = rgb[4 * i + 1];
            rgb[3 * i + 2] = rgb[4 * i + 2];
        }
        uint8_t *shrunk = realloc(rgb, count * 3);
        if (shrunk) job->pixels = shrunk;
    }
    job->width = (int)width;
    job->height = (int)height;
}

/* 1 on success, 0 after libpng (or we) raised an error. */
static int png_decode_guarded(png_decode_job *job) {
    if (setjmp(png_jmpbuf(job->png))) return 0;
    png_decode_body(job);
    return 1;
}

tuna_status tuna_image_decode_png(const uint8_t *bytes, size_t n, const tuna_image_limits *limits,
                                  tuna_image *img, tuna_error *err) {
    memset(img, 0, sizeof *img);
    if (!bytes || n < 8 || png_sig_cmp(bytes, 0, 8) != 0) return tuna_fail(err, TUNA_ERR_FORMAT, "not a PNG file");
    png_decode_job job;
    memset(&job, 0, sizeof job);
    job.limits = limits ? *limits : tuna_image_default_limits();
    /* The IHDR must come first (bytes 8..32): refuse an oversized declaration
     * here, with a LIMIT error, before libpng reads anything further. */
    if (n >= 24 && memcmp(bytes + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)bytes[16] << 24 | (uint32_t)bytes[17] << 16 | (uint32_t)bytes[18] << 8 | bytes[19];
        uint32_t h = (uint32_t)bytes[20] << 24 | (uint32_t)bytes[21] << 16 | (uint32_t)bytes[22] << 8 | bytes[23];
        if (w > (uint32_t)job.limits.max_side || h > (uint32_t)job.limits.max_side ||
            (int64_t)w * (int64_t)h > job.limits.max_pixels)
            return tuna_fail(err, TUNA_ERR_LIMIT, "PNG: declared size %ux%u exceeds the limits (%d per side, %lld pixels)",
                             (unsigned)w, (unsigned)h, job.limits.max_side, (long long)job.limits.max_pixels);
    }
    job.reader.data = bytes;
    job.reader.size = n;
    job.reader.code = TUNA_OK;
    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job.reader, png_on_error, png_on_warning);
    if (!job.png) return tuna_fail(err, TUNA_ERR_NOMEM, "PNG: cannot create the decoder");
    job.info = png_create_info_struct(job.png);
    if (!job.info) {
        png_destroy_read_struct(&job.png, NULL, NULL);
        return tuna_fail(err, TUNA_ERR_NOMEM, "PNG: cannot create the decoder");
    }
    int ok = png_decode_guarded(&job);
    png_destroy_read_struct(&job.png, &job.info, NULL);
    if (!ok) {
        free(job.pixels);
        return tuna_fail(err, job.reader.code == TUNA_OK ? TUNA_ERR_FORMAT : job.reader.code, "PNG: %s",
                         job.reader.message);
    }
    img->rgb = job.pixels;
    img->width = job.width;
    img->height = job.height;
    return TUNA_OK;
}

/* ---- encoding ------------------------------------------------------------------ */

typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
    char message[256];
} png_writer;

static void png_write_on_error(png_structp png, png_const_charp message) {
    png_writer *w = png_get_error_ptr(png);
    if (w && !w->message[0]) snprintf(w->message, sizeof w->message, "%s", message ? message : "unknown error");
    png_longjmp(png, 1);
}

static void png_write_to_memory(png_structp png, png_bytep in, png_size_t length) {
    png_writer *w = png_get_io_ptr(png);
    if (length > w->capacity - w->size) {
        size_t capacity = w->capacity ? w->capacity : 4096;
        while (length > capacity - w->size) {
            if (capacity > ((size_t)-1) / 2) png_error(png, "output too large");
            capacity *= 2;
        }
        uint8_t *grown = realloc(w->data, capacity);
        if (!grown) png_error(png, "out of memory");
        w->data = grown;
        w->capacity = capacity;
    }
    memcpy(w->data + w->size, in, length);
    w->size += length;
}

static void png_flush_nothing(png_structp png) { (void)png; }

typedef struct {
    png_structp png;
    png_infop info;
    const tuna_image *img;
    FILE *fp;      /* write here if non-NULL, else into writer */
    png_writer *writer;
    const char *const *keys, *const *values; /* n_text tEXt/iTXt chunks (may be 0) */
    int n_text;
} png_encode_job;

static void png_encode_body(png_encode_job *job) {
    png_structp png = job->png;
    const tuna_image *img = job->img;
    if (job->fp) png_init_io(png, job->fp);
    else png_set_write_fn(png, job->writer, png_write_to_memory, png_flush_nothing);
    png_set_IHDR(png, job->info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (job->n_text > 0) {
        /* iTXt (UTF-8) chunks, uncompressed: prompts may hold any text */
        png_text text[16];
        int n = job->n_text < 16 ? job->n_text : 16;
        memset(text, 0, sizeof text);
        for (int i = 0; i < n; i++) {
            text[i].compression = PNG_ITXT_COMPRESSION_NONE;
            text[i].key = (png_charp)job->keys[i];
            text[i].text = (png_charp)(job->values[i] ? job->values[i] : "");
            text[i].itxt_length = strlen(text[i].text);
        }
        png_set_text(png, job->info, text, n);
    }
    png_write_info(png, job->info);
    for (int y = 0; y < img->height; y++) png_write_row(png, img->rgb + (size_t)y * (size_t)img->width * 3);
    png_write_end(png, job->info);
}

static int png_encode_guarded(png_encode_job *job) {
    if (setjmp(png_jmpbuf(job->png))) return 0;
    png_encode_body(job);
    return 1;
}

/* Encode img with libpng, to fp if non-NULL, else appending to *writer, with n_text text chunks. */
static tuna_status png_encode_text(const tuna_image *img, FILE *fp, png_writer *writer, const char *const *keys,
                                   const char *const *values, int n_text, tuna_error *err) {
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "cannot write an empty image");
    png_writer local;
    memset(&local, 0, sizeof local);
    png_encode_job job = {.img = img, .fp = fp, .writer = writer ? writer : &local, .keys = keys, .values = values,
                          .n_text = n_text};
    job.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, job.writer, png_write_on_error, png_on_warning);
    if (!job.png) return tuna_fail(err, TUNA_ERR_NOMEM, "PNG: cannot create the encoder");
    job.info = png_create_info_struct(job.png);
    if (!job.info) {
        png_destroy_write_struct(&job.png, NULL);
        return tuna_fail(err, TUNA_ERR_NOMEM, "PNG: cannot create the encoder");
    }
    int ok = png_encode_guarded(&job);
    png_destroy_write_struct(&job.png, &job.info);
    if (!ok) return tuna_fail(err, TUNA_ERR_IO, "PNG encode: %s", job.writer->message);
    return TUNA_OK;
}

typedef struct {
    const tuna_image *img;
    const char *const *keys, *const *values;
    int n_text;
} png_file_job;

static tuna_status png_write_callback(FILE *out, void *ctx, tuna_error *err) {
    const png_file_job *f = ctx;
    return png_encode_text(f->img, out, NULL, f->keys, f->values, f->n_text, err);
}

tuna_status tuna_image_write_png(const char *path, const tuna_image *img, tuna_error *err) {
    return tuna_image_write_png_text(path, img, NULL, NULL, 0, err);
}

tuna_status tuna_image_write_png_text(const char *path, const tuna_image *img, const char *const *keys,
                                      const char *const *values, int n_text, tuna_error *err) {
    if (n_text < 0 || n_text > 16) return tuna_fail(err, TUNA_ERR_INVALID, "PNG: at most 16 text chunks");
    for (int i = 0; i < n_text; i++) {
        size_t k = strlen(keys[i]);
        if (k < 1 || k > 79) return tuna_fail(err, TUNA_ERR_INVALID, "PNG: text keys are 1 to 79 bytes");
    }
    png_file_job job = {img, keys, values, n_text};
    tuna_status s = tuna_write_file_atomic(path, png_write_callback, &job, err);
    if (s != TUNA_OK) return tuna_fail_context(err, s, "writing %s", path);
    return TUNA_OK;
}

static tuna_status png_encode(const tuna_image *img, FILE *fp, png_writer *writer, tuna_error *err) {
    return png_encode_text(img, fp, writer, NULL, NULL, 0, err);
}

tuna_status tuna_image_encode_png_memory(const tuna_image *img, uint8_t **bytes, size_t *n, tuna_error *err) {
    *bytes = NULL;
    *n = 0;
    png_writer w = {0};
    tuna_status s = png_encode(img, NULL, &w, err);
    if (s != TUNA_OK) {
        free(w.data);
        return s;
    }
    *bytes = w.data;
    *n = w.size;
    return TUNA_OK;
}
