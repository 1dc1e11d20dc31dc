/* libFuzzer target: decode untrusted bytes as PNG/JPEG (the HTTP server's path),
 * then run the rest of the input pipeline on whatever decodes.
 *   make fuzz && build-fuzz/fuzz/fuzz_image -max_total_time=300 corpus/ tests/fixtures/image/
 * Limits are lowered so a declared-large image cannot make one run slow; the
 * sanitizers catch memory errors, the fuzzer catches hangs and leaks. */
#include <stdint.h>
#include <stdlib.h>

#include "io/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tuna_image_limits limits = tuna_image_default_limits();
    limits.max_side = 4096;
    limits.max_pixels = 1 << 20;
    limits.max_jpeg_scans = 100;
    tuna_image img;
    tuna_error err;
    if (tuna_image_decode_memory(data, size, &limits, &img, &err) != TUNA_OK) return 0;
    /* Exercise the preprocessing on the decoded image (small target, cheap). */
    int bh = 0, bw = 0;
    static const tuna_bucket buckets[3] = {{32, 32}, {16, 48}, {48, 16}};
    if (tuna_image_pick_bucket(img.width, img.height, buckets, 3, &bh, &bw) >= 0 &&
        (int64_t)img.width * img.height <= (1 << 16)) {
        tuna_image out;
        if (tuna_image_resize_crop_mode(&img, bh, bw, (tuna_crop_mode)(size % 3), &out, &err) == TUNA_OK) {
            float *chw = malloc((size_t)bh * bw * 3 * sizeof *chw);
            if (chw) {
                tuna_image_to_tensor(&out, chw);
                tuna_image back;
                if (tuna_image_from_tensor(chw, bh, bw, &back, &err) == TUNA_OK) tuna_image_free(&back);
                free(chw);
            }
            tuna_image_free(&out);
        }
    }
    tuna_image_free(&img);
    return 0;
}
