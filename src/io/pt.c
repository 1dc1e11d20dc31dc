/* torch.save zip archives -> named tensors (see pt.h).
 *
 * 1. find ARCHIVE/data.pkl (the archive prefix is the saved file's stem, or
 *    "archive"; exactly one member PREFIX/data.pkl must exist);
 * 2. run the restricted unpickler over it;
 * 3. take the state dict: the root dict, or root["model"] / root["state_dict"]
 *    when that is a dict (what the reference's loader does), and strip
 *    "tuna_model." from the keys (SPEC section 7);
 * 4. for each tensor record, map ARCHIVE/data/KEY (once per storage) and make
 *    a contiguous view at storage_offset. */
#include "io/pt.h"
#include "io/pickle.h"
#include "core/tensor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WRAPPER_PREFIX "tuna_model."

typedef struct {
    const char *key;
    const unsigned char *bytes;
    uint64_t size;
} storage_slot;

typedef struct {
    tuna_pt *pt;
    const char *what;
    char prefix[256];          /* "archive/" */
    storage_slot *slots;       /* storages mapped so far */
    size_t slot_count, slot_cap;
    tuna_error *err;
} loader;

static void free_contents(tuna_pt *pt) {
    for (size_t i = 0; i < pt->count; i++) free(pt->entries[i].name);
    free(pt->entries);
    for (size_t i = 0; i < pt->owned_count; i++) free(pt->owned[i]);
    free(pt->owned);
    tuna_zip_free(&pt->zip);
    pt->entries = NULL;
    pt->owned = NULL;
    pt->count = pt->owned_count = 0;
}

static tuna_status keep_owned(loader *l, void *buffer) {
    tuna_pt *pt = l->pt;
    void **grown = realloc(pt->owned, (pt->owned_count + 1) * sizeof *grown);
    if (!grown) { free(buffer); return tuna_fail(l->err, TUNA_ERR_NOMEM, "out of memory"); }
    pt->owned = grown;
    pt->owned[pt->owned_count++] = buffer;
    return TUNA_OK;
}

/* The one member named PREFIX/data.pkl with PREFIX free of '/'. */
static tuna_status find_pickle(loader *l, const tuna_zip_entry **out) {
    const tuna_zip *zip = &l->pt->zip;
    *out = NULL;
    for (size_t i = 0; i < zip->count; i++) {
        const char *name = zip->entries[i].name;
        const char *slash = strchr(name, '/');
        if (!slash || strcmp(slash, "/data.pkl") != 0) continue;
        if (*out) return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: more than one data.pkl in the archive", l->what);
        size_t len = (size_t)(slash - name) + 1;
        if (len >= sizeof l->prefix) return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: archive prefix too long", l->what);
        memcpy(l->prefix, name, len);
        l->prefix[len] = '\0';
        *out = &zip->entries[i];
    }
    if (!*out) return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: zip archive holds no data.pkl (not a torch.save file)", l->what);
    return TUNA_OK;
}

static tuna_status check_byteorder(loader *l) {
    char name[300];
    snprintf(name, sizeof name, "%sbyteorder", l->prefix);
    const tuna_zip_entry *e = tuna_zip_find(&l->pt->zip, name);
    if (!e) return TUNA_OK; /* older torch versions write none: little-endian */
    const unsigned char *bytes;
    void *owned;
    TUNA_TRY(tuna_zip_read(&l->pt->zip, e, 64, 1, &bytes, &owned, l->err));
    int little = e->size == 6 && memcmp(bytes, "little", 6) == 0;
    free(owned);
    if (!little) return tuna_fail(l->err, TUNA_ERR_UNSUPPORTED, "%s: big-endian torch archive", l->what);
    return TUNA_OK;
}

/* ARCHIVE/data/KEY, mapped once and shared by every tensor viewing it. */
static tuna_status storage_bytes(loader *l, const char *key, const unsigned char **bytes, uint64_t *size) {
    for (size_t i = 0; i < l->slot_count; i++)
        if (strcmp(l->slots[i].key, key) == 0) {
            *bytes = l->slots[i].bytes;
            *size = l->slots[i].size;
            return TUNA_OK;
        }
    char name[600];
    snprintf(name, sizeof name, "%sdata/%s", l->prefix, key);
    const tuna_zip_entry *e = tuna_zip_find(&l->pt->zip, name);
    if (!e) return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: storage %s is missing from the archive", l->what, name);
    void *owned;
    TUNA_TRY(tuna_zip_read(&l->pt->zip, e, UINT64_MAX, 0, bytes, &owned, l->err));
    if (!owned && ((uintptr_t)*bytes % 64) != 0 && e->size) {
        /* torch aligns stored members to 64 bytes; other zip writers may not:
         * copy those so no tensor is misaligned for its element type */
        owned = aligned_alloc(64, ((size_t)e->size + 63) & ~(size_t)63);
        if (!owned) return tuna_fail(l->err, TUNA_ERR_NOMEM, "out of memory copying %s", name);
        memcpy(owned, *bytes, (size_t)e->size);
        *bytes = owned;
    }
    if (owned) TUNA_TRY(keep_owned(l, owned));
    *size = e->size;
    if (l->slot_count == l->slot_cap) {
        size_t cap = l->slot_cap ? 2 * l->slot_cap : 16;
        storage_slot *grown = realloc(l->slots, cap * sizeof *grown);
        if (!grown) return tuna_fail(l->err, TUNA_ERR_NOMEM, "out of memory");
        l->slots = grown;
        l->slot_cap = cap;
    }
    l->slots[l->slot_count++] = (storage_slot){key, *bytes, *size};
    return TUNA_OK;
}

/* A tensor record -> contiguous view into its storage. */
static tuna_status make_tensor(loader *l, const char *name, const tuna_pk_object *rec, tuna_tensor *t) {
    const tuna_pk_object *st = rec->u.tensor.storage;
    tuna_dtype dtype = st->u.storage.dtype;
    size_t esize = tuna_dtype_size(dtype);
    int ndim = rec->u.tensor.ndim;
    const int64_t *shape = rec->u.tensor.shape, *stride = rec->u.tensor.stride;
    /* contiguous: stride[i] == prod(shape[i+1:]) wherever shape[i] > 1 */
    uint64_t numel = 1;
    int empty = 0; /* a tensor without elements: strides do not matter */
    for (int d = 0; d < ndim; d++) empty |= shape[d] == 0;
    for (int d = ndim - 1; d >= 0 && !empty; d--) {
        if (shape[d] < 0) return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: tensor %s has a negative dimension", l->what, name);
        if (shape[d] > 1 && (uint64_t)stride[d] != numel)
            return tuna_fail(l->err, TUNA_ERR_UNSUPPORTED,
                             "%s: tensor %s is not contiguous (stride %lld in dimension %d); save it with .contiguous()",
                             l->what, name, (long long)stride[d], d);
        if (shape[d] && numel > (UINT64_MAX / 16) / (uint64_t)shape[d])
            return tuna_fail(l->err, TUNA_ERR_LIMIT, "%s: tensor %s is absurdly large", l->what, name);
        numel *= (uint64_t)shape[d];
    }
    for (int d = 0; d < ndim; d++) if (shape[d] < 0) return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: tensor %s has a negative dimension", l->what, name);
    if (empty) numel = 0;
    int64_t offset = rec->u.tensor.offset;
    uint64_t storage_numel = (uint64_t)st->u.storage.numel;
    if (offset < 0 || (uint64_t)offset > storage_numel || numel > storage_numel - (uint64_t)offset)
        return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: tensor %s (offset %lld, %llu elements) lies outside its storage of %llu",
                         l->what, name, (long long)offset, (unsigned long long)numel, (unsigned long long)storage_numel);
    const unsigned char *bytes = NULL;
    uint64_t size = 0;
    TUNA_TRY(storage_bytes(l, st->u.storage.key, &bytes, &size));
    if (storage_numel > UINT64_MAX / esize || size != storage_numel * esize)
        return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: storage %s holds %llu bytes, expected %llu elements of %s", l->what,
                         st->u.storage.key, (unsigned long long)size, (unsigned long long)storage_numel, tuna_dtype_name(dtype));
    tuna_tensor_init_view(t, dtype, ndim, shape, (void *)(bytes + (size_t)offset * esize));
    return TUNA_OK;
}

static int compare_entries(const void *a, const void *b) {
    return strcmp(((const tuna_pt_entry *)a)->name, ((const tuna_pt_entry *)b)->name);
}

static tuna_status collect_state_dict(loader *l, const tuna_pk_object *root) {
    tuna_pt *pt = l->pt;
    if (root->type != TUNA_PK_DICT) return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: the pickle holds no dict", l->what);
    const tuna_pk_object *dict = root;
    const tuna_pk_object *inner = tuna_pk_dict_get(root, "model");
    if (!inner || inner->type != TUNA_PK_DICT) inner = tuna_pk_dict_get(root, "state_dict");
    if (inner && inner->type == TUNA_PK_DICT) { dict = inner; pt->unwrapped = 1; }
    size_t n = dict->u.dict.count;
    pt->entries = calloc(n ? n : 1, sizeof *pt->entries);
    if (!pt->entries) return tuna_fail(l->err, TUNA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const tuna_pk_object *k = dict->u.dict.keys[i], *v = dict->u.dict.values[i];
        if (k->type != TUNA_PK_STR || strlen(k->u.str.data) != k->u.str.len)
            return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: state dict key %zu is not a string", l->what, i);
        if (v->type != TUNA_PK_TENSOR)
            return tuna_fail(l->err, TUNA_ERR_UNSUPPORTED, "%s: state dict entry %.200s is not a tensor", l->what, k->u.str.data);
        const char *name = k->u.str.data;
        if (strncmp(name, WRAPPER_PREFIX, strlen(WRAPPER_PREFIX)) == 0) {
            name += strlen(WRAPPER_PREFIX);
            pt->prefix_stripped = 1;
        }
        tuna_pt_entry *e = &pt->entries[pt->count];
        if (!(e->name = strdup(name))) return tuna_fail(l->err, TUNA_ERR_NOMEM, "out of memory");
        pt->count++;
        TUNA_TRY(make_tensor(l, k->u.str.data, v, &e->tensor));
    }
    qsort(pt->entries, pt->count, sizeof *pt->entries, compare_entries);
    for (size_t i = 1; i < pt->count; i++)
        if (strcmp(pt->entries[i - 1].name, pt->entries[i].name) == 0)
            return tuna_fail(l->err, TUNA_ERR_FORMAT, "%s: tensor %s appears twice", l->what, pt->entries[i].name);
    return TUNA_OK;
}

static tuna_status load(loader *l, const void *data, size_t size) {
    tuna_pt *pt = l->pt;
    const unsigned char *d = data;
    if (size >= 2 && d[0] == 0x80) /* a bare pickle: the pre-1.6 format */
        return tuna_fail(l->err, TUNA_ERR_UNSUPPORTED, "%s: legacy (non-zip) torch file; re-save it with torch >= 1.6", l->what);
    tuna_status s = tuna_zip_parse(data, size, &pt->zip, l->err);
    if (s != TUNA_OK) return tuna_fail_context(l->err, s, "%s", l->what);
    const tuna_zip_entry *pkl;
    TUNA_TRY(find_pickle(l, &pkl));
    TUNA_TRY(check_byteorder(l));
    const unsigned char *bytes;
    void *owned;
    TUNA_TRY(tuna_zip_read(&pt->zip, pkl, TUNA_PT_MAX_PICKLE, 1, &bytes, &owned, l->err));
    tuna_pickle *pickle;
    const tuna_pk_object *root;
    s = tuna_pickle_load(bytes, (size_t)pkl->size, &pickle, &root, l->err);
    free(owned);
    if (s != TUNA_OK) return tuna_fail_context(l->err, s, "%s", l->what);
    s = collect_state_dict(l, root);
    tuna_pickle_free(pickle);
    return s;
}

tuna_status tuna_pt_parse(const void *data, size_t size, const char *what, tuna_pt *pt, tuna_error *err) {
    memset(pt, 0, sizeof *pt);
    loader l = {.pt = pt, .what = what ? what : "<memory>", .err = err};
    tuna_status s = load(&l, data, size);
    free(l.slots);
    if (s != TUNA_OK) free_contents(pt);
    return s;
}

tuna_status tuna_pt_open(const char *path, tuna_pt *pt, tuna_error *err) {
    tuna_mapped_file file;
    memset(pt, 0, sizeof *pt);
    TUNA_TRY(tuna_mapped_file_open(&file, path, err));
    tuna_status s = tuna_pt_parse(file.data, file.size, path, pt, err);
    if (s != TUNA_OK) { tuna_mapped_file_close(&file); return s; }
    pt->file = file;
    return TUNA_OK;
}

void tuna_pt_close(tuna_pt *pt) {
    if (!pt) return;
    free_contents(pt);
    tuna_mapped_file_close(&pt->file);
    memset(pt, 0, sizeof *pt);
}

const tuna_tensor *tuna_pt_find(const tuna_pt *pt, const char *name) {
    size_t lo = 0, hi = pt->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(pt->entries[mid].name, name);
        if (c == 0) return &pt->entries[mid].tensor;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}
