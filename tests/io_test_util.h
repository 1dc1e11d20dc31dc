/* Helpers shared by the checkpoint tests: expected values from
 * tests/fixtures/io/expected.json (written by tools/make_io_fixtures.py) and
 * whole-file reads. Header-only; include after test.h. */
#ifndef TUNA_IO_TEST_UTIL_H
#define TUNA_IO_TEST_UTIL_H

#include "core/mapped_file.h"
#include "core/tensor.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IO_FIXTURES "tests/fixtures/io/"

static inline unsigned char *read_whole(const char *path, size_t *size) {
    char *data = NULL;
    if (tuna_read_file(path, (size_t)64 << 20, &data, size, NULL) != TUNA_OK) return NULL;
    return (unsigned char *)data;
}

/* The expected.json section ("flat" or "wrapped"); caller cJSON_Deletes *root. */
static inline const cJSON *load_expected(const char *section, cJSON **root) {
    size_t size;
    unsigned char *text = read_whole(IO_FIXTURES "expected.json", &size);
    if (!text) return NULL;
    *root = cJSON_ParseWithLength((const char *)text, size);
    free(text);
    return *root ? cJSON_GetObjectItemCaseSensitive(*root, section) : NULL;
}

/* 0 if t matches the expected dtype, shape and bytes; else prints why. */
static inline int compare_with_expected(const char *name, const tuna_tensor *t, const cJSON *e) {
    if (!t) { fprintf(stderr, "  %s: missing\n", name); return 1; }
    const char *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype")->valuestring;
    if (strcmp(dtype, tuna_dtype_name(t->dtype)) != 0) {
        fprintf(stderr, "  %s: dtype %s, expected %s\n", name, tuna_dtype_name(t->dtype), dtype);
        return 1;
    }
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (cJSON_GetArraySize(shape) != t->ndim) { fprintf(stderr, "  %s: rank differs\n", name); return 1; }
    int d = 0;
    for (const cJSON *it = shape->child; it; it = it->next, d++)
        if ((int64_t)it->valuedouble != t->shape[d]) { fprintf(stderr, "  %s: shape differs\n", name); return 1; }
    if (!tuna_tensor_is_contiguous(t)) { fprintf(stderr, "  %s: not contiguous\n", name); return 1; }
    const char *hex = cJSON_GetObjectItemCaseSensitive(e, "hex")->valuestring;
    size_t n = tuna_tensor_nbytes(t);
    if (strlen(hex) != 2 * n) { fprintf(stderr, "  %s: %zu bytes, expected %zu\n", name, n, strlen(hex) / 2); return 1; }
    const unsigned char *p = t->data;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        if (p[i] != v) { fprintf(stderr, "  %s: byte %zu is %02x, expected %02x\n", name, i, p[i], v); return 1; }
    }
    return 0;
}

#endif
