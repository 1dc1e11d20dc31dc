/* Minimal test harness. Each tests/test_*.c is one executable:
 *
 *     TEST(rmsnorm_matches_naive) { ... CHECK(cond, "fmt", ...); ... }
 *     int main(void) { RUN(rmsnorm_matches_naive); return test_summary(); }
 *
 * A test fails if any CHECK inside it fails. The binary prints one line per
 * test and ends with "RESULT passed=N failed=M"; tests/run_tests.sh adds them
 * up into the final "N passed, N failed" line. Fixture paths are relative to
 * the repository root (the runner starts every binary there). */
#ifndef TUNA_TEST_H
#define TUNA_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_checks_;
static int test_passed_;
static int test_failed_;

#define TEST(name) static void test_##name(void)

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            test_failed_checks_++;                                              \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Stop the current test after a failed check (e.g. a NULL that would crash). */
#define REQUIRE(cond, ...)                                                      \
    do {                                                                        \
        int before_ = test_failed_checks_;                                      \
        CHECK(cond, __VA_ARGS__);                                               \
        if (test_failed_checks_ != before_) return;                             \
    } while (0)

#define RUN(name)                                                               \
    do {                                                                        \
        test_failed_checks_ = 0;                                                \
        test_##name();                                                          \
        if (test_failed_checks_) { test_failed_++; printf("FAIL %s\n", #name); } \
        else { test_passed_++; printf("ok   %s\n", #name); }                   \
        fflush(stdout);                                                         \
    } while (0)

static inline int test_summary(void) {
    printf("RESULT passed=%d failed=%d\n", test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

/* Relative error of a against reference b over n floats:
 * max_i |a_i - b_i| / (max_i |b_i| + tiny). Scale-aware, robust to zeros. */
static inline double test_max_relative_error(const float *a, const float *b, long n) {
    double max_diff = 0, max_ref = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > max_diff || d != d) max_diff = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > max_ref) max_ref = fabs((double)b[i]);
    }
    return max_diff / (max_ref + 1e-30);
}

#endif
