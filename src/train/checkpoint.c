/* Training checkpoints: see checkpoint.h for the layout and the atomicity rule. */
#include "train/checkpoint.h"

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"
#include "model/config_json.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "checkpoint-"

static void fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Delete a checkpoint directory (plain files only, as we write them). */
static void remove_dir(const char *path) {
    DIR *dir = opendir(path);
    if (dir) {
        struct dirent *e;
        char file[4096];
        while ((e = readdir(dir))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            unlink(file);
        }
        closedir(dir);
    }
    rmdir(path);
}

/* checkpoint-STEP[.tmp] -> STEP, tmp flag; -1 when the name is something else. */
static int64_t parse_name(const char *name, int *tmp) {
    size_t n = strlen(PREFIX);
    if (strncmp(name, PREFIX, n) != 0) return -1;
    char *end = NULL;
    errno = 0;
    long long step = strtoll(name + n, &end, 10);
    if (errno || end == name + n || step < 0) return -1;
    if (*end == 0) *tmp = 0;
    else if (!strcmp(end, ".tmp")) *tmp = 1;
    else return -1;
    return step;
}

static int is_complete(const char *output_dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/trainer_state.json", output_dir, name);
    return access(path, R_OK) == 0;
}

int64_t tuna_train_checkpoint_latest(const char *output_dir, char *path, size_t path_size) {
    if (path && path_size) path[0] = 0;
    DIR *dir = opendir(output_dir);
    if (!dir) return 0;
    int64_t best = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        int tmp = 0;
        int64_t step = parse_name(e->d_name, &tmp);
        if (step <= best || tmp || !is_complete(output_dir, e->d_name)) continue;
        best = step;
        if (path) snprintf(path, path_size, "%s/%s", output_dir, e->d_name);
    }
    closedir(dir);
    return best;
}

static int compare_steps(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void tuna_train_checkpoint_prune(const char *output_dir, int keep_last) {
    DIR *dir = opendir(output_dir);
    if (!dir) return;
    int64_t *steps = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(dir))) {
        int tmp = 0;
        int64_t step = parse_name(e->d_name, &tmp);
        if (step < 0) continue;
        if (tmp || !is_complete(output_dir, e->d_name)) {
            snprintf(path, sizeof path, "%s/%s", output_dir, e->d_name);
            remove_dir(path);
            continue;
        }
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *ns = realloc(steps, cap * sizeof *ns);
            if (!ns) break;
            steps = ns;
        }
        steps[count++] = step;
    }
    closedir(dir);
    if (keep_last > 0 && count > (size_t)keep_last) {
        qsort(steps, count, sizeof *steps, compare_steps);
        for (size_t i = 0; i + (size_t)keep_last < count; i++) {
            snprintf(path, sizeof path, "%s/" PREFIX "%08" PRId64, output_dir, steps[i]);
            remove_dir(path);
        }
    }
    free(steps);
    fsync_dir(output_dir);
}

/* ---- writing ------------------------------------------------------------------ */

typedef struct {
    tuna_tensor *tensors;
    char **names;
    void **converted;
    size_t count, cap;
} tensor_list;

static void list_free(tensor_list *l) {
    for (size_t i = 0; i < l->count; i++) {
        free(l->names[i]);
        free(l->converted[i]);
    }
    free(l->tensors);
    free(l->names);
    free(l->converted);
    memset(l, 0, sizeof *l);
}

static tuna_status list_add(tensor_list *l, const char *prefix, const tuna_param *p, const float *data, int bf16,
                            tuna_error *err) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        tuna_tensor *t = realloc(l->tensors, cap * sizeof *t);
        if (t) l->tensors = t;
        char **n = realloc(l->names, cap * sizeof *n);
        if (n) l->names = n;
        void **c = realloc(l->converted, cap * sizeof *c);
        if (c) l->converted = c;
        if (!t || !n || !c) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory writing a checkpoint");
        l->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(p->name) + 1;
    char *name = malloc(len);
    if (!name) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory writing a checkpoint");
    snprintf(name, len, "%s%s", prefix, p->name);
    tuna_dtype dtype = bf16 ? TUNA_BF16 : TUNA_F32;
    const void *view = data;
    void *conv = NULL;
    if (!data && p->stored && p->stored->dtype == dtype) {
        view = p->stored->data; /* a frozen weight kept as stored: written as it is */
    } else {
        size_t n = (size_t)(p->numel ? p->numel : 1);
        float *wide = data ? NULL : malloc(n * sizeof(float)); /* frozen in place, another dtype */
        conv = bf16 ? malloc(n * sizeof(uint16_t)) : wide;
        tuna_status st = (bf16 && !conv) || (!data && !wide) ? tuna_fail(err, TUNA_ERR_NOMEM, "out of memory writing a checkpoint")
                                                             : TUNA_OK;
        if (st == TUNA_OK && !data) st = tuna_param_widen_stored(p, wide, err);
        const float *src = data ? data : wide;
        if (st == TUNA_OK && bf16)
            for (int64_t k = 0; k < p->numel; k++) ((uint16_t *)conv)[k] = tuna_f32_to_bf16(src[k]);
        if (wide != conv) free(wide);
        if (st != TUNA_OK) {
            free(conv);
            free(name);
            return st;
        }
        view = bf16 ? conv : src;
    }
    tuna_tensor_init_view(&l->tensors[l->count], dtype, p->ndim, p->shape, (void *)view);
    l->names[l->count] = name;
    l->converted[l->count] = conv;
    l->count++;
    return TUNA_OK;
}

static tuna_status list_write(tensor_list *l, const char *path, tuna_error *err) {
    const char *meta[] = {"format", "pt", NULL};
    tuna_status st = tuna_safetensors_write(path, l->tensors, (const char *const *)l->names, l->count, meta, err);
    list_free(l);
    return st;
}

typedef struct {
    const char *text;
} text_ctx;

static tuna_status write_text(FILE *out, void *ctx, tuna_error *err) {
    const char *text = ((text_ctx *)ctx)->text;
    if (fputs(text, out) < 0) return tuna_fail(err, TUNA_ERR_IO, "write failed");
    return TUNA_OK;
}

static tuna_status save_state_json(const char *path, const tuna_train_state *s, tuna_error *err) {
    char *data = NULL;
    TUNA_TRY(tuna_data_state_to_json(&s->data, &data, err));
    size_t n = strlen(data) + 256;
    char *text = malloc(n);
    if (!text) {
        free(data);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    snprintf(text, n,
             "{\"format\": \"tuna-train-1\", \"step\": %" PRId64 ", \"ema_updates\": %" PRId64
             ", \"skipped_updates\": %" PRId64 ", \"data\": %s}\n",
             s->step, s->ema_updates, s->skipped_updates, data);
    free(data);
    text_ctx ctx = {text};
    tuna_status st = tuna_write_file_atomic(path, write_text, &ctx, err);
    free(text);
    return st;
}

tuna_status tuna_train_checkpoint_save(const char *output_dir, const tuna_param_table *params,
                                       const tuna_train_state *state, const tuna_config *model_config,
                                       int save_bf16, int keep_last, tuna_error *err) {
    char tmp[4200], final[4096], path[4300];
    snprintf(final, sizeof final, "%s/" PREFIX "%08" PRId64, output_dir, state->step);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    remove_dir(tmp);
    if (mkdir(tmp, 0755) != 0) return tuna_fail(err, TUNA_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    tensor_list l = {0};
    tuna_status st = TUNA_OK;
    /* weights, official names */
    for (int i = 0; st == TUNA_OK && i < params->count; i++)
        st = list_add(&l, "", &params->items[i], params->items[i].weight, save_bf16, err);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if (st == TUNA_OK) st = list_write(&l, path, err);
    /* EMA (frozen: the weight itself) */
    for (int i = 0; st == TUNA_OK && i < params->count; i++) {
        const tuna_param *p = &params->items[i];
        st = list_add(&l, "", p, p->ema ? p->ema : p->weight, save_bf16, err);
    }
    snprintf(path, sizeof path, "%s/ema.safetensors", tmp);
    if (st == TUNA_OK) st = list_write(&l, path, err);
    /* optimizer state, f32 */
    for (int i = 0; st == TUNA_OK && i < params->count; i++) {
        const tuna_param *p = &params->items[i];
        if (!p->trainable) continue;
        st = list_add(&l, "m.", p, p->m, 0, err);
        if (st == TUNA_OK) st = list_add(&l, "v.", p, p->v, 0, err);
        if (st == TUNA_OK && save_bf16) st = list_add(&l, "master.", p, p->weight, 0, err);
        if (st == TUNA_OK && save_bf16 && p->ema) st = list_add(&l, "ema_master.", p, p->ema, 0, err);
    }
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if (st == TUNA_OK) st = list_write(&l, path, err);
    list_free(&l);
    if (st == TUNA_OK && model_config) {
        snprintf(path, sizeof path, "%s/config.json", tmp);
        st = tuna_config_save(path, model_config, err);
    }
    /* the state last: its presence marks the directory complete */
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    if (st == TUNA_OK) st = save_state_json(path, state, err);
    if (st == TUNA_OK) {
        fsync_dir(tmp);
        remove_dir(final); /* a same-step checkpoint from an earlier, interrupted run */
        if (rename(tmp, final) != 0)
            st = tuna_fail(err, TUNA_ERR_IO, "cannot rename %s: %s", tmp, strerror(errno));
        fsync_dir(output_dir);
    }
    if (st != TUNA_OK) {
        remove_dir(tmp);
        return tuna_fail_context(err, st, "saving checkpoint %s", final);
    }
    tuna_train_checkpoint_prune(output_dir, keep_last);
    return TUNA_OK;
}

/* ---- loading ------------------------------------------------------------------- */

static tuna_status copy_tensor(const tuna_safetensors *st, const char *name, const tuna_param *p, float *dst,
                               const char *file, tuna_error *err) {
    const tuna_tensor *t = tuna_safetensors_find(st, name);
    if (!t) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: no tensor %s (was the set of trained parameters changed?)",
                             file, name);
    if (t->ndim != p->ndim) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: %s has the wrong shape", file, name);
    for (int d = 0; d < p->ndim; d++)
        if (t->shape[d] != p->shape[d]) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: %s has the wrong shape", file, name);
    if (t->dtype == TUNA_F32) memcpy(dst, t->data, (size_t)p->numel * sizeof(float));
    else if (t->dtype == TUNA_BF16 || t->dtype == TUNA_F16)
        for (int64_t k = 0; k < p->numel; k++) dst[k] = tuna_tensor_get_f32(t, k);
    else return tuna_fail(err, TUNA_ERR_FORMAT, "%s: %s is not a float tensor", file, name);
    return TUNA_OK;
}

static int json_get_i64(const cJSON *o, const char *key, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0) return 0;
    *out = (int64_t)v->valuedouble;
    return 1;
}

static tuna_status load_state_json(const char *path, tuna_train_state *s, tuna_error *err) {
    char *text = NULL;
    size_t size = 0;
    TUNA_TRY(tuna_read_file(path, 1 << 20, &text, &size, err));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: not JSON", path);
    tuna_status st = TUNA_OK;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!json_get_i64(root, "step", &s->step) || !json_get_i64(root, "ema_updates", &s->ema_updates) ||
        !json_get_i64(root, "skipped_updates", &s->skipped_updates) || !cJSON_IsObject(data)) {
        st = tuna_fail(err, TUNA_ERR_FORMAT, "%s: missing fields", path);
    } else {
        char *d = cJSON_PrintUnformatted(data);
        st = d ? tuna_data_state_from_json(d, &s->data, err) : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        free(d);
        if (st != TUNA_OK) tuna_fail_context(err, st, "%s", path);
    }
    cJSON_Delete(root);
    return st;
}

tuna_status tuna_train_checkpoint_load(const char *dir, tuna_param_table *params, tuna_train_state *state,
                                       tuna_error *err) {
    char path[4200], model_path[4200], ema_path[4200];
    memset(state, 0, sizeof *state);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    TUNA_TRY(load_state_json(path, state, err));
    tuna_safetensors model = {0}, ema = {0}, opt = {0};
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", dir);
    snprintf(ema_path, sizeof ema_path, "%s/ema.safetensors", dir);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    tuna_status st = tuna_safetensors_open(model_path, &model, err);
    if (st == TUNA_OK) st = tuna_safetensors_open(ema_path, &ema, err);
    if (st == TUNA_OK) st = tuna_safetensors_open(path, &opt, err);
    char name[1024];
    for (int i = 0; st == TUNA_OK && i < params->count; i++) {
        tuna_param *p = &params->items[i];
        if (!p->trainable) {
            snprintf(name, sizeof name, "m.%s", p->name);
            if (tuna_safetensors_find(&opt, name))
                st = tuna_fail(err, TUNA_ERR_INVALID,
                               "%s: %s was trained in the checkpoint but is frozen now; resume with the same "
                               "--freeze/--train-only",
                               dir, p->name);
            continue;
        }
        snprintf(name, sizeof name, "master.%s", p->name);
        if (tuna_safetensors_find(&opt, name)) st = copy_tensor(&opt, name, p, p->weight, path, err);
        else st = copy_tensor(&model, p->name, p, p->weight, model_path, err);
        if (st == TUNA_OK) {
            snprintf(name, sizeof name, "m.%s", p->name);
            st = copy_tensor(&opt, name, p, p->m, path, err);
        }
        if (st == TUNA_OK) {
            snprintf(name, sizeof name, "v.%s", p->name);
            st = copy_tensor(&opt, name, p, p->v, path, err);
        }
        if (st == TUNA_OK && p->ema) {
            snprintf(name, sizeof name, "ema_master.%s", p->name);
            if (tuna_safetensors_find(&opt, name)) st = copy_tensor(&opt, name, p, p->ema, path, err);
            else st = copy_tensor(&ema, p->name, p, p->ema, ema_path, err);
        }
    }
    tuna_safetensors_close(&model);
    tuna_safetensors_close(&ema);
    tuna_safetensors_close(&opt);
    return st;
}
