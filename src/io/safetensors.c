/* safetensors reader (zero copy over a mapping) and writer (atomic).
 *
 * Validation follows the Rust reference library (huggingface/safetensors,
 * Metadata::validate and read_metadata) and adds the checks it gets from serde
 * for free (types of every field) plus duplicate names, which cJSON keeps:
 *   - file >= 8 bytes; header length N <= 100 MB and 8 + N <= file size;
 *   - the header is a JSON object (first byte '{'), trailing bytes only spaces;
 *   - "__metadata__" (at most once) is an object of string -> string;
 *   - every other member is {"dtype": str, "shape": [uint...], "data_offsets":
 *     [begin, end]} with no other field, a known dtype, at most TUNA_MAX_DIMS
 *     dims, numel * dtype size computed without overflow and equal to end-begin;
 *   - sorted by begin, the ranges tile [0, size - 8 - N) exactly: the first
 *     begins at 0, each begins where the previous ended, the last ends at the
 *     end of the file (no gap, no overlap, no trailing bytes);
 *   - names are unique. */
#include "io/safetensors.h"
#include "io/json_util.h"
#include "core/tensor.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ----------------------------------------------------------- */

static int compare_entries_by_name(const void *a, const void *b) {
    return strcmp(((const tuna_safetensors_entry *)a)->name, ((const tuna_safetensors_entry *)b)->name);
}

static int compare_entries_by_offset(const void *a, const void *b) {
    const tuna_safetensors_entry *x = a, *y = b;
    if (x->data_begin != y->data_begin) return x->data_begin < y->data_begin ? -1 : 1;
    /* zero-sized tensors share a begin with their neighbour: order by end */
    if (x->data_end != y->data_end) return x->data_end < y->data_end ? -1 : 1;
    return 0;
}

static void free_contents(tuna_safetensors *st) {
    for (size_t i = 0; i < st->count; i++) free(st->entries[i].name);
    free(st->entries);
    for (size_t i = 0; i < st->metadata_count; i++) {
        free(st->metadata[i].key);
        free(st->metadata[i].value);
    }
    free(st->metadata);
    st->entries = NULL;
    st->metadata = NULL;
    st->count = st->metadata_count = 0;
}

static tuna_status parse_metadata(const cJSON *object, const char *what, tuna_safetensors *st, tuna_error *err) {
    if (!cJSON_IsObject(object))
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: \"__metadata__\" is not an object", what);
    int failed;
    const char *dup = json_duplicate_key(object, &failed);
    if (failed) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    if (dup) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: \"__metadata__\" has the key \"%s\" twice", what, dup);
    size_t n = (size_t)cJSON_GetArraySize(object);
    st->metadata = calloc(n ? n : 1, sizeof *st->metadata);
    if (!st->metadata) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    for (const cJSON *it = object->child; it; it = it->next) {
        if (!cJSON_IsString(it))
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: \"__metadata__\".\"%s\" is not a string", what, it->string);
        tuna_safetensors_kv *kv = &st->metadata[st->metadata_count++];
        kv->key = strdup(it->string);
        kv->value = strdup(it->valuestring);
        if (!kv->key || !kv->value) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    }
    return TUNA_OK;
}

/* One tensor description; fills e (except the data pointer). */
static tuna_status parse_tensor_info(const cJSON *info, const char *name, const char *what,
                                     tuna_safetensors_entry *e, tuna_error *err) {
    if (!cJSON_IsObject(info)) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": not an object", what, name);
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *it = info->child; it; it = it->next) {
        const cJSON **slot = strcmp(it->string, "dtype") == 0          ? &dtype
                             : strcmp(it->string, "shape") == 0        ? &shape
                             : strcmp(it->string, "data_offsets") == 0 ? &offsets
                                                                       : NULL;
        if (!slot) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": unknown field \"%s\"", what, name, it->string);
        if (*slot) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": field \"%s\" given twice", what, name, it->string);
        *slot = it;
    }
    if (!dtype || !shape || !offsets)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": missing \"%s\"", what, name,
                         !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dtype)) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": dtype is not a string", what, name);
    tuna_dtype dt;
    if (!tuna_dtype_from_name(dtype->valuestring, &dt))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "%s: tensor \"%s\": dtype \"%.32s\" is not supported", what, name,
                         dtype->valuestring);
    if (!cJSON_IsArray(shape)) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": shape is not an array", what, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > TUNA_MAX_DIMS)
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "%s: tensor \"%s\": %d dimensions (at most %d)", what, name, ndim,
                         TUNA_MAX_DIMS);
    int64_t dims[TUNA_MAX_DIMS];
    size_t nbytes = tuna_dtype_size(dt);
    int d = 0;
    for (const cJSON *it = shape->child; it; it = it->next, d++) {
        uint64_t v;
        if (!json_whole_number(it, &v))
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", what, name, d);
        dims[d] = (int64_t)v;
        if (tuna_mul_overflows(nbytes, (size_t)v, &nbytes))
            return tuna_fail(err, TUNA_ERR_LIMIT, "%s: tensor \"%s\": shape overflows", what, name);
    }
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": data_offsets is not [begin, end]", what, name);
    uint64_t begin, end;
    if (!json_whole_number(offsets->child, &begin) || !json_whole_number(offsets->child->next, &end))
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": data_offsets are not non-negative integers", what, name);
    if (end < begin) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": data_offsets end before begin", what, name);
    if (end - begin != nbytes)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": %s %s is %zu bytes but data_offsets span %llu", what,
                         name, tuna_dtype_name(dt), "shape", nbytes, (unsigned long long)(end - begin));
    e->data_begin = (size_t)begin;
    e->data_end = (size_t)end;
    tuna_tensor_init_view(&e->tensor, dt, ndim, dims, NULL);
    return TUNA_OK;
}

static tuna_status parse_header(const cJSON *root, const char *what, const unsigned char *data_region,
                                size_t data_size, tuna_safetensors *st, tuna_error *err) {
    size_t members = (size_t)cJSON_GetArraySize(root);
    st->entries = calloc(members ? members : 1, sizeof *st->entries);
    if (!st->entries) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    int seen_metadata = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (seen_metadata++) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: \"__metadata__\" given twice", what);
            TUNA_TRY(parse_metadata(it, what, st, err));
            continue;
        }
        tuna_safetensors_entry *e = &st->entries[st->count];
        e->name = strdup(it->string);
        if (!e->name) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
        st->count++;
        TUNA_TRY(parse_tensor_info(it, e->name, what, e, err));
    }
    /* the byte ranges must tile the data region in order (Rust: Metadata::validate) */
    qsort(st->entries, st->count, sizeof *st->entries, compare_entries_by_offset);
    size_t expected_begin = 0;
    for (size_t i = 0; i < st->count; i++) {
        tuna_safetensors_entry *e = &st->entries[i];
        if (e->data_begin != expected_begin)
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\": data_offsets begin at %zu, expected %zu (%s)", what,
                             e->name, e->data_begin, expected_begin,
                             e->data_begin < expected_begin ? "overlaps the previous tensor" : "gap before it");
        expected_begin = e->data_end;
    }
    if (expected_begin != data_size)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensors cover %zu bytes of data but the file holds %zu", what,
                         expected_begin, data_size);
    for (size_t i = 0; i < st->count; i++)
        st->entries[i].tensor.data = (void *)(data_region + st->entries[i].data_begin);
    qsort(st->entries, st->count, sizeof *st->entries, compare_entries_by_name);
    for (size_t i = 1; i < st->count; i++)
        if (strcmp(st->entries[i - 1].name, st->entries[i].name) == 0)
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor \"%s\" is defined twice", what, st->entries[i].name);
    return TUNA_OK;
}

tuna_status tuna_safetensors_parse(const void *data, size_t size, const char *what, tuna_safetensors *st,
                                   tuna_error *err) {
    memset(st, 0, sizeof *st);
    if (!what) what = "<memory>";
    const unsigned char *bytes = data;
    if (size < 8) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", what, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    if (n > TUNA_SAFETENSORS_MAX_HEADER)
        return tuna_fail(err, TUNA_ERR_LIMIT, "%s: header length %llu is larger than the %zu-byte limit", what,
                         (unsigned long long)n, TUNA_SAFETENSORS_MAX_HEADER);
    if (n > size - 8)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", what,
                         (unsigned long long)n, size);
    if (n < 2 || bytes[8] != '{') return tuna_fail(err, TUNA_ERR_FORMAT, "%s: header does not start with '{'", what);
    const char *header = (const char *)bytes + 8;
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, (size_t)n, &parse_end, 0);
    if (!root) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: header is not valid JSON", what);
    tuna_status s = TUNA_OK;
    /* after the object only the writer's padding (spaces) may follow; a NUL ends cJSON early */
    for (const char *p = parse_end; p < header + n; p++)
        if (*p != ' ') { s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: bytes after the JSON header", what); break; }
    if (s == TUNA_OK && !cJSON_IsObject(root)) s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: header is not a JSON object", what);
    if (s == TUNA_OK) s = parse_header(root, what, bytes + 8 + n, size - 8 - (size_t)n, st, err);
    cJSON_Delete(root);
    if (s != TUNA_OK) { free_contents(st); return s; }
    st->header_size = (size_t)n;
    return TUNA_OK;
}

tuna_status tuna_safetensors_open(const char *path, tuna_safetensors *st, tuna_error *err) {
    tuna_mapped_file file;
    memset(st, 0, sizeof *st);
    TUNA_TRY(tuna_mapped_file_open(&file, path, err));
    tuna_status s = tuna_safetensors_parse(file.data, file.size, path, st, err);
    if (s != TUNA_OK) { tuna_mapped_file_close(&file); return s; }
    st->file = file;
    return TUNA_OK;
}

void tuna_safetensors_close(tuna_safetensors *st) {
    if (!st) return;
    free_contents(st);
    tuna_mapped_file_close(&st->file);
    memset(st, 0, sizeof *st);
}

const tuna_tensor *tuna_safetensors_find(const tuna_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->entries[mid].name, name);
        if (c == 0) return &st->entries[mid].tensor;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *tuna_safetensors_metadata_get(const tuna_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->metadata_count; i++)
        if (strcmp(st->metadata[i].key, key) == 0) return st->metadata[i].value;
    return NULL;
}

/* ---- writing ----------------------------------------------------------- */

/* A growable string for the JSON header. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} text_buffer;

static void text_append(text_buffer *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) { b->failed = 1; return; }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void text_puts(text_buffer *b, const char *s) { text_append(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control bytes escaped; UTF-8 kept. */
static void text_json_string(text_buffer *b, const char *s) {
    text_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; text_append(b, esc, 2); }
        else if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); text_puts(b, esc); }
        else text_append(b, (const char *)p, 1);
    }
    text_puts(b, "\"");
}

typedef struct {
    const tuna_tensor *tensors;
    const char *const *names;
    size_t n;
    const char *const *metadata;
    size_t *order;               /* data layout order: dtype size descending, then name */
} write_request;

/* Laying tensors out by decreasing element size (as the reference library
 * does) keeps every tensor aligned to its element size, since the header pads
 * the data region to 8 bytes and every size is a power of two. */
static int compare_layout(const void *a, const void *b, void *ctx) {
    const write_request *sort_request = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    size_t si = tuna_dtype_size(sort_request->tensors[i].dtype), sj = tuna_dtype_size(sort_request->tensors[j].dtype);
    if (si != sj) return si > sj ? -1 : 1;
    int c = strcmp(sort_request->names[i] ? sort_request->names[i] : "", sort_request->names[j] ? sort_request->names[j] : "");
    return c ? c : (i < j ? -1 : i > j);
}

static tuna_status build_header(const write_request *r, text_buffer *b, tuna_error *err) {
    text_puts(b, "{");
    int first = 1;
    if (r->metadata && r->metadata[0]) {
        text_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; r->metadata[i]; i += 2) {
            if (!r->metadata[i + 1]) return tuna_fail(err, TUNA_ERR_INVALID, "metadata key \"%s\" has no value", r->metadata[i]);
            if (i) text_puts(b, ",");
            text_json_string(b, r->metadata[i]);
            text_puts(b, ":");
            text_json_string(b, r->metadata[i + 1]);
        }
        text_puts(b, "}");
        first = 0;
    }
    size_t offset = 0;
    for (size_t k = 0; k < r->n; k++) {
        size_t i = r->order[k];
        const tuna_tensor *t = &r->tensors[i];
        if (!r->names[i] || strcmp(r->names[i], "__metadata__") == 0)
            return tuna_fail(err, TUNA_ERR_INVALID, "tensor %zu has no usable name", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->names[i], r->names[j]) == 0)
                return tuna_fail(err, TUNA_ERR_INVALID, "tensor name \"%s\" given twice", r->names[i]);
        if ((unsigned)t->dtype >= TUNA_DTYPE_COUNT || tuna_dtype_is_quantized(t->dtype) || t->ndim < 0 ||
            t->ndim > TUNA_MAX_DIMS)
            return tuna_fail(err, TUNA_ERR_INVALID, "tensor \"%s\" has a bad dtype or rank", r->names[i]);
        char num[64];
        if (!first) text_puts(b, ",");
        first = 0;
        text_json_string(b, r->names[i]);
        text_puts(b, ":{\"dtype\":\"");
        text_puts(b, tuna_dtype_name(t->dtype));
        text_puts(b, "\",\"shape\":[");
        size_t nbytes = tuna_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) return tuna_fail(err, TUNA_ERR_INVALID, "tensor \"%s\" has a negative dimension", r->names[i]);
            if (tuna_mul_overflows(nbytes, (size_t)t->shape[d], &nbytes))
                return tuna_fail(err, TUNA_ERR_LIMIT, "tensor \"%s\" is too large", r->names[i]);
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            text_puts(b, num);
        }
        if (nbytes && !t->data) return tuna_fail(err, TUNA_ERR_INVALID, "tensor \"%s\" has no data", r->names[i]);
        size_t end;
        if (tuna_add_overflows(offset, nbytes, &end)) return tuna_fail(err, TUNA_ERR_LIMIT, "tensors too large");
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offset, end);
        text_puts(b, num);
        offset = end;
    }
    text_puts(b, "}");
    while (!b->failed && b->len % 8) text_puts(b, " "); /* 8-byte aligned data region */
    if (b->failed) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory building a safetensors header");
    return TUNA_OK;
}

/* Elements of a possibly strided tensor, in row-major order. */
static tuna_status write_tensor_data(FILE *out, const tuna_tensor *t, tuna_error *err) {
    size_t esize = tuna_dtype_size(t->dtype);
    int64_t numel = tuna_tensor_numel(t);
    if (numel == 0) return TUNA_OK;
    if (tuna_tensor_is_contiguous(t)) {
        if (fwrite(t->data, esize, (size_t)numel, out) != (size_t)numel)
            return tuna_fail(err, TUNA_ERR_IO, "short write of tensor data");
        return TUNA_OK;
    }
    int64_t index[TUNA_MAX_DIMS] = {0};
    for (int64_t k = 0; k < numel; k++) {
        int64_t offset = 0;
        for (int d = 0; d < t->ndim; d++) offset += index[d] * t->stride[d];
        if (fwrite((const char *)t->data + offset * (int64_t)esize, esize, 1, out) != 1)
            return tuna_fail(err, TUNA_ERR_IO, "short write of tensor data");
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++index[d] < t->shape[d]) break;
            index[d] = 0;
        }
    }
    return TUNA_OK;
}

static tuna_status plan_layout(write_request *r, tuna_error *err) {
    r->order = malloc((r->n ? r->n : 1) * sizeof *r->order);
    if (!r->order) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->n; i++) r->order[i] = i;
    qsort_r(r->order, r->n, sizeof *r->order, compare_layout, r);
    return TUNA_OK;
}

static tuna_status write_all(FILE *out, void *ctx, tuna_error *err) {
    const write_request *r = ctx;
    text_buffer header = {0};
    tuna_status s = build_header(r, &header, err);
    if (s == TUNA_OK) {
        unsigned char len[8];
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
        if (fwrite(len, 1, 8, out) != 8 || fwrite(header.data, 1, header.len, out) != header.len)
            s = tuna_fail(err, TUNA_ERR_IO, "short write of safetensors header");
    }
    for (size_t k = 0; s == TUNA_OK && k < r->n; k++) s = write_tensor_data(out, &r->tensors[r->order[k]], err);
    free(header.data);
    return s;
}

tuna_status tuna_safetensors_write_stream(FILE *out, const tuna_tensor *tensors, const char *const *names, size_t n,
                                          const char *const *metadata, tuna_error *err) {
    write_request r = {tensors, names, n, metadata, NULL};
    TUNA_TRY(plan_layout(&r, err));
    tuna_status s = write_all(out, &r, err);
    free(r.order);
    return s;
}

tuna_status tuna_safetensors_write(const char *path, const tuna_tensor *tensors, const char *const *names, size_t n,
                                   const char *const *metadata, tuna_error *err) {
    write_request r = {tensors, names, n, metadata, NULL};
    TUNA_TRY(plan_layout(&r, err));
    tuna_status s = tuna_write_file_atomic(path, write_all, &r, err);
    free(r.order);
    if (s != TUNA_OK) return tuna_fail_context(err, s, "writing %s", path);
    return TUNA_OK;
}

/* ---- sharded index ----------------------------------------------------- */

void tuna_safetensors_index_free(tuna_safetensors_index *index) {
    if (!index) return;
    for (size_t i = 0; i < index->count; i++) free(index->names[i]);
    for (size_t i = 0; i < index->shard_count; i++) free(index->shard_files[i]);
    free(index->names);
    free(index->shards);
    free(index->shard_files);
    memset(index, 0, sizeof *index);
}

static int plain_file_name(const char *s) {
    return s[0] && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/') && !strchr(s, '\\');
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static tuna_status parse_weight_map(const cJSON *map, const char *what, tuna_safetensors_index *index, tuna_error *err) {
    size_t n = (size_t)cJSON_GetArraySize(map);
    index->names = calloc(n ? n : 1, sizeof *index->names);
    index->shards = calloc(n ? n : 1, sizeof *index->shards);
    index->shard_files = calloc(n ? n : 1, sizeof *index->shard_files);
    if (!index->names || !index->shards || !index->shard_files) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    for (const cJSON *it = map->child; it; it = it->next) {
        if (!cJSON_IsString(it) || !plain_file_name(it->valuestring))
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: weight_map[\"%s\"] is not a plain file name", what, it->string);
        size_t shard = 0;
        while (shard < index->shard_count && strcmp(index->shard_files[shard], it->valuestring)) shard++;
        if (shard == index->shard_count) {
            if (!(index->shard_files[shard] = strdup(it->valuestring))) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
            index->shard_count++;
        }
        if (!(index->names[index->count] = strdup(it->string))) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
        index->shards[index->count++] = index->shard_files[shard];
    }
    /* duplicates: sort a copy of the name pointers */
    const char **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < index->count; i++) sorted[i] = index->names[i];
    qsort(sorted, index->count, sizeof *sorted, compare_strings);
    tuna_status s = TUNA_OK;
    for (size_t i = 1; i < index->count && s == TUNA_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: weight_map lists \"%s\" twice", what, sorted[i]);
    free(sorted);
    return s;
}

tuna_status tuna_safetensors_index_parse(const char *json, size_t len, const char *what, tuna_safetensors_index *index,
                                         tuna_error *err) {
    memset(index, 0, sizeof *index);
    if (!what) what = "<memory>";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: not valid JSON", what);
    tuna_status s = TUNA_OK;
    const cJSON *map = NULL;
    if (!cJSON_IsObject(root)) s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: not a JSON object", what);
    for (const cJSON *it = root->child; s == TUNA_OK && it; it = it->next) {
        if (strcmp(it->string, "weight_map") == 0) {
            if (map) s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: \"weight_map\" given twice", what);
            map = it;
        } else if (strcmp(it->string, "metadata") != 0) {
            s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: unknown key \"%s\" (expected metadata, weight_map)", what, it->string);
        }
    }
    if (s == TUNA_OK && !cJSON_IsObject(map)) s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: no \"weight_map\" object", what);
    if (s == TUNA_OK) s = parse_weight_map(map, what, index, err);
    cJSON_Delete(root);
    if (s != TUNA_OK) tuna_safetensors_index_free(index);
    return s;
}
