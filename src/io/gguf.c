/* GGUF reader (zero copy over a mapping) and writer (atomic, streamed).
 *
 * Every number read from the file is untrusted. Before use:
 *   - the header is whole: magic "GGUF", version 2 or 3;
 *   - counts are bounded by the bytes left (each key/value and tensor info
 *     takes a minimum number of bytes), so nothing is allocated for entries
 *     the file cannot hold;
 *   - every string length, array count (times its element size, overflow
 *     checked) and read stays inside the file; keys and names are non-empty,
 *     at most TUNA_GGUF_MAX_KEY bytes, free of NUL bytes and unique; nested
 *     arrays and unknown value types are refused; booleans are 0 or 1;
 *   - general.alignment, when present, is a u32 power of two up to
 *     TUNA_GGUF_MAX_ALIGNMENT; the data section starts at the aligned end of
 *     the tensor infos, inside the file;
 *   - a tensor has 1-4 dimensions each < 2^63, a ggml type we know (with a
 *     first dimension that is a multiple of its block), an element count and
 *     byte size computed without overflow, an offset that is a multiple of the
 *     alignment, bytes inside the data section, an address aligned for its
 *     element type, and no overlap with another tensor. */
#include "io/gguf.h"
#include "core/tensor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- types ----------------------------------------------------------------- */

static const struct {
    uint32_t ggml;
    tuna_dtype dtype;
} type_map[] = {
    {0, TUNA_F32},   {1, TUNA_F16},   {2, TUNA_Q4_0},  {6, TUNA_Q5_0},  {8, TUNA_Q8_0}, {12, TUNA_Q4_K}, {14, TUNA_Q6_K},
    {24, TUNA_I8},   {25, TUNA_I16},  {26, TUNA_I32},  {27, TUNA_I64},  {28, TUNA_F64}, {30, TUNA_BF16},
};

int tuna_gguf_dtype_from_ggml(uint32_t ggml_type, tuna_dtype *out) {
    for (size_t i = 0; i < sizeof type_map / sizeof type_map[0]; i++)
        if (type_map[i].ggml == ggml_type) {
            *out = type_map[i].dtype;
            return 1;
        }
    return 0;
}

int tuna_gguf_ggml_from_dtype(tuna_dtype dtype, uint32_t *out) {
    for (size_t i = 0; i < sizeof type_map / sizeof type_map[0]; i++)
        if (type_map[i].dtype == dtype) {
            *out = type_map[i].ggml;
            return 1;
        }
    return 0;
}

/* bytes of a fixed-size value type; 0 for STRING / ARRAY / unknown */
static size_t scalar_size(uint32_t type) {
    switch (type) {
    case TUNA_GGUF_UINT8: case TUNA_GGUF_INT8: case TUNA_GGUF_BOOL: return 1;
    case TUNA_GGUF_UINT16: case TUNA_GGUF_INT16: return 2;
    case TUNA_GGUF_UINT32: case TUNA_GGUF_INT32: case TUNA_GGUF_FLOAT32: return 4;
    case TUNA_GGUF_UINT64: case TUNA_GGUF_INT64: case TUNA_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct {
    const unsigned char *data;
    size_t size, pos;
    const char *what;
    tuna_error *err;
} cursor;

static tuna_status need(cursor *c, size_t n, const char *field) {
    if (n > c->size - c->pos)
        return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: truncated: %s needs %zu bytes at offset %zu, %zu left", c->what,
                         field, n, c->pos, c->size - c->pos);
    return TUNA_OK;
}

static uint64_t get_le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static tuna_status read_uint(cursor *c, size_t n, uint64_t *out, const char *field) {
    TUNA_TRY(need(c, n, field));
    *out = get_le(c->data + c->pos, n);
    c->pos += n;
    return TUNA_OK;
}

/* A length-prefixed string, left in place. */
static tuna_status read_string(cursor *c, const unsigned char **s, size_t *len, const char *field) {
    uint64_t n;
    TUNA_TRY(read_uint(c, 8, &n, field));
    if (n > c->size - c->pos)
        return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: %s of %llu bytes at offset %zu runs past the end of the file",
                         c->what, field, (unsigned long long)n, c->pos - 8);
    *s = c->data + c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return TUNA_OK;
}

/* A key or tensor name: non-empty, bounded, no NUL; owned copy. */
static tuna_status read_name(cursor *c, char **out, const char *field) {
    const unsigned char *s;
    size_t len;
    TUNA_TRY(read_string(c, &s, &len, field));
    if (len == 0) return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: empty %s at offset %zu", c->what, field, c->pos - 8);
    if (len > TUNA_GGUF_MAX_KEY)
        return tuna_fail(c->err, TUNA_ERR_LIMIT, "%s: %s of %zu bytes (at most %d)", c->what, field, len, TUNA_GGUF_MAX_KEY);
    if (memchr(s, 0, len)) return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: %s contains a NUL byte", c->what, field);
    *out = malloc(len + 1);
    if (!*out) return tuna_fail(c->err, TUNA_ERR_NOMEM, "%s: out of memory", c->what);
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    return TUNA_OK;
}

static tuna_status read_scalar(cursor *c, uint32_t type, tuna_gguf_kv *kv) {
    size_t n = scalar_size(type);
    uint64_t raw;
    TUNA_TRY(read_uint(c, n, &raw, kv->key));
    switch (type) {
    case TUNA_GGUF_INT8: kv->i = (int8_t)raw; break;
    case TUNA_GGUF_INT16: kv->i = (int16_t)raw; break;
    case TUNA_GGUF_INT32: kv->i = (int32_t)raw; break;
    case TUNA_GGUF_INT64: kv->i = (int64_t)raw; break;
    case TUNA_GGUF_FLOAT32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, 4);
        kv->f = f;
        break;
    }
    case TUNA_GGUF_FLOAT64: memcpy(&kv->f, &raw, 8); break;
    case TUNA_GGUF_BOOL:
        if (raw > 1) return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: %s: boolean value %llu", c->what, kv->key, (unsigned long long)raw);
        break;
    default: break;
    }
    kv->u = raw;
    if (type == TUNA_GGUF_UINT8 || type == TUNA_GGUF_UINT16 || type == TUNA_GGUF_UINT32 || type == TUNA_GGUF_UINT64 ||
        type == TUNA_GGUF_BOOL)
        kv->i = raw <= INT64_MAX ? (int64_t)raw : INT64_MAX;
    return TUNA_OK;
}

static tuna_status read_value(cursor *c, tuna_gguf_kv *kv) {
    uint64_t type;
    TUNA_TRY(read_uint(c, 4, &type, "a value type"));
    kv->type = (tuna_gguf_type)type;
    if (scalar_size((uint32_t)type)) return read_scalar(c, (uint32_t)type, kv);
    if (type == TUNA_GGUF_STRING) {
        const unsigned char *s;
        TUNA_TRY(read_string(c, &s, &kv->str_len, kv->key));
        kv->str = malloc(kv->str_len + 1);
        if (!kv->str) return tuna_fail(c->err, TUNA_ERR_NOMEM, "%s: out of memory", c->what);
        memcpy(kv->str, s, kv->str_len);
        kv->str[kv->str_len] = '\0';
        return TUNA_OK;
    }
    if (type != TUNA_GGUF_ARRAY)
        return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: %s has unknown value type %llu", c->what, kv->key,
                         (unsigned long long)type);
    uint64_t element, count;
    TUNA_TRY(read_uint(c, 4, &element, kv->key));
    TUNA_TRY(read_uint(c, 8, &count, kv->key));
    kv->array_type = (tuna_gguf_type)element;
    kv->array_count = count;
    kv->array_data = c->data + c->pos;
    size_t esize = scalar_size((uint32_t)element);
    if (esize) {
        size_t bytes;
        if (count > SIZE_MAX || tuna_mul_overflows((size_t)count, esize, &bytes) || bytes > c->size - c->pos)
            return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: %s: array of %llu elements runs past the end of the file",
                             c->what, kv->key, (unsigned long long)count);
        if (element == TUNA_GGUF_BOOL)
            for (size_t i = 0; i < bytes; i++)
                if (c->data[c->pos + i] > 1)
                    return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: %s: boolean element %zu is %u", c->what, kv->key, i,
                                     c->data[c->pos + i]);
        c->pos += bytes;
        return TUNA_OK;
    }
    if (element != TUNA_GGUF_STRING)
        return tuna_fail(c->err, element == TUNA_GGUF_ARRAY ? TUNA_ERR_UNSUPPORTED : TUNA_ERR_FORMAT,
                         "%s: %s: arrays of type %llu are not supported", c->what, kv->key, (unsigned long long)element);
    if (count > (c->size - c->pos) / 8) /* every string takes 8 bytes at least */
        return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: %s: %llu strings cannot fit in the file", c->what, kv->key,
                         (unsigned long long)count);
    for (uint64_t i = 0; i < count; i++) {
        const unsigned char *s;
        size_t len;
        TUNA_TRY(read_string(c, &s, &len, kv->key));
    }
    return TUNA_OK;
}

static void free_contents(tuna_gguf *g) {
    for (size_t i = 0; i < g->kv_count; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str);
    }
    free(g->kv);
    for (size_t i = 0; i < g->count; i++) free(g->entries[i].name);
    free(g->entries);
    g->kv = NULL;
    g->entries = NULL;
    g->kv_count = g->count = 0;
}

static int compare_kv(const void *a, const void *b) {
    return strcmp((*(const tuna_gguf_kv *const *)a)->key, (*(const tuna_gguf_kv *const *)b)->key);
}

static int compare_entry_name(const void *a, const void *b) {
    return strcmp(((const tuna_gguf_entry *)a)->name, ((const tuna_gguf_entry *)b)->name);
}

static int compare_entry_offset(const void *a, const void *b) {
    const tuna_gguf_entry *x = *(const tuna_gguf_entry *const *)a, *y = *(const tuna_gguf_entry *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static tuna_status check_unique_keys(tuna_gguf *g, const char *what, tuna_error *err) {
    if (g->kv_count < 2) return TUNA_OK;
    const tuna_gguf_kv **sorted = malloc(g->kv_count * sizeof *sorted);
    if (!sorted) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < g->kv_count; i++) sorted[i] = &g->kv[i];
    qsort(sorted, g->kv_count, sizeof *sorted, compare_kv);
    tuna_status s = TUNA_OK;
    for (size_t i = 1; i < g->kv_count && s == TUNA_OK; i++)
        if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0)
            s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: key %s appears twice", what, sorted[i]->key);
    free(sorted);
    return s;
}

/* One tensor info: name, dims, type, offset; shape and size checked. */
static tuna_status read_tensor_info(cursor *c, tuna_gguf_entry *e) {
    TUNA_TRY(read_name(c, &e->name, "tensor name"));
    uint64_t n_dims, type;
    TUNA_TRY(read_uint(c, 4, &n_dims, e->name));
    if (n_dims < 1 || n_dims > 4)
        return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: tensor %s has %llu dimensions (1 to 4)", c->what, e->name,
                         (unsigned long long)n_dims);
    uint64_t ne[4];
    size_t numel = 1;
    for (uint64_t d = 0; d < n_dims; d++) {
        TUNA_TRY(read_uint(c, 8, &ne[d], e->name));
        if (ne[d] > INT64_MAX || ne[d] > SIZE_MAX || tuna_mul_overflows(numel, (size_t)ne[d], &numel))
            return tuna_fail(c->err, TUNA_ERR_LIMIT, "%s: tensor %s: dimensions overflow", c->what, e->name);
    }
    TUNA_TRY(read_uint(c, 4, &type, e->name));
    TUNA_TRY(read_uint(c, 8, &e->offset, e->name));
    tuna_dtype dtype;
    if (!tuna_gguf_dtype_from_ggml((uint32_t)type, &dtype) || type > UINT32_MAX)
        return tuna_fail(c->err, TUNA_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %llu, which this engine does not read",
                         c->what, e->name, (unsigned long long)type);
    e->ggml_type = (uint32_t)type;
    int64_t block = tuna_dtype_block_size(dtype);
    if (ne[0] % (uint64_t)block)
        return tuna_fail(c->err, TUNA_ERR_FORMAT, "%s: tensor %s: rows of %llu elements are not whole %s blocks of %lld",
                         c->what, e->name, (unsigned long long)ne[0], tuna_dtype_name(dtype), (long long)block);
    if (tuna_mul_overflows(numel / (size_t)block, tuna_dtype_block_bytes(dtype), &e->nbytes))
        return tuna_fail(c->err, TUNA_ERR_LIMIT, "%s: tensor %s: size overflows", c->what, e->name);
    int64_t shape[4];
    for (uint64_t d = 0; d < n_dims; d++) shape[n_dims - 1 - d] = (int64_t)ne[d];
    tuna_tensor_init_view(&e->tensor, dtype, (int)n_dims, shape, NULL);
    return TUNA_OK;
}

static tuna_status parse_alignment(tuna_gguf *g, const char *what, tuna_error *err) {
    g->alignment = 32;
    const tuna_gguf_kv *a = tuna_gguf_get(g, "general.alignment");
    if (!a) return TUNA_OK;
    if (a->type != TUNA_GGUF_UINT32)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: general.alignment is not a u32", what);
    if (a->u == 0 || (a->u & (a->u - 1)) || a->u > TUNA_GGUF_MAX_ALIGNMENT)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: general.alignment %llu is not a power of two up to %u", what,
                         (unsigned long long)a->u, TUNA_GGUF_MAX_ALIGNMENT);
    g->alignment = (size_t)a->u;
    return TUNA_OK;
}

/* Data offsets, bounds, element alignment and overlaps of every tensor. */
static tuna_status place_tensors(tuna_gguf *g, const unsigned char *data, size_t size, const char *what,
                                 tuna_error *err) {
    size_t data_size = size - g->data_offset;
    for (size_t i = 0; i < g->count; i++) {
        tuna_gguf_entry *e = &g->entries[i];
        if (e->offset % g->alignment)
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor %s at offset %llu is not aligned to %zu", what, e->name,
                             (unsigned long long)e->offset, g->alignment);
        if (e->offset > data_size || e->nbytes > data_size - (size_t)e->offset)
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor %s (%zu bytes at %llu) runs past the end of the file", what,
                             e->name, e->nbytes, (unsigned long long)e->offset);
        const unsigned char *p = data + g->data_offset + e->offset;
        size_t esize = tuna_dtype_size(e->tensor.dtype);
        if (esize > 1 && (uintptr_t)p % esize)
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor %s is not aligned for %s", what, e->name,
                             tuna_dtype_name(e->tensor.dtype));
        e->tensor.data = (void *)p;
    }
    if (g->count < 2) return TUNA_OK;
    const tuna_gguf_entry **order = malloc(g->count * sizeof *order);
    if (!order) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < g->count; i++) order[i] = &g->entries[i];
    qsort(order, g->count, sizeof *order, compare_entry_offset);
    tuna_status s = TUNA_OK;
    for (size_t i = 1; i < g->count && s == TUNA_OK; i++)
        if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes)
            s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensors %s and %s overlap", what, order[i - 1]->name, order[i]->name);
    free(order);
    return s;
}

static tuna_status parse(const unsigned char *data, size_t size, const char *what, tuna_gguf *g, tuna_error *err) {
    cursor c = {data, size, 0, what, err};
    TUNA_TRY(need(&c, 24, "the header"));
    if (memcmp(data, "GGUF", 4) != 0) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: not a GGUF file (bad magic)", what);
    c.pos = 4;
    uint64_t version, n_tensors, n_kv;
    TUNA_TRY(read_uint(&c, 4, &version, "version"));
    if (version != 2 && version != 3)
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "%s: GGUF version %llu (2 and 3 are read)", what,
                         (unsigned long long)version);
    g->version = (uint32_t)version;
    TUNA_TRY(read_uint(&c, 8, &n_tensors, "tensor count"));
    TUNA_TRY(read_uint(&c, 8, &n_kv, "key/value count"));
    /* a key/value takes >= 14 bytes (key length, 1 byte of key, type, 1 byte of
     * value), a tensor info >= 33: refuse counts the file cannot hold */
    size_t left = size - c.pos;
    if (n_kv > left / 14 || n_tensors > left / 33)
        return tuna_fail(err, TUNA_ERR_FORMAT, "%s: %llu key/values and %llu tensors cannot fit in %zu bytes", what,
                         (unsigned long long)n_kv, (unsigned long long)n_tensors, left);
    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->entries = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->entries);
    if (!g->kv || !g->entries) return tuna_fail(err, TUNA_ERR_NOMEM, "%s: out of memory", what);
    for (uint64_t i = 0; i < n_kv; i++) {
        tuna_gguf_kv *kv = &g->kv[g->kv_count];
        TUNA_TRY(read_name(&c, &kv->key, "key"));
        g->kv_count++;
        TUNA_TRY(read_value(&c, kv));
    }
    TUNA_TRY(check_unique_keys(g, what, err));
    TUNA_TRY(parse_alignment(g, what, err));
    for (uint64_t i = 0; i < n_tensors; i++) {
        tuna_gguf_entry *e = &g->entries[g->count];
        tuna_status s = read_tensor_info(&c, e);
        if (e->name) g->count++;
        if (s != TUNA_OK) return s;
    }
    size_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = c.pos + pad;
    if (g->data_offset > size) {
        if (g->count) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: the data section starts past the end of the file", what);
        g->data_offset = size;
    }
    qsort(g->entries, g->count, sizeof *g->entries, compare_entry_name);
    for (size_t i = 1; i < g->count; i++)
        if (strcmp(g->entries[i - 1].name, g->entries[i].name) == 0)
            return tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor %s appears twice", what, g->entries[i].name);
    return place_tensors(g, data, size, what, err);
}

tuna_status tuna_gguf_parse(const void *data, size_t size, const char *what, tuna_gguf *g, tuna_error *err) {
    memset(g, 0, sizeof *g);
    tuna_status s = parse(data, size, what ? what : "<memory>", g, err);
    if (s != TUNA_OK) {
        free_contents(g);
        memset(g, 0, sizeof *g);
    }
    return s;
}

tuna_status tuna_gguf_open(const char *path, tuna_gguf *g, tuna_error *err) {
    tuna_mapped_file file;
    memset(g, 0, sizeof *g);
    TUNA_TRY(tuna_mapped_file_open(&file, path, err));
    tuna_status s = tuna_gguf_parse(file.data, file.size, path, g, err);
    if (s != TUNA_OK) {
        tuna_mapped_file_close(&file);
        return s;
    }
    g->file = file;
    return TUNA_OK;
}

void tuna_gguf_close(tuna_gguf *g) {
    if (!g) return;
    free_contents(g);
    tuna_mapped_file_close(&g->file);
    memset(g, 0, sizeof *g);
}

const tuna_tensor *tuna_gguf_find(const tuna_gguf *g, const char *name) {
    size_t lo = 0, hi = g->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->entries[mid].name, name);
        if (c == 0) return &g->entries[mid].tensor;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const tuna_gguf_kv *tuna_gguf_get(const tuna_gguf *g, const char *key) {
    for (size_t i = 0; i < g->kv_count; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const char *tuna_gguf_get_string(const tuna_gguf *g, const char *key, size_t *len) {
    const tuna_gguf_kv *kv = tuna_gguf_get(g, key);
    if (!kv || kv->type != TUNA_GGUF_STRING) return NULL;
    if (len) *len = kv->str_len;
    return kv->str;
}

/* ---- writing ------------------------------------------------------------------ */

enum { WRITE_ALIGNMENT = 32, GGML_MAX_NAME = 64 };

/* An output stream that counts its bytes (for the padding) and remembers a
 * failed write. */
typedef struct {
    FILE *out;
    size_t written;
    int ok;
} sink;

static void put_bytes(sink *k, const void *p, size_t n) {
    if (k->ok && n && fwrite(p, 1, n, k->out) != n) k->ok = 0;
    k->written += n;
}

static void put_le(sink *k, uint64_t v, size_t n) {
    unsigned char b[8];
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(k, b, n);
}

static void put_string(sink *k, const char *s, size_t len) {
    put_le(k, len, 8);
    put_bytes(k, s, len);
}

static void put_padding(sink *k) {
    static const unsigned char zeros[WRITE_ALIGNMENT];
    put_bytes(k, zeros, (WRITE_ALIGNMENT - k->written % WRITE_ALIGNMENT) % WRITE_ALIGNMENT);
}

static tuna_status put_value(sink *k, const tuna_gguf_value *v, tuna_error *err) {
    if (v->type == TUNA_GGUF_STRING && !v->str) return tuna_fail(err, TUNA_ERR_INVALID, "gguf: %s has no string", v->key);
    if (v->type != TUNA_GGUF_STRING && !scalar_size(v->type))
        return tuna_fail(err, TUNA_ERR_INVALID, "gguf: %s: value type %d cannot be written", v->key, (int)v->type);
    put_string(k, v->key, strlen(v->key));
    put_le(k, (uint64_t)v->type, 4);
    if (v->type == TUNA_GGUF_STRING) {
        put_string(k, v->str, v->str_len ? v->str_len : strlen(v->str));
    } else if (v->type == TUNA_GGUF_FLOAT32) {
        float f = (float)v->f;
        uint32_t bits;
        memcpy(&bits, &f, 4);
        put_le(k, bits, 4);
    } else if (v->type == TUNA_GGUF_FLOAT64) {
        uint64_t bits;
        memcpy(&bits, &v->f, 8);
        put_le(k, bits, 8);
    } else {
        int is_signed = v->type == TUNA_GGUF_INT8 || v->type == TUNA_GGUF_INT16 || v->type == TUNA_GGUF_INT32 ||
                        v->type == TUNA_GGUF_INT64;
        put_le(k, is_signed ? (uint64_t)v->i : v->u, scalar_size(v->type));
    }
    return TUNA_OK;
}

static tuna_status tensor_bytes(const tuna_gguf_tensor_in *t, size_t *bytes, tuna_error *err) {
    uint32_t ggml;
    if (!t->name || !*t->name || strlen(t->name) >= GGML_MAX_NAME)
        return tuna_fail(err, TUNA_ERR_INVALID, "gguf: tensor name \"%s\" is empty or has %d bytes or more (ggml's limit)",
                         t->name ? t->name : "", GGML_MAX_NAME);
    if (!tuna_gguf_ggml_from_dtype(t->dtype, &ggml))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "gguf: tensor %s: dtype %s has no ggml type", t->name,
                         tuna_dtype_name(t->dtype));
    if (t->ndim < 1 || t->ndim > 4) return tuna_fail(err, TUNA_ERR_INVALID, "gguf: tensor %s has %d dimensions", t->name, t->ndim);
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || tuna_mul_overflows(numel, (size_t)t->shape[d], &numel))
            return tuna_fail(err, TUNA_ERR_INVALID, "gguf: tensor %s has a bad shape", t->name);
    if (t->shape[t->ndim - 1] % tuna_dtype_block_size(t->dtype))
        return tuna_fail(err, TUNA_ERR_INVALID, "gguf: tensor %s: rows are not whole %s blocks", t->name,
                         tuna_dtype_name(t->dtype));
    *bytes = tuna_dtype_bytes_for(t->dtype, (int64_t)numel);
    return TUNA_OK;
}

static tuna_status check_request(const tuna_gguf_value *kv, size_t n_kv, const tuna_gguf_tensor_in *tensors, size_t n,
                                 size_t *bytes, tuna_error *err) {
    for (size_t i = 0; i < n_kv; i++) {
        if (!kv[i].key || !*kv[i].key) return tuna_fail(err, TUNA_ERR_INVALID, "gguf: empty key");
        if (strcmp(kv[i].key, "general.alignment") == 0)
            return tuna_fail(err, TUNA_ERR_INVALID, "gguf: general.alignment is set by the writer");
        for (size_t j = 0; j < i; j++)
            if (strcmp(kv[i].key, kv[j].key) == 0) return tuna_fail(err, TUNA_ERR_INVALID, "gguf: key %s given twice", kv[i].key);
    }
    for (size_t i = 0; i < n; i++) {
        TUNA_TRY(tensor_bytes(&tensors[i], &bytes[i], err));
        for (size_t j = 0; j < i; j++)
            if (strcmp(tensors[i].name, tensors[j].name) == 0)
                return tuna_fail(err, TUNA_ERR_INVALID, "gguf: tensor %s given twice", tensors[i].name);
    }
    return TUNA_OK;
}

tuna_status tuna_gguf_write_stream(FILE *out, const tuna_gguf_value *kv, size_t n_kv, const tuna_gguf_tensor_in *tensors,
                                   size_t n, tuna_gguf_fill_fn fill, void *ctx, tuna_error *err) {
    size_t *bytes = calloc(n ? n : 1, sizeof *bytes);
    if (!bytes) return tuna_fail(err, TUNA_ERR_NOMEM, "gguf: out of memory");
    tuna_status s = check_request(kv, n_kv, tensors, n, bytes, err);
    sink k = {out, 0, 1};
    if (s == TUNA_OK) { /* header; the caller's key/values, then general.alignment */
        put_bytes(&k, "GGUF", 4);
        put_le(&k, 3, 4);
        put_le(&k, n, 8);
        put_le(&k, n_kv + 1, 8);
        for (size_t i = 0; i < n_kv && s == TUNA_OK; i++) s = put_value(&k, &kv[i], err);
        tuna_gguf_value alignment = {.key = "general.alignment", .type = TUNA_GGUF_UINT32, .u = WRITE_ALIGNMENT};
        if (s == TUNA_OK) s = put_value(&k, &alignment, err);
    }
    size_t offset = 0;
    for (size_t i = 0; i < n && s == TUNA_OK; i++) { /* tensor infos: ne innermost first */
        const tuna_gguf_tensor_in *t = &tensors[i];
        uint32_t ggml = 0;
        tuna_gguf_ggml_from_dtype(t->dtype, &ggml);
        put_string(&k, t->name, strlen(t->name));
        put_le(&k, (uint64_t)t->ndim, 4);
        for (int d = t->ndim - 1; d >= 0; d--) put_le(&k, (uint64_t)t->shape[d], 8);
        put_le(&k, ggml, 4);
        put_le(&k, offset, 8);
        offset += (bytes[i] + WRITE_ALIGNMENT - 1) / WRITE_ALIGNMENT * WRITE_ALIGNMENT;
    }
    if (s == TUNA_OK) put_padding(&k);
    for (size_t i = 0; i < n && s == TUNA_OK && k.ok; i++) {
        const void *data = tensors[i].data;
        void *buffer = NULL;
        if (!data) {
            buffer = malloc(bytes[i] ? bytes[i] : 1);
            if (!buffer) s = tuna_fail(err, TUNA_ERR_NOMEM, "gguf: out of memory for tensor %s", tensors[i].name);
            else if (!fill) s = tuna_fail(err, TUNA_ERR_INVALID, "gguf: tensor %s has no data", tensors[i].name);
            else s = fill(ctx, i, buffer, err);
            data = buffer;
        }
        if (s == TUNA_OK) {
            put_bytes(&k, data, bytes[i]);
            put_padding(&k);
        }
        free(buffer);
    }
    free(bytes);
    if (s == TUNA_OK && !k.ok) s = tuna_fail(err, TUNA_ERR_IO, "gguf: short write");
    return s;
}

typedef struct {
    const tuna_gguf_value *kv;
    size_t n_kv;
    const tuna_gguf_tensor_in *tensors;
    size_t n;
    tuna_gguf_fill_fn fill;
    void *ctx;
} write_request;

static tuna_status write_request_run(FILE *out, void *ctx, tuna_error *err) {
    write_request *r = ctx;
    return tuna_gguf_write_stream(out, r->kv, r->n_kv, r->tensors, r->n, r->fill, r->ctx, err);
}

tuna_status tuna_gguf_write(const char *path, const tuna_gguf_value *kv, size_t n_kv, const tuna_gguf_tensor_in *tensors,
                            size_t n, tuna_gguf_fill_fn fill, void *ctx, tuna_error *err) {
    write_request r = {kv, n_kv, tensors, n, fill, ctx};
    return tuna_write_file_atomic(path, write_request_run, &r, err);
}
