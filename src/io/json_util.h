/* Small helpers shared by the JSON readers of src/io (private to src/io). */
#ifndef TUNA_IO_JSON_UTIL_H
#define TUNA_IO_JSON_UTIL_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
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

/* Number of members of an object whose key equals key (cJSON keeps duplicates). */
static inline int json_count_key(const cJSON *object, const char *key) {
    int n = 0;
    for (const cJSON *it = object ? object->child : NULL; it; it = it->next)
        if (it->string && strcmp(it->string, key) == 0) n++;
    return n;
}

/* The first duplicate key of an object, or NULL. O(n^2): for small objects. */
static inline const char *json_duplicate_key(const cJSON *object) {
    for (const cJSON *a = object ? object->child : NULL; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0) return a->string;
    return NULL;
}

#endif
