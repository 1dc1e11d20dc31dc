/* Small helpers shared by the JSON readers of src/io (private to src/io). */
#ifndef TUNA_IO_JSON_UTIL_H
#define TUNA_IO_JSON_UTIL_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A JSON number that is a whole number in [0, 2^53] (every such double is an
 * exact integer; larger values could not have been written exactly). */
static inline int json_whole_number(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || v != floor(v)) return 0;
    *out = (uint64_t)v;
    return 1;
}

static inline int json_compare_keys_(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first duplicate key of an object (in sorted order), or NULL. O(n log n);
 * *failed is set when memory runs out. The returned pointer is the object's. */
static inline const char *json_duplicate_key(const cJSON *object, int *failed) {
    size_t n = 0;
    *failed = 0;
    for (const cJSON *it = object ? object->child : NULL; it; it = it->next) n++;
    if (n < 2) return NULL;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) { *failed = 1; return NULL; }
    n = 0;
    for (const cJSON *it = object->child; it; it = it->next) keys[n++] = it->string ? it->string : "";
    qsort(keys, n, sizeof *keys, json_compare_keys_);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
    free(keys);
    return dup;
}

#endif
