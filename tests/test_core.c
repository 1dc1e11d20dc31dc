/* Core: dtype conversions, tensors, rng, atomic writes. */
#include "test.h"
#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"

#include <unistd.h>

TEST(bf16_round_trip_and_rounding) {
    CHECK(tuna_bf16_to_f32(tuna_f32_to_bf16(1.0f)) == 1.0f, "1.0");
    CHECK(tuna_bf16_to_f32(tuna_f32_to_bf16(-2.5f)) == -2.5f, "-2.5");
    /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1+2^-7: ties to even -> 1.0 */
    CHECK(tuna_bf16_to_f32(tuna_f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f, "tie to even");
    CHECK(tuna_bf16_to_f32(tuna_f32_to_bf16(1.0f + 3.0f / 512)) == 1.0f + 1.0f / 128, "round up");
    float nan = NAN;
    CHECK(isnan(tuna_bf16_to_f32(tuna_f32_to_bf16(nan))), "NaN stays NaN");
}

TEST(f16_round_trip_all_values) {
    /* every finite half converts to f32 and back to itself */
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u) continue;
        float f = tuna_f16_to_f32((uint16_t)h);
        if (tuna_f32_to_f16(f) != (uint16_t)h) bad++;
    }
    CHECK(bad == 0, "%d halves did not round-trip", bad);
    CHECK(tuna_f16_to_f32(0x3c00) == 1.0f, "1.0");
    CHECK(tuna_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "smallest subnormal");
    CHECK(tuna_f32_to_f16(65520.0f) == 0x7c00, "overflow to inf");
}

TEST(tensor_alloc_view_slice) {
    tuna_tensor t;
    int64_t shape[3] = {4, 3, 5};
    tuna_error err = {0};
    REQUIRE(tuna_tensor_alloc(&t, TUNA_F32, 3, shape, &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_tensor_numel(&t) == 60, "numel");
    CHECK(t.stride[0] == 15 && t.stride[1] == 5 && t.stride[2] == 1, "strides");
    CHECK(tuna_tensor_is_contiguous(&t), "contiguous");
    ((float *)t.data)[15] = 7.0f;
    tuna_tensor rows = tuna_tensor_slice_rows(&t, 1, 3);
    CHECK(rows.shape[0] == 2 && ((float *)rows.data)[0] == 7.0f, "slice");
    CHECK(rows.storage == TUNA_STORAGE_VIEW, "slice is a view");
    char buf[64];
    CHECK(strcmp(tuna_tensor_shape_string(&t, buf, sizeof buf), "[4, 3, 5]") == 0, "shape string %s", buf);
    tuna_tensor_free(&t);
    int64_t huge[2] = {INT64_MAX / 2, 4};
    CHECK(tuna_tensor_alloc(&t, TUNA_F32, 2, huge, &err) == TUNA_ERR_LIMIT, "overflow refused");
}

TEST(rng_reproducible_and_normal) {
    tuna_rng a, b;
    tuna_rng_seed(&a, 42);
    tuna_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= tuna_rng_next(&a) == tuna_rng_next(&b);
    CHECK(same, "same seed, same stream");
    double sum = 0, sq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) { double z = tuna_rng_normal(&a); sum += z; sq += z * z; }
    CHECK(fabs(sum / n) < 0.01, "mean %f", sum / n);
    CHECK(fabs(sq / n - 1.0) < 0.02, "variance %f", sq / n);
    tuna_rng_seed(&b, 43);
    CHECK(tuna_rng_next(&a) != tuna_rng_next(&b), "different seeds differ");
}

static void add_range(void *ctx, long begin, long end) {
    long *counts = ctx;
    for (long i = begin; i < end; i++) counts[i]++;
}

TEST(parallel_for_covers_range_once) {
    tuna_threads pool;
    tuna_threads_init(&pool, 3);
    long counts[1001] = {0};
    tuna_parallel_for(&pool, 1001, add_range, counts);
    int bad = 0;
    for (int i = 0; i < 1001; i++) bad += counts[i] != 1;
    CHECK(bad == 0, "%d indices not visited exactly once", bad);
}

static tuna_status write_hello(FILE *out, void *ctx, tuna_error *err) {
    (void)err;
    fputs((const char *)ctx, out);
    return TUNA_OK;
}

static tuna_status write_fails(FILE *out, void *ctx, tuna_error *err) {
    (void)ctx;
    fputs("partial", out);
    return tuna_fail(err, TUNA_ERR_IO, "simulated failure");
}

TEST(atomic_write_replaces_or_keeps) {
    char path[] = "/tmp/tuna_test_atomicXXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    tuna_error err = {0};
    CHECK(tuna_write_file_atomic(path, write_hello, "hello", &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_write_file_atomic(path, write_fails, NULL, &err) == TUNA_ERR_IO, "failure reported");
    char *text = NULL;
    REQUIRE(tuna_read_file(path, 1 << 20, &text, NULL, &err) == TUNA_OK, "%s", err.message);
    CHECK(strcmp(text, "hello") == 0, "old content kept after a failed write: '%s'", text);
    free(text);
    unlink(path);
}

int main(void) {
    RUN(bf16_round_trip_and_rounding);
    RUN(f16_round_trip_all_values);
    RUN(tensor_alloc_view_slice);
    RUN(rng_reproducible_and_normal);
    RUN(parallel_for_covers_range_once);
    RUN(atomic_write_replaces_or_keeps);
    return test_summary();
}
