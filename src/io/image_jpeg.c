/* JPEG decoding of untrusted bytes with libjpeg-turbo's classic libjpeg API.
 *
 * libjpeg reports fatal errors through error_exit, which must not return: ours
 * formats the message and longjmps back to jpeg_decode_guarded; what the error
 * path frees lives in a heap job struct, never in locals of the setjmp frame.
 *
 * Safety: the declared size is checked after jpeg_read_header, before
 * jpeg_start_decompress allocates anything size-dependent; max_memory_to_use
 * bounds libjpeg's own allocations (progressive coefficient buffers); a
 * progress monitor refuses files with more than max_jpeg_scans scans (a CPU
 * bomb: thousands of tiny progressive scans over a large frame); running out of
 * data is an error ("truncated"), where jpeg_mem_src would silently pad with
 * gray as PIL does with LOAD_TRUNCATED_IMAGES (the reference leaves that off,
 * so PIL raises "image file is truncated" too).
 *
 * Colour: YCbCr and RGB JPEGs are converted by libjpeg (as PIL, which also
 * uses libjpeg-turbo with the default islow IDCT and fancy upsampling);
 * grayscale is replicated; CMYK/YCCK are converted with PIL's cmyk2rgb
 * (R = (255-K) - C*(255-K)/255), inverting Adobe files first as PIL's
 * "CMYK;I" raw mode does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "io/image.h"

typedef struct {
    struct jpeg_error_mgr pub;   /* first: libjpeg casts cinfo->err to this */
    struct jpeg_source_mgr src;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    tuna_status code;
    int max_scans;
    long warnings;
    char message[JMSG_LENGTH_MAX + 64];
} jpeg_reader;

static jpeg_reader *reader_of(j_common_ptr cinfo) { return (jpeg_reader *)cinfo->err; }

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_reader *r = reader_of(cinfo);
    if (r->code == TUNA_OK) {
        r->code = TUNA_ERR_FORMAT;
        (*cinfo->err->format_message)(cinfo, r->message);
    }
    longjmp(r->jump, 1);
}

static void jpeg_fail(j_common_ptr cinfo, tuna_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
static void jpeg_fail(j_common_ptr cinfo, tuna_status code, const char *fmt, ...) {
    jpeg_reader *r = reader_of(cinfo);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    r->code = code;
    longjmp(r->jump, 1);
}

/* Warnings (msg_level < 0: corrupt data that libjpeg recovers from) are counted,
 * not printed; a file that produces an absurd number of them is refused. */
static void jpeg_on_message(j_common_ptr cinfo, int msg_level) {
    jpeg_reader *r = reader_of(cinfo);
    if (msg_level < 0 && ++r->warnings > 10000)
        jpeg_fail(cinfo, TUNA_ERR_FORMAT, "too many corrupt-data warnings");
}

static void jpeg_on_output(j_common_ptr cinfo) { (void)cinfo; }

static void jpeg_on_progress(j_common_ptr cinfo) {
    jpeg_reader *r = reader_of(cinfo);
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        if (r->max_scans > 0 && d->input_scan_number > r->max_scans)
            jpeg_fail(cinfo, TUNA_ERR_LIMIT, "more than %d progressive scans", r->max_scans);
    }
}

/* Memory source: the whole file is one buffer; a request for more is truncation. */
static void source_init(j_decompress_ptr cinfo) { (void)cinfo; }
static boolean source_fill(j_decompress_ptr cinfo) {
    jpeg_fail((j_common_ptr)cinfo, TUNA_ERR_FORMAT, "file is truncated (premature end of JPEG data)");
}
static void source_skip(j_decompress_ptr cinfo, long count) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (count <= 0) return;
    if ((size_t)count > src->bytes_in_buffer) source_fill(cinfo);
    src->next_input_byte += count;
    src->bytes_in_buffer -= (size_t)count;
}
static void source_term(j_decompress_ptr cinfo) { (void)cinfo; }

/* PIL Convert.c MULDIV255: a * b / 255 with rounding, in integers. */
static inline int muldiv255(int a, int b) {
    int tmp = a * b + 128;
    return ((tmp >> 8) + tmp) >> 8;
}

static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width, int inverted) {
    for (int x = 0; x < width; x++) {
        int c = cmyk[4 * x + 0], m = cmyk[4 * x + 1], y = cmyk[4 * x + 2], k = cmyk[4 * x + 3];
        if (inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        int nk = 255 - k;
        int r = nk - muldiv255(c, nk), g = nk - muldiv255(m, nk), b = nk - muldiv255(y, nk);
        rgb[3 * x + 0] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
        rgb[3 * x + 1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
        rgb[3 * x + 2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
    }
}

/* State in the caller's frame (see image_png.c: the setjmp function has no
 * locals that change after setjmp, so the error path sees current values). */
typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_reader reader;
    tuna_image_limits limits;
    const uint8_t *bytes;
    size_t size;
    int created;
    uint8_t *rgb;  /* output, freed on failure */
    uint8_t *cmyk; /* one CMYK row */
    int width, height;
} jpeg_decode_job;

static void jpeg_decode_body(jpeg_decode_job *job) {
    struct jpeg_decompress_struct *cinfo = &job->cinfo;
    jpeg_reader *reader = &job->reader;
    const tuna_image_limits *limits = &job->limits;
    jpeg_create_decompress(cinfo);
    job->created = 1;

    reader->src.init_source = source_init;
    reader->src.fill_input_buffer = source_fill;
    reader->src.skip_input_data = source_skip;
    reader->src.resync_to_restart = jpeg_resync_to_restart;
    reader->src.term_source = source_term;
    reader->src.next_input_byte = job->bytes;
    reader->src.bytes_in_buffer = job->size;
    cinfo->src = &reader->src;
    reader->progress.progress_monitor = jpeg_on_progress;
    cinfo->progress = &reader->progress;
    /* Bound libjpeg's own allocations: the largest frame's coefficients (4 components,
     * 2 bytes each, which a progressive file buffers whole) plus working space. */
    long long max_memory = limits->max_pixels * 4 * 2 + (64ll << 20);
    cinfo->mem->max_memory_to_use = (long)max_memory;

    jpeg_read_header(cinfo, TRUE);
    long long width = cinfo->image_width, height = cinfo->image_height;
    if (width <= 0 || height <= 0 || width > limits->max_side || height > limits->max_side)
        jpeg_fail((j_common_ptr)cinfo, TUNA_ERR_LIMIT, "declared size %lldx%lld is outside 1..%d per side", width,
                  height, limits->max_side);
    if (width * height > limits->max_pixels)
        jpeg_fail((j_common_ptr)cinfo, TUNA_ERR_LIMIT, "declared size %lldx%lld exceeds the limit of %lld pixels",
                  width, height, (long long)limits->max_pixels);

    int four_channel = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    cinfo->out_color_space = four_channel ? JCS_CMYK : JCS_RGB; /* gray -> RGB replicates */
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);
    if ((long long)cinfo->output_width != width || (long long)cinfo->output_height != height ||
        cinfo->output_components != (four_channel ? 4 : 3))
        jpeg_fail((j_common_ptr)cinfo, TUNA_ERR_UNSUPPORTED, "unexpected output layout (%d components)",
                  cinfo->output_components);

    job->rgb = malloc((size_t)width * (size_t)height * 3);
    if (!job->rgb) jpeg_fail((j_common_ptr)cinfo, TUNA_ERR_NOMEM, "out of memory for %lldx%lld pixels", width, height);
    if (four_channel) {
        job->cmyk = malloc((size_t)width * 4);
        if (!job->cmyk) jpeg_fail((j_common_ptr)cinfo, TUNA_ERR_NOMEM, "out of memory");
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        JDIMENSION y = cinfo->output_scanline;
        uint8_t *out_row = job->rgb + (size_t)y * (size_t)width * 3;
        JSAMPROW row = four_channel ? (JSAMPROW)job->cmyk : (JSAMPROW)out_row;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            jpeg_fail((j_common_ptr)cinfo, TUNA_ERR_FORMAT, "decoder stopped at row %u", (unsigned)y);
        if (four_channel) cmyk_to_rgb(job->cmyk, out_row, (int)width, cinfo->saw_Adobe_marker);
    }
    /* Not jpeg_finish_decompress: trailing data after the last row (or a missing
     * EOI) does not matter, as in PIL. */
    job->width = (int)width;
    job->height = (int)height;
}

static int jpeg_decode_guarded(jpeg_decode_job *job) {
    if (setjmp(job->reader.jump)) return 0;
    jpeg_decode_body(job);
    return 1;
}

tuna_status tuna_image_decode_jpeg(const uint8_t *bytes, size_t n, const tuna_image_limits *limits,
                                   tuna_image *img, tuna_error *err) {
    memset(img, 0, sizeof *img);
    if (!bytes || n < 3 || bytes[0] != 0xff || bytes[1] != 0xd8)
        return tuna_fail(err, TUNA_ERR_FORMAT, "not a JPEG file");
    jpeg_decode_job *job = calloc(1, sizeof *job);
    if (!job) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    job->limits = limits ? *limits : tuna_image_default_limits();
    job->bytes = bytes;
    job->size = n;
    job->reader.code = TUNA_OK;
    job->reader.max_scans = job->limits.max_jpeg_scans;
    job->cinfo.err = jpeg_std_error(&job->reader.pub);
    job->reader.pub.error_exit = jpeg_on_error;
    job->reader.pub.emit_message = jpeg_on_message;
    job->reader.pub.output_message = jpeg_on_output;

    int ok = jpeg_decode_guarded(job);
    if (job->created) jpeg_destroy_decompress(&job->cinfo);
    free(job->cmyk);
    tuna_status s = TUNA_OK;
    if (ok) {
        img->rgb = job->rgb;
        img->width = job->width;
        img->height = job->height;
    } else {
        free(job->rgb);
        s = tuna_fail(err, job->reader.code == TUNA_OK ? TUNA_ERR_FORMAT : job->reader.code, "JPEG: %s",
                      job->reader.message);
    }
    free(job);
    return s;
}
