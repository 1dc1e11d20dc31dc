/* Images: decoding every colour type against PIL's convert("RGB"), the
 * reference's resize/crop recipes against PIL, tensor conversions against torch,
 * PNG round trips, PSNR/SSIM against skimage, and hostile inputs.
 * Fixtures: tests/fixtures/image/, written by tools/make_image_fixtures.py. */
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

#include "test.h"
#include "core/mapped_file.h"
#include "core/rng.h"
#include "infer/metrics.h"
#include "io/image.h"

#define FIXTURES "tests/fixtures/image/"

static uint8_t *read_bytes(const char *path, size_t *n) {
    char *buf = NULL;
    if (tuna_read_file(path, 64u << 20, &buf, n, NULL) != TUNA_OK) return NULL;
    return (uint8_t *)buf;
}

static int max_abs_diff(const tuna_image *a, const tuna_image *b) {
    if (a->width != b->width || a->height != b->height) return 1000;
    int m = 0;
    for (size_t i = 0; i < (size_t)a->width * a->height * 3; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        if (d > m) m = d;
    }
    return m;
}

/* Each line of a fixture list, without the newline; returns the count. */
static int read_lines(const char *path, char lines[][160], int max) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (n < max && fgets(lines[n], 160, f)) {
        lines[n][strcspn(lines[n], "\n")] = 0;
        if (lines[n][0]) n++;
    }
    fclose(f);
    return n;
}

TEST(detect_format) {
    const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t jpg[3] = {0xff, 0xd8, 0xff};
    CHECK(tuna_image_detect_format(png, 8) == TUNA_IMAGE_FORMAT_PNG, "png");
    CHECK(tuna_image_detect_format(jpg, 3) == TUNA_IMAGE_FORMAT_JPEG, "jpeg");
    CHECK(tuna_image_detect_format(png, 7) == TUNA_IMAGE_FORMAT_UNKNOWN, "short png");
    CHECK(tuna_image_detect_format((const uint8_t *)"GIF89a", 6) == TUNA_IMAGE_FORMAT_UNKNOWN, "gif");
    CHECK(tuna_image_detect_format(NULL, 0) == TUNA_IMAGE_FORMAT_UNKNOWN, "null");
}

/* Every fixture decodes to what PIL's Image.open().convert("RGB") gives.
 * PNG: exact. JPEG: exact as well (PIL uses libjpeg-turbo with the same islow
 * IDCT and fancy upsampling); the tolerance below says so. 16-bit gray is the
 * one deliberate difference: PIL's I;16 -> RGB conversion CLIPS to 255 (an
 * all-white image here) where we keep the high byte. */
TEST(decode_matches_pil) {
    static char names[64][160];
    int n = read_lines(FIXTURES "decode_cases.txt", names, 64);
    REQUIRE(n >= 20, "decode_cases.txt lists %d files", n);
    for (int i = 0; i < n; i++) {
        char path[256], expected_path[256];
        snprintf(path, sizeof path, FIXTURES "%s", names[i]);
        snprintf(expected_path, sizeof expected_path, FIXTURES "%.*s.expected.png",
                 (int)(strrchr(names[i], '.') - names[i]), names[i]);
        tuna_image img, expected;
        tuna_error err = {0};
        tuna_status s = tuna_image_decode_file(path, NULL, &img, &err);
        CHECK(s == TUNA_OK, "%s: %s", names[i], err.message);
        if (s != TUNA_OK) continue;
        s = tuna_image_decode_file(expected_path, NULL, &expected, &err);
        CHECK(s == TUNA_OK, "%s: %s", expected_path, err.message);
        if (s == TUNA_OK) {
            int d = max_abs_diff(&img, &expected);
            int is_jpeg = strstr(names[i], ".jpg") != NULL;
            if (strcmp(names[i], "gray16.png") == 0) {
                /* Ours: high byte of (g * 257 + 3) = g. PIL: min(value, 255) = 255 nearly everywhere. */
                tuna_image g8;
                tuna_error e2 = {0};
                CHECK(tuna_image_decode_file(FIXTURES "gray8.png", NULL, &g8, &e2) == TUNA_OK, "%s", e2.message);
                CHECK(max_abs_diff(&img, &g8) == 0, "gray16 high byte != gray8 (diff %d)", max_abs_diff(&img, &g8));
                tuna_image_free(&g8);
            } else {
                int tolerance = is_jpeg ? 0 : 0;
                CHECK(d <= tolerance, "%s differs from PIL by up to %d", names[i], d);
            }
            tuna_image_free(&expected);
        }
        tuna_image_free(&img);
    }
}

TEST(decode_memory_equals_file) {
    size_t n;
    uint8_t *bytes = read_bytes(FIXTURES "rgb420.jpg", &n);
    REQUIRE(bytes, "read");
    tuna_image a, b;
    tuna_error err = {0};
    CHECK(tuna_image_decode_memory(bytes, n, NULL, &a, &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_image_decode_file(FIXTURES "rgb420.jpg", NULL, &b, &err) == TUNA_OK, "%s", err.message);
    CHECK(a.width == 37 && a.height == 29, "size %dx%d", a.width, a.height);
    CHECK(max_abs_diff(&a, &b) == 0, "memory vs file");
    tuna_image_free(&a);
    tuna_image_free(&b);
    free(bytes);
}

/* The reference's recipes (runner.py cover-crop, transforms.py short-side +
 * torchvision CenterCrop, plain resize), each built on PIL's bicubic: exact. */
TEST(resize_crop_matches_pil) {
    static char lines[64][160];
    int n = read_lines(FIXTURES "resize_cases.txt", lines, 64);
    REQUIRE(n >= 30, "resize_cases.txt lists %d cases", n);
    int exact = 0;
    for (int i = 0; i < n; i++) {
        char src_name[64], mode[16], out_name[96];
        int h, w;
        REQUIRE(sscanf(lines[i], "%63s %15s %d %d %95s", src_name, mode, &h, &w, out_name) == 5, "bad line");
        char path[256];
        tuna_image src, expected, got;
        tuna_error err = {0};
        snprintf(path, sizeof path, FIXTURES "%s", src_name);
        REQUIRE(tuna_image_decode_file(path, NULL, &src, &err) == TUNA_OK, "%s", err.message);
        snprintf(path, sizeof path, FIXTURES "%s", out_name);
        REQUIRE(tuna_image_decode_file(path, NULL, &expected, &err) == TUNA_OK, "%s", err.message);
        tuna_crop_mode m = strcmp(mode, "cover") == 0 ? TUNA_CROP_COVER
                           : strcmp(mode, "short") == 0 ? TUNA_CROP_SHORT_SIDE : TUNA_CROP_NONE;
        tuna_status s = tuna_image_resize_crop_mode(&src, h, w, m, &got, &err);
        CHECK(s == TUNA_OK, "%s: %s", lines[i], err.message);
        if (s == TUNA_OK) {
            int d = max_abs_diff(&got, &expected);
            CHECK(d == 0, "%s: differs from PIL by up to %d", lines[i], d);
            exact += d == 0;
            tuna_image_free(&got);
        }
        tuna_image_free(&src);
        tuna_image_free(&expected);
    }
    printf("     %d/%d resize+crop cases bit-exact with PIL\n", exact, n);
}

TEST(resize_crop_default_is_cover) {
    tuna_image src, a, b;
    tuna_error err = {0};
    REQUIRE(tuna_image_decode_file(FIXTURES "resize_src.png", NULL, &src, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_image_resize_crop(&src, 32, 48, &a, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_image_resize_crop_mode(&src, 32, 48, TUNA_CROP_COVER, &b, &err) == TUNA_OK, "%s", err.message);
    CHECK(a.height == 32 && a.width == 48 && max_abs_diff(&a, &b) == 0, "default mode");
    tuna_image_free(&b);
    CHECK(tuna_image_resize_crop(&src, 0, 48, &b, &err) == TUNA_ERR_INVALID, "zero height refused");
    tuna_image_free(&a);
    tuna_image_free(&src);
}

TEST(bucket_rule) {
    int h = 0, w = 0;
    CHECK(tuna_image_pick_bucket(1000, 1000, tuna_buckets_512, 5, &h, &w) == 0 && h == 512 && w == 512, "square");
    CHECK(tuna_image_pick_bucket(1024, 768, tuna_buckets_512, 5, &h, &w) == 1 && h == 448 && w == 576, "4:3");
    CHECK(tuna_image_pick_bucket(768, 1024, tuna_buckets_512, 5, &h, &w) == 2 && h == 576 && w == 448, "3:4");
    CHECK(tuna_image_pick_bucket(1920, 1080, tuna_buckets_512, 5, &h, &w) == 3 && h == 384 && w == 672, "16:9");
    CHECK(tuna_image_pick_bucket(1080, 1920, tuna_buckets_512, 5, &h, &w) == 4 && h == 672 && w == 384, "9:16");
    CHECK(tuna_image_pick_bucket(5000, 100, tuna_buckets_512, 5, &h, &w) == 3, "very wide");
    /* Linear distance, not log: W/H = 0.67 is 0.0986 from 384/672 and 0.1078 from 448/576, so
     * 672x384; a log distance (transforms.py's unused sampler) would pick 576x448. */
    CHECK(tuna_image_pick_bucket(670, 1000, tuna_buckets_512, 5, &h, &w) == 4, "0.67 -> 672x384");
    CHECK(tuna_image_pick_bucket(600, 1000, tuna_buckets_512, 5, &h, &w) == 4, "0.6 -> 672x384");
    /* Ties keep the first. */
    tuna_bucket tie[2] = {{200, 100}, {100, 150}}; /* ARs 0.5 and 1.5, both 0.5 from 1.0 */
    CHECK(tuna_image_pick_bucket(100, 100, tie, 2, &h, &w) == 0, "tie -> first");
    CHECK(tuna_image_pick_bucket(2000, 2000, tuna_buckets_1024, 5, &h, &w) == 0 && h == 1024, "1024 class");
    CHECK(tuna_image_pick_bucket(0, 10, tuna_buckets_512, 5, &h, &w) == -1, "zero width");
    CHECK(tuna_image_pick_bucket(10, 10, tuna_buckets_512, 0, &h, &w) == -1, "no buckets");
}

/* ToTensor + Normalize(0.5, 0.5) in torch f32, bit for bit. */
TEST(to_tensor_matches_torch) {
    size_t n;
    float *table = (float *)read_bytes(FIXTURES "to_tensor_table.f32", &n);
    REQUIRE(table && n == 256 * sizeof(float), "table");
    tuna_image img;
    REQUIRE(tuna_image_alloc(&img, 256, 1, NULL) == TUNA_OK, "alloc");
    for (int i = 0; i < 256; i++) {
        img.rgb[3 * i] = (uint8_t)i;
        img.rgb[3 * i + 1] = (uint8_t)(255 - i);
        img.rgb[3 * i + 2] = (uint8_t)i;
    }
    float chw[3 * 256];
    tuna_image_to_tensor(&img, chw);
    int bad = 0;
    for (int i = 0; i < 256; i++) {
        bad += memcmp(&chw[i], &table[i], 4) != 0;
        bad += memcmp(&chw[256 + i], &table[255 - i], 4) != 0;
        bad += memcmp(&chw[512 + i], &table[i], 4) != 0;
    }
    CHECK(bad == 0, "%d values differ from torch", bad);
    CHECK(chw[0] == -1.0f && chw[255] == 1.0f, "range");
    tuna_image_free(&img);
    free(table);
}

/* pipelines/_common.py denorm: clamp((x+1)/2, 0, 1) * 255 -> uint8 (truncation). */
TEST(from_tensor_matches_torch) {
    size_t n_in, n_out;
    float *xs = (float *)read_bytes(FIXTURES "from_tensor_in.f32", &n_in);
    uint8_t *want = read_bytes(FIXTURES "from_tensor_out.u8", &n_out);
    REQUIRE(xs && want && n_in == 4 * n_out, "fixtures");
    int count = (int)n_out;
    /* A 1 x count image whose three planes all hold the test values. */
    float *chw = malloc(3 * n_in);
    for (int c = 0; c < 3; c++) memcpy(chw + (size_t)c * count, xs, n_in);
    tuna_image img;
    REQUIRE(tuna_image_from_tensor(chw, 1, count, &img, NULL) == TUNA_OK, "from_tensor");
    int bad = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < count; i++) bad += img.rgb[3 * i + c] != want[i];
    CHECK(bad == 0, "%d of %d values differ from torch", bad, 3 * count);
    tuna_image_free(&img);
    free(chw);
    float nan_value[3] = {NAN, INFINITY, -INFINITY};
    REQUIRE(tuna_image_from_tensor(nan_value, 1, 1, &img, NULL) == TUNA_OK, "nan");
    CHECK(img.rgb[0] == 0 && img.rgb[1] == 255 && img.rgb[2] == 0, "NaN -> 0, inf -> 255, -inf -> 0");
    tuna_image_free(&img);
    free(xs);
    free(want);
}

TEST(png_write_read_round_trip) {
    tuna_image src, back;
    tuna_error err = {0};
    REQUIRE(tuna_image_decode_file(FIXTURES "resize_src.png", NULL, &src, &err) == TUNA_OK, "%s", err.message);
    char path[128];
    snprintf(path, sizeof path, "/tmp/tuna_test_image_%ld.png", (long)getpid());
    REQUIRE(tuna_image_write_png(path, &src, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_image_decode_file(path, NULL, &back, &err) == TUNA_OK, "%s", err.message);
    CHECK(max_abs_diff(&src, &back) == 0, "file round trip");
    tuna_image_free(&back);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "temporary file left behind");
    unlink(path);

    uint8_t *bytes = NULL;
    size_t n = 0;
    REQUIRE(tuna_image_encode_png_memory(&src, &bytes, &n, &err) == TUNA_OK, "%s", err.message);
    CHECK(n > 100 && tuna_image_detect_format(bytes, n) == TUNA_IMAGE_FORMAT_PNG, "png bytes");
    REQUIRE(tuna_image_decode_memory(bytes, n, NULL, &back, &err) == TUNA_OK, "%s", err.message);
    CHECK(max_abs_diff(&src, &back) == 0, "memory round trip");
    tuna_image_free(&back);
    free(bytes);

    CHECK(tuna_image_write_png("/nonexistent-dir/x.png", &src, &err) == TUNA_ERR_IO, "bad path: %s", err.message);
    tuna_image empty = {0};
    CHECK(tuna_image_encode_png_memory(&empty, &bytes, &n, &err) == TUNA_ERR_INVALID, "empty image");
    tuna_image_free(&src);
}

/* Tensor -> image -> tensor is the identity on the 256 representable levels. */
TEST(tensor_round_trip) {
    tuna_image img, back;
    REQUIRE(tuna_image_decode_file(FIXTURES "resize_src.png", NULL, &img, NULL) == TUNA_OK, "decode");
    size_t n = (size_t)img.width * img.height * 3;
    float *chw = malloc(n * sizeof *chw);
    tuna_image_to_tensor(&img, chw);
    REQUIRE(tuna_image_from_tensor(chw, img.height, img.width, &back, NULL) == TUNA_OK, "from");
    /* (v/255 - .5)/.5 then (x+1)/2*255 truncated can land 1 below v; count them. */
    int off = 0, worse = 0;
    for (size_t i = 0; i < n; i++) {
        int d = (int)img.rgb[i] - (int)back.rgb[i];
        off += d != 0;
        worse += d < 0 || d > 1;
    }
    CHECK(worse == 0, "%d values off by more than -1", worse);
    printf("     tensor round trip: %d of %zu values come back 1 lower (reference truncates)\n", off, n);
    free(chw);
    tuna_image_free(&img);
    tuna_image_free(&back);
}

TEST(metrics_match_skimage) {
    tuna_image a, b;
    tuna_error err = {0};
    REQUIRE(tuna_image_decode_file(FIXTURES "metric_a.png", NULL, &a, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_image_decode_file(FIXTURES "metric_b.png", NULL, &b, &err) == TUNA_OK, "%s", err.message);
    double want_psnr = 0, want_ssim = 0;
    FILE *f = fopen(FIXTURES "metrics.txt", "r");
    REQUIRE(f, "metrics.txt");
    CHECK(fscanf(f, "psnr %lf\nssim %lf", &want_psnr, &want_ssim) == 2, "parse");
    fclose(f);
    double psnr, ssim;
    REQUIRE(tuna_psnr(&a, &b, &psnr, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_ssim(&a, &b, &ssim, &err) == TUNA_OK, "%s", err.message);
    CHECK(fabs(psnr - want_psnr) < 1e-9, "psnr %.12f vs skimage %.12f", psnr, want_psnr);
    CHECK(fabs(ssim - want_ssim) < 1e-9, "ssim %.12f vs skimage %.12f", ssim, want_ssim);
    printf("     psnr %.9f (numpy %.9f), ssim %.12f (skimage %.12f)\n", psnr, want_psnr, ssim, want_ssim);

    double same;
    CHECK(tuna_psnr(&a, &a, &same, NULL) == TUNA_OK && isinf(same), "identical psnr = inf");
    CHECK(tuna_ssim(&a, &a, &same, NULL) == TUNA_OK && fabs(same - 1.0) < 1e-12, "identical ssim = 1 (%f)", same);
    /* The float version on [-1, 1] equals the uint8 one on the same levels. */
    size_t n = (size_t)a.width * a.height * 3;
    float *fa = malloc(n * sizeof *fa), *fb = malloc(n * sizeof *fb);
    tuna_image_to_tensor(&a, fa);
    tuna_image_to_tensor(&b, fb);
    double pf = tuna_psnr_float(fa, fb, (long)n);
    CHECK(fabs(pf - psnr) < 1e-4, "float psnr %f vs %f", pf, psnr);
    free(fa);
    free(fb);
    tuna_image small;
    REQUIRE(tuna_image_alloc(&small, 10, 10, NULL) == TUNA_OK, "alloc");
    CHECK(tuna_ssim(&small, &small, &same, &err) == TUNA_ERR_INVALID, "ssim needs 11x11");
    CHECK(tuna_psnr(&a, &small, &same, &err) == TUNA_ERR_INVALID, "size mismatch");
    tuna_image_free(&small);
    tuna_image_free(&a);
    tuna_image_free(&b);
}

TEST(grid) {
    tuna_image parts[3], g;
    REQUIRE(tuna_image_alloc(&parts[0], 4, 3, NULL) == TUNA_OK, "alloc");
    REQUIRE(tuna_image_alloc(&parts[1], 2, 5, NULL) == TUNA_OK, "alloc");
    REQUIRE(tuna_image_alloc(&parts[2], 4, 5, NULL) == TUNA_OK, "alloc");
    memset(parts[0].rgb, 10, 4 * 3 * 3);
    memset(parts[1].rgb, 20, 2 * 5 * 3);
    memset(parts[2].rgb, 30, 4 * 5 * 3);
    tuna_error err = {0};
    REQUIRE(tuna_image_grid(parts, 3, 2, 1, 255, &g, &err) == TUNA_OK, "%s", err.message);
    /* 2 columns of 4 + 3 margins = 11 wide; 2 rows of 5 + 3 margins = 13 high. */
    CHECK(g.width == 11 && g.height == 13, "grid size %dx%d", g.width, g.height);
    CHECK(g.rgb[0] == 255, "margin");
    CHECK(g.rgb[(1 * 11 + 1) * 3] == 10, "first cell");
    CHECK(g.rgb[(1 * 11 + 6) * 3] == 20, "second cell");
    CHECK(g.rgb[(7 * 11 + 1) * 3] == 30, "third cell, second row");
    CHECK(g.rgb[(4 * 11 + 1) * 3] == 255, "below the short first image: background");
    tuna_image_free(&g);
    CHECK(tuna_image_grid(parts, 0, 1, 1, 0, &g, &err) == TUNA_ERR_INVALID, "empty grid");
    for (int i = 0; i < 3; i++) tuna_image_free(&parts[i]);
}

/* ---- hostile input ------------------------------------------------------------ */

static const char *hostile_files[] = {"rgb8.png", "gray1.png", "gray4.png", "graya16.png", "pal8_trns.png",
                                      "rgb16.png", "rgb8_interlaced.png", "rgb420.jpg", "progressive.jpg",
                                      "gray.jpg", "cmyk.jpg"};
#define HOSTILE_COUNT ((int)(sizeof hostile_files / sizeof hostile_files[0]))

/* Every prefix either fails cleanly or (only when what is cut is after the
 * pixel data: IEND, EOI) decodes to the same pixels as the whole file. */
TEST(truncation_at_many_offsets) {
    int failures = 0, accepted = 0, tried = 0;
    for (int f = 0; f < HOSTILE_COUNT; f++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURES "%s", hostile_files[f]);
        size_t n;
        uint8_t *bytes = read_bytes(path, &n);
        REQUIRE(bytes, "%s", path);
        tuna_image full;
        REQUIRE(tuna_image_decode_memory(bytes, n, NULL, &full, NULL) == TUNA_OK, "%s", path);
        size_t step = n / 300 + 1;
        for (size_t cut = 0; cut < n; cut += (cut < 64 || n - cut < 64) ? 1 : step) {
            uint8_t *prefix = malloc(cut ? cut : 1); /* exact-size copy so ASan sees over-reads */
            memcpy(prefix, bytes, cut);
            tuna_image img;
            tuna_error err = {0};
            tuna_status s = tuna_image_decode_memory(prefix, cut, NULL, &img, &err);
            tried++;
            if (s == TUNA_OK) {
                accepted++;
                CHECK(max_abs_diff(&img, &full) == 0 && n - cut <= 16, "%s cut at %zu/%zu decoded to other pixels",
                      hostile_files[f], cut, n);
                tuna_image_free(&img);
            } else {
                failures++;
                CHECK(err.message[0] != 0 && img.rgb == NULL, "%s cut at %zu: no message", hostile_files[f], cut);
            }
            free(prefix);
        }
        tuna_image_free(&full);
        free(bytes);
    }
    printf("     %d truncations: %d refused, %d accepted (only the trailer cut)\n", tried, failures, accepted);
}

TEST(flipped_bytes_never_crash) {
    tuna_rng rng;
    tuna_rng_seed(&rng, 42);
    int ok = 0, refused = 0;
    tuna_image_limits limits = tuna_image_default_limits();
    limits.max_pixels = 1 << 20; /* a flipped size byte must not make the test slow */
    for (int f = 0; f < HOSTILE_COUNT; f++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURES "%s", hostile_files[f]);
        size_t n;
        uint8_t *bytes = read_bytes(path, &n);
        REQUIRE(bytes, "%s", path);
        uint8_t *copy = malloc(n);
        for (int trial = 0; trial < 300; trial++) {
            memcpy(copy, bytes, n);
            int flips = 1 + (int)tuna_rng_below(&rng, 4);
            for (int k = 0; k < flips; k++) copy[tuna_rng_below(&rng, n)] ^= (uint8_t)(1 + tuna_rng_below(&rng, 255));
            tuna_image img;
            tuna_error err = {0};
            if (tuna_image_decode_memory(copy, n, &limits, &img, &err) == TUNA_OK) {
                ok++;
                CHECK(img.rgb && img.width > 0 && img.height > 0, "accepted but empty");
                tuna_image_free(&img);
            } else {
                refused++;
                CHECK(img.rgb == NULL && err.message[0], "refused without a message");
            }
        }
        free(copy);
        free(bytes);
    }
    printf("     corrupted files: %d decoded, %d refused\n", ok, refused);
}

/* A PNG with only a signature and an IHDR (valid CRC) declaring w x h. */
static size_t make_png_header(uint8_t *out, uint32_t w, uint32_t h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    uint8_t *c = out + 8;
    c[0] = 0; c[1] = 0; c[2] = 0; c[3] = 13;
    memcpy(c + 4, "IHDR", 4);
    uint8_t *d = c + 8;
    d[0] = (uint8_t)(w >> 24); d[1] = (uint8_t)(w >> 16); d[2] = (uint8_t)(w >> 8); d[3] = (uint8_t)w;
    d[4] = (uint8_t)(h >> 24); d[5] = (uint8_t)(h >> 16); d[6] = (uint8_t)(h >> 8); d[7] = (uint8_t)h;
    d[8] = 8; d[9] = 2; d[10] = 0; d[11] = 0; d[12] = 0;
    uint32_t crc = (uint32_t)crc32(0, c + 4, 17);
    d[13] = (uint8_t)(crc >> 24); d[14] = (uint8_t)(crc >> 16); d[15] = (uint8_t)(crc >> 8); d[16] = (uint8_t)crc;
    return 8 + 25;
}

TEST(png_bombs_refused_before_allocation) {
    uint8_t buf[64];
    tuna_image img;
    tuna_error err = {0};
    size_t n = make_png_header(buf, 100000, 100000);
    CHECK(tuna_image_decode_memory(buf, n, NULL, &img, &err) == TUNA_ERR_LIMIT, "100000^2: %s", err.message);
    printf("     100000x100000 PNG: %s\n", err.message);
    n = make_png_header(buf, 16384, 16384); /* each side allowed, 268 Mpixel is not */
    CHECK(tuna_image_decode_memory(buf, n, NULL, &img, &err) == TUNA_ERR_LIMIT, "16384^2: %s", err.message);
    n = make_png_header(buf, 300, 200);
    tuna_image_limits small = tuna_image_default_limits();
    small.max_side = 256;
    CHECK(tuna_image_decode_memory(buf, n, &small, &img, &err) == TUNA_ERR_LIMIT, "custom side: %s", err.message);
    small = tuna_image_default_limits();
    small.max_pixels = 1000;
    CHECK(tuna_image_decode_memory(buf, n, &small, &img, &err) == TUNA_ERR_LIMIT, "custom pixels: %s", err.message);
    /* Within limits, but the file ends after IHDR: truncated, not a crash. */
    CHECK(tuna_image_decode_memory(buf, n, NULL, &img, &err) == TUNA_ERR_FORMAT, "truncated: %s", err.message);
    n = make_png_header(buf, 0, 10);
    CHECK(tuna_image_decode_memory(buf, n, NULL, &img, &err) != TUNA_OK, "zero width: %s", err.message);
}

/* Patch the SOF dimensions of a real JPEG. */
TEST(jpeg_bomb_refused_before_allocation) {
    size_t n;
    uint8_t *bytes = read_bytes(FIXTURES "rgb420.jpg", &n);
    REQUIRE(bytes, "read");
    size_t sof = 0;
    for (size_t i = 2; i + 9 < n; i++)
        if (bytes[i] == 0xff && (bytes[i + 1] == 0xc0 || bytes[i + 1] == 0xc2)) { sof = i; break; }
    REQUIRE(sof, "no SOF marker");
    bytes[sof + 5] = 65000 >> 8; bytes[sof + 6] = 65000 & 0xff; /* height */
    bytes[sof + 7] = 65000 >> 8; bytes[sof + 8] = 65000 & 0xff; /* width */
    tuna_image img;
    tuna_error err = {0};
    CHECK(tuna_image_decode_memory(bytes, n, NULL, &img, &err) == TUNA_ERR_LIMIT, "65000^2: %s", err.message);
    printf("     65000x65000 JPEG: %s\n", err.message);
    bytes[sof + 5] = 0; bytes[sof + 6] = 0; /* height 0 */
    CHECK(tuna_image_decode_memory(bytes, n, NULL, &img, &err) != TUNA_OK, "height 0: %s", err.message);
    free(bytes);
}

TEST(wrong_crc_refused) {
    size_t n;
    uint8_t *bytes = read_bytes(FIXTURES "rgb8.png", &n);
    REQUIRE(bytes && n > 60, "read");
    tuna_image img;
    tuna_error err = {0};
    bytes[8 + 8 + 3] ^= 1; /* IHDR width byte; CRC now wrong */
    CHECK(tuna_image_decode_memory(bytes, n, NULL, &img, &err) == TUNA_ERR_FORMAT, "IHDR crc: %s", err.message);
    bytes[8 + 8 + 3] ^= 1;
    size_t idat = 0;
    for (size_t i = 8; i + 8 < n; i++)
        if (memcmp(bytes + i, "IDAT", 4) == 0) { idat = i; break; }
    REQUIRE(idat, "IDAT");
    bytes[idat + 4 + 10] ^= 0x40; /* inside IDAT data */
    CHECK(tuna_image_decode_memory(bytes, n, NULL, &img, &err) == TUNA_ERR_FORMAT, "IDAT crc: %s", err.message);
    bytes[idat + 4 + 10] ^= 0x40;
    /* Only the stored CRC of IDAT wrong, the data intact. */
    uint32_t len = (uint32_t)bytes[idat - 4] << 24 | (uint32_t)bytes[idat - 3] << 16 | (uint32_t)bytes[idat - 2] << 8 |
                   bytes[idat - 1];
    REQUIRE(idat + 4 + len + 4 <= n, "IDAT length");
    bytes[idat + 4 + len] ^= 0xff;
    CHECK(tuna_image_decode_memory(bytes, n, NULL, &img, &err) == TUNA_ERR_FORMAT, "IDAT crc: %s", err.message);
    printf("     bad IDAT CRC: %s\n", err.message);
    free(bytes);
}

TEST(junk_refused) {
    tuna_image img;
    tuna_error err = {0};
    uint8_t zero = 0;
    CHECK(tuna_image_decode_memory(&zero, 0, NULL, &img, &err) == TUNA_ERR_FORMAT, "empty: %s", err.message);
    CHECK(tuna_image_decode_memory(NULL, 0, NULL, &img, &err) == TUNA_ERR_FORMAT, "NULL");
    const char *text = "Hello, this is not an image at all.";
    CHECK(tuna_image_decode_memory((const uint8_t *)text, strlen(text), NULL, &img, &err) == TUNA_ERR_FORMAT, "text");
    uint8_t zeros[4096] = {0};
    CHECK(tuna_image_decode_memory(zeros, sizeof zeros, NULL, &img, &err) == TUNA_ERR_FORMAT, "zeros");
    uint8_t soi_only[4] = {0xff, 0xd8, 0xff, 0xd9};
    CHECK(tuna_image_decode_memory(soi_only, 4, NULL, &img, &err) == TUNA_ERR_FORMAT, "SOI+EOI: %s", err.message);
    uint8_t sig_only[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    CHECK(tuna_image_decode_memory(sig_only, 8, NULL, &img, &err) == TUNA_ERR_FORMAT, "signature only: %s", err.message);
    CHECK(tuna_image_decode_file("tests/fixtures/image/does-not-exist.png", NULL, &img, &err) == TUNA_ERR_IO,
          "missing file: %s", err.message);
    CHECK(img.rgb == NULL, "no image on failure");
}

int main(void) {
    RUN(detect_format);
    RUN(decode_matches_pil);
    RUN(decode_memory_equals_file);
    RUN(resize_crop_matches_pil);
    RUN(resize_crop_default_is_cover);
    RUN(bucket_rule);
    RUN(to_tensor_matches_torch);
    RUN(from_tensor_matches_torch);
    RUN(png_write_read_round_trip);
    RUN(tensor_round_trip);
    RUN(metrics_match_skimage);
    RUN(grid);
    RUN(truncation_at_many_offsets);
    RUN(flipped_bytes_never_crash);
    RUN(png_bombs_refused_before_allocation);
    RUN(jpeg_bomb_refused_before_allocation);
    RUN(wrong_crc_refused);
    RUN(junk_refused);
    return test_summary();
}
