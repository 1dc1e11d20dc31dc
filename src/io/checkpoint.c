/* The uniform weights API over safetensors (single or sharded) and torch.save
 * files (see checkpoint.h). Every backend keeps its mapping (and, for deflated
 * .pt members, its inflated buffers) alive until close; this layer adds one
 * name-sorted table of (name, tensor) for binary-search lookups. */
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "io/pt.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *name;           /* owned by the backend */
    const tuna_tensor *tensor;
} named_tensor;

struct tuna_checkpoint {
    const char *format;
    char *dir;
    tuna_safetensors *shards;   /* one for model.safetensors */
    size_t shard_count;
    tuna_pt pt;
    int has_pt;
    tuna_gguf gguf;
    int has_gguf;
    named_tensor *table;        /* sorted by name */
    size_t count;
};

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    char *d = strndup(path, (size_t)(slash - path));
    return d;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int compare_named(const void *a, const void *b) {
    return strcmp(((const named_tensor *)a)->name, ((const named_tensor *)b)->name);
}

static tuna_status build_table(tuna_checkpoint *ck, tuna_error *err) {
    size_t total = (ck->has_pt ? ck->pt.count : 0) + (ck->has_gguf ? ck->gguf.count : 0);
    for (size_t s = 0; s < ck->shard_count; s++) total += ck->shards[s].count;
    ck->table = calloc(total ? total : 1, sizeof *ck->table);
    if (!ck->table) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    if (ck->has_pt)
        for (size_t i = 0; i < ck->pt.count; i++)
            ck->table[ck->count++] = (named_tensor){ck->pt.entries[i].name, &ck->pt.entries[i].tensor};
    if (ck->has_gguf)
        for (size_t i = 0; i < ck->gguf.count; i++)
            ck->table[ck->count++] = (named_tensor){ck->gguf.entries[i].name, &ck->gguf.entries[i].tensor};
    for (size_t s = 0; s < ck->shard_count; s++)
        for (size_t i = 0; i < ck->shards[s].count; i++)
            ck->table[ck->count++] = (named_tensor){ck->shards[s].entries[i].name, &ck->shards[s].entries[i].tensor};
    qsort(ck->table, ck->count, sizeof *ck->table, compare_named);
    for (size_t i = 1; i < ck->count; i++)
        if (strcmp(ck->table[i - 1].name, ck->table[i].name) == 0)
            return tuna_fail(err, TUNA_ERR_FORMAT, "tensor %s appears in more than one shard", ck->table[i].name);
    return TUNA_OK;
}

static tuna_status open_single_safetensors(tuna_checkpoint *ck, const char *path, tuna_error *err) {
    ck->format = "safetensors";
    ck->shards = calloc(1, sizeof *ck->shards);
    if (!ck->shards) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    TUNA_TRY(tuna_safetensors_open(path, &ck->shards[0], err));
    ck->shard_count = 1;
    return TUNA_OK;
}

/* Every shard of the index opened; every tensor listed must be in the shard
 * the index names, and every tensor of a shard must be listed. */
static tuna_status open_sharded(tuna_checkpoint *ck, const char *index_path, tuna_error *err) {
    ck->format = "safetensors-sharded";
    char *json = NULL;
    size_t len = 0;
    TUNA_TRY(tuna_read_file(index_path, (size_t)64 << 20, &json, &len, err));
    tuna_safetensors_index index;
    tuna_status s = tuna_safetensors_index_parse(json, len, index_path, &index, err);
    free(json);
    if (s != TUNA_OK) return s;
    ck->shards = calloc(index.shard_count ? index.shard_count : 1, sizeof *ck->shards);
    if (!ck->shards) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; s == TUNA_OK && i < index.shard_count; i++) {
        char *path = join_path(ck->dir, index.shard_files[i]);
        if (!path) { s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory"); break; }
        s = tuna_safetensors_open(path, &ck->shards[i], err);
        free(path);
        if (s == TUNA_OK) ck->shard_count++;
    }
    size_t listed = 0;
    for (size_t i = 0; s == TUNA_OK && i < index.count; i++) {
        size_t shard = 0;
        while (index.shard_files[shard] != index.shards[i]) shard++;
        if (!tuna_safetensors_find(&ck->shards[shard], index.names[i]))
            s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: tensor %s is not in %s as the index says", index_path, index.names[i],
                          index.shards[i]);
        listed++;
    }
    if (s == TUNA_OK) {
        size_t in_shards = 0;
        for (size_t i = 0; i < ck->shard_count; i++) in_shards += ck->shards[i].count;
        if (in_shards != listed)
            s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: the shards hold %zu tensors but the index lists %zu", index_path,
                          in_shards, listed);
    }
    tuna_safetensors_index_free(&index);
    return s;
}

static tuna_status open_pt(tuna_checkpoint *ck, const char *path, tuna_error *err) {
    ck->format = "pt";
    TUNA_TRY(tuna_pt_open(path, &ck->pt, err));
    ck->has_pt = 1;
    return TUNA_OK;
}

static tuna_status open_gguf(tuna_checkpoint *ck, const char *path, tuna_error *err) {
    ck->format = "gguf";
    TUNA_TRY(tuna_gguf_open(path, &ck->gguf, err));
    ck->has_gguf = 1;
    return TUNA_OK;
}

static tuna_status open_file(tuna_checkpoint *ck, const char *path, tuna_error *err) {
    if (has_suffix(path, ".gguf")) return open_gguf(ck, path, err);
    if (has_suffix(path, ".safetensors.index.json")) return open_sharded(ck, path, err);
    if (has_suffix(path, ".safetensors")) return open_single_safetensors(ck, path, err);
    if (has_suffix(path, ".pt") || has_suffix(path, ".pth") || has_suffix(path, ".bin")) return open_pt(ck, path, err);
    return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "%s: unknown weights format (expected .safetensors, "
                                                ".safetensors.index.json, .gguf, .pt, .pth or .bin)", path);
}

/* A directory: model.safetensors, else model.safetensors.index.json, else
 * model.gguf, else its one .pt/.pth/.bin file. */
static tuna_status open_directory(tuna_checkpoint *ck, const char *dir, tuna_error *err) {
    static const char *const preferred[] = {"model.safetensors", "model.safetensors.index.json", "model.gguf"};
    for (size_t i = 0; i < 3; i++) {
        char *path = join_path(dir, preferred[i]);
        if (!path) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        if (is_file(path)) {
            tuna_status s = open_file(ck, path, err);
            free(path);
            return s;
        }
        free(path);
    }
    DIR *d = opendir(dir);
    if (!d) return tuna_fail(err, TUNA_ERR_IO, "cannot read directory %s", dir);
    char *found = NULL;
    int several = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!(has_suffix(e->d_name, ".pt") || has_suffix(e->d_name, ".pth") || has_suffix(e->d_name, ".bin"))) continue;
        if (found) { several = 1; break; }
        found = strdup(e->d_name);
    }
    closedir(d);
    if (several) { free(found); return tuna_fail(err, TUNA_ERR_INVALID, "%s holds several .pt/.pth/.bin files: name one", dir); }
    if (!found)
        return tuna_fail(err, TUNA_ERR_IO, "%s holds no model.safetensors, model.safetensors.index.json, model.gguf or .pt/.pth/.bin",
                         dir);
    char *path = join_path(dir, found);
    free(found);
    if (!path) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_status s = open_pt(ck, path, err);
    free(path);
    return s;
}

tuna_status tuna_checkpoint_open(const char *path, tuna_checkpoint **out, tuna_error *err) {
    *out = NULL;
    tuna_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    struct stat st;
    tuna_status s;
    if (stat(path, &st) != 0) {
        s = tuna_fail(err, TUNA_ERR_IO, "%s: no such file or directory", path);
    } else if (S_ISDIR(st.st_mode)) {
        ck->dir = strdup(path);
        s = ck->dir ? open_directory(ck, path, err) : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    } else {
        ck->dir = dir_of(path);
        s = ck->dir ? open_file(ck, path, err) : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    if (s == TUNA_OK) s = build_table(ck, err);
    if (s != TUNA_OK) { tuna_checkpoint_close(ck); return s; }
    *out = ck;
    return TUNA_OK;
}

void tuna_checkpoint_close(tuna_checkpoint *ck) {
    if (!ck) return;
    for (size_t i = 0; i < ck->shard_count; i++) tuna_safetensors_close(&ck->shards[i]);
    free(ck->shards);
    if (ck->has_pt) tuna_pt_close(&ck->pt);
    if (ck->has_gguf) tuna_gguf_close(&ck->gguf);
    free(ck->table);
    free(ck->dir);
    free(ck);
}

const tuna_tensor *tuna_checkpoint_find(const tuna_checkpoint *ck, const char *name) {
    size_t lo = 0, hi = ck->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->table[mid].name, name);
        if (c == 0) return ck->table[mid].tensor;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t tuna_checkpoint_count(const tuna_checkpoint *ck) { return ck->count; }
const char *tuna_checkpoint_name(const tuna_checkpoint *ck, size_t i) { return i < ck->count ? ck->table[i].name : NULL; }
const tuna_tensor *tuna_checkpoint_tensor(const tuna_checkpoint *ck, size_t i) { return i < ck->count ? ck->table[i].tensor : NULL; }
const char *tuna_checkpoint_format(const tuna_checkpoint *ck) { return ck->format; }
const char *tuna_checkpoint_dir(const tuna_checkpoint *ck) { return ck->dir; }

const char *tuna_checkpoint_metadata(const tuna_checkpoint *ck, const char *key) {
    if (ck->has_gguf) return tuna_gguf_get_string(&ck->gguf, key, NULL);
    for (size_t s = 0; s < ck->shard_count; s++) {
        const char *v = tuna_safetensors_metadata_get(&ck->shards[s], key);
        if (v) return v;
    }
    return NULL;
}
