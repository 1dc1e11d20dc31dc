#include "train/train_options.h"

#include "core/mapped_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OPT_DOUBLE, OPT_I64, OPT_INT, OPT_FLOAT, OPT_STRING, OPT_BOOL, OPT_SPECIAL } opt_type;

typedef struct {
    const char *key;
    opt_type type;
    size_t offset; /* into tuna_train_options (not for OPT_SPECIAL) */
    const char *help;
} opt_def;

#define OFF(field) offsetof(tuna_train_options, field)
#define STREAM(task, field) (OFF(data.streams) + (task) * sizeof(tuna_stream_config) + offsetof(tuna_stream_config, field))

static const opt_def defs[] = {
    {"model", OPT_STRING, OFF(model), "weights to start from (file or directory; also load_stage1_model)"},
    {"load_stage1_model", OPT_STRING, OFF(model), "same as model"},
    {"tokenizer", OPT_STRING, OFF(tokenizer), "tokenizer.json[.gz] (default: the model's, else the bundled one)"},
    {"threads", OPT_INT, OFF(threads), "compute threads (default TUNA_THREADS or all cores)"},
    {"output_dir", OPT_STRING, OFF(trainer.output_dir), "checkpoints and metrics.jsonl (./outputs/train)"},
    {"learning_rate", OPT_DOUBLE, OFF(trainer.optim.learning_rate), "peak learning rate (2e-5)"},
    {"weight_decay", OPT_DOUBLE, OFF(trainer.optim.weight_decay), "AdamW decoupled weight decay (0.01)"},
    {"beta1", OPT_DOUBLE, OFF(trainer.optim.beta1), "AdamW beta1 (0.9)"},
    {"beta2", OPT_DOUBLE, OFF(trainer.optim.beta2), "AdamW beta2 (0.95)"},
    {"eps", OPT_DOUBLE, OFF(trainer.optim.eps), "AdamW eps (1e-8)"},
    {"clip_grad_norm", OPT_DOUBLE, OFF(trainer.optim.max_grad_norm), "max global grad norm, 0 = off (1.0)"},
    {"warmup_steps", OPT_I64, OFF(trainer.optim.warmup_steps), "linear warmup from 0 (1000)"},
    {"lr_schedule", OPT_SPECIAL, 0, "constant | cosine (constant)"},
    {"min_lr", OPT_DOUBLE, OFF(trainer.optim.min_lr), "cosine floor (0)"},
    {"max_steps", OPT_I64, OFF(trainer.max_steps), "optimizer steps in total (1000)"},
    {"gradient_accumulation_steps", OPT_INT, OFF(trainer.grad_accum), "micro-batches per step (1)"},
    {"ema_decay", OPT_SPECIAL, 0, "EMA decay, null/0 = off (0.9999)"},
    {"ema_lit_warmup", OPT_BOOL, OFF(trainer.optim.ema_lit_warmup), "torchtnt use_lit decay ramp (true)"},
    {"save_every", OPT_I64, OFF(trainer.save_every), "checkpoint every N steps (500)"},
    {"keep_last", OPT_INT, OFF(trainer.keep_last), "checkpoints kept, 0 = all (3)"},
    {"mixed_precision", OPT_SPECIAL, 0, "bf16 = weights saved as BF16 (f32 masters kept) | null = F32 (bf16)"},
    {"log_every", OPT_INT, OFF(trainer.log_every), "progress line every N steps (1)"},
    {"resume", OPT_BOOL, OFF(trainer.resume), "continue from the latest checkpoint in output_dir (true)"},
    {"seed", OPT_SPECIAL, 0, "data order, t, noise and masks (0)"},
    {"buckets", OPT_SPECIAL, 0, "WxH list, e.g. \"32x32\" or \"512x512,576x448\" (the five 512 buckets)"},
    {"masked_image_ratio", OPT_FLOAT, OFF(data.mask_ratio_max), "mask ratio upper bound (0.3)"},
    {"masked_image_ratio_min", OPT_FLOAT, OFF(data.mask_ratio_min), "mask ratio lower bound (-0.7)"},
    {"mmu_noise_prob", OPT_FLOAT, OFF(data.und_noise_prob), "understanding: chance of a noisy t (0.1)"},
    {"mmu_noise_level", OPT_FLOAT, OFF(data.und_noise_level), "understanding: t = 1 - U(0, level) (0.1)"},
    {"noise_scale", OPT_SPECIAL, 0, "JiT noise std (the model's, 2.0)"},
    {"und_layout", OPT_SPECIAL, 0, "reference (CE on all, default) | inference (CE on assistant turns)"},
    {"queue_depth", OPT_INT, OFF(data.queue_depth), "micro-batches prepared ahead (4)"},
    {"freeze", OPT_SPECIAL, 0, "glob of parameter names to freeze (repeatable)"},
    {"train_only", OPT_SPECIAL, 0, "glob: train only matching parameters (repeatable)"},
#define STREAM_DEFS(T, name)                                                                                  \
    {name "_jsonl", OPT_STRING, STREAM(T, jsonl_path), name " stream JSONL"},                                 \
        {name "_image_root", OPT_STRING, STREAM(T, image_root), name " image root (the JSONL's directory)"}, \
        {name "_weight", OPT_DOUBLE, STREAM(T, weight), name " sampling weight"},                            \
        {name "_batch_size", OPT_INT, STREAM(T, batch_size), name " sequences per micro-batch (1)"},         \
        {name "_max_text_length", OPT_INT, STREAM(T, max_length), name " longest sequence kept (2048)"}
    STREAM_DEFS(TUNA_TASK_T2I, "t2i"),
    STREAM_DEFS(TUNA_TASK_EDIT, "edit"),
    STREAM_DEFS(TUNA_TASK_UNDERSTAND, "mmu"),
    STREAM_DEFS(TUNA_TASK_TEXT, "text"),
};

void tuna_train_options_default(tuna_train_options *o) {
    memset(o, 0, sizeof *o);
    tuna_trainer_config_default(&o->trainer);
    o->trainer.output_dir = "outputs/train";
    o->trainer.save_bf16 = 1;
    tuna_data_config_default(&o->data);
}

void tuna_train_options_free(tuna_train_options *o) {
    for (int i = 0; i < o->owned_count; i++) free(o->owned[i]);
    o->owned_count = 0;
}

static const char *keep(tuna_train_options *o, const char *s, tuna_error *err) {
    if (o->owned_count == (int)(sizeof o->owned / sizeof o->owned[0])) {
        tuna_fail(err, TUNA_ERR_LIMIT, "too many string options");
        return NULL;
    }
    char *c = strdup(s);
    if (!c) {
        tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return o->owned[o->owned_count++] = c;
}

static int parse_double(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_i64(const char *s, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

static tuna_status set_buckets(tuna_train_options *o, const char *value, tuna_error *err) {
    int n = 0;
    const char *p = value;
    while (*p) {
        int h, w, used = 0;
        if (n == TUNA_DATA_MAX_BUCKETS || sscanf(p, "%dx%d%n", &w, &h, &used) != 2 || h <= 0 || w <= 0 ||
            h > 4096 || w > 4096)
            return tuna_fail(err, TUNA_ERR_INVALID, "buckets: expected WxH[,WxH...] (at most %d, sides <= 4096), got \"%s\"",
                             TUNA_DATA_MAX_BUCKETS, value);
        o->data.buckets[n++] = (tuna_bucket){h, w};
        p += used;
        if (*p == ',') p++;
        else if (*p) return tuna_fail(err, TUNA_ERR_INVALID, "buckets: expected WxH[,WxH...], got \"%s\"", value);
    }
    if (n == 0) return tuna_fail(err, TUNA_ERR_INVALID, "buckets: empty list");
    o->data.bucket_count = n;
    return TUNA_OK;
}

static int is_null(const char *v) { return !strcmp(v, "null") || !strcmp(v, "none") || !strcmp(v, "None"); }

tuna_status tuna_train_options_set(tuna_train_options *o, const char *key_in, const char *value, tuna_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s", key_in);
    for (char *c = key; *c; c++)
        if (*c == '-') *c = '_';
    const opt_def *d = NULL;
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (!strcmp(defs[i].key, key)) d = &defs[i];
    if (!d) return tuna_fail(err, TUNA_ERR_INVALID, "unknown option \"%s\" (tuna train --help lists them)", key_in);
    char *base = (char *)o;
    double dv;
    int64_t iv;
    switch (d->type) {
    case OPT_DOUBLE:
        if (!parse_double(value, &dv)) goto bad;
        *(double *)(base + d->offset) = dv;
        return TUNA_OK;
    case OPT_FLOAT:
        if (!parse_double(value, &dv)) goto bad;
        *(float *)(base + d->offset) = (float)dv;
        return TUNA_OK;
    case OPT_I64:
        if (!parse_i64(value, &iv) || iv < 0) goto bad;
        *(int64_t *)(base + d->offset) = iv;
        return TUNA_OK;
    case OPT_INT:
        if (!parse_i64(value, &iv) || iv < 0 || iv > 1000000000) goto bad;
        *(int *)(base + d->offset) = (int)iv;
        return TUNA_OK;
    case OPT_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "1")) *(int *)(base + d->offset) = 1;
        else if (!strcmp(value, "false") || !strcmp(value, "0")) *(int *)(base + d->offset) = 0;
        else goto bad;
        return TUNA_OK;
    case OPT_STRING: {
        const char *s = keep(o, value, err);
        if (!s) return err ? err->code : TUNA_ERR_NOMEM;
        *(const char **)(base + d->offset) = s;
        return TUNA_OK;
    }
    case OPT_SPECIAL: break;
    }
    if (!strcmp(key, "und_layout")) {
        if (!strcmp(value, "reference")) o->data.und_inference_layout = 0;
        else if (!strcmp(value, "inference")) o->data.und_inference_layout = 1;
        else goto bad;
    } else if (!strcmp(key, "lr_schedule")) {
        if (!strcmp(value, "constant")) o->trainer.optim.schedule = TUNA_LR_CONSTANT;
        else if (!strcmp(value, "cosine")) o->trainer.optim.schedule = TUNA_LR_COSINE;
        else goto bad;
    } else if (!strcmp(key, "ema_decay")) {
        if (is_null(value)) o->trainer.optim.ema_decay = 0;
        else if (!parse_double(value, &dv) || dv < 0 || dv >= 1) goto bad;
        else o->trainer.optim.ema_decay = dv;
    } else if (!strcmp(key, "mixed_precision")) {
        if (!strcmp(value, "bf16")) o->trainer.save_bf16 = 1;
        else if (is_null(value) || !strcmp(value, "fp32") || !strcmp(value, "f32")) o->trainer.save_bf16 = 0;
        else goto bad;
    } else if (!strcmp(key, "seed")) {
        if (!parse_i64(value, &iv)) goto bad;
        o->data.seed = (uint64_t)iv;
    } else if (!strcmp(key, "buckets")) {
        return set_buckets(o, value, err);
    } else if (!strcmp(key, "noise_scale")) {
        if (!parse_double(value, &dv) || dv < 0) goto bad;
        o->data.noise_scale = (float)dv;
        o->data_noise_scale_set = 1;
    } else if (!strcmp(key, "freeze") || !strcmp(key, "train_only")) {
        int is_freeze = key[0] == 'f';
        int *count = is_freeze ? &o->freeze_count : &o->train_only_count;
        if (*count == TUNA_TRAIN_MAX_PATTERNS) return tuna_fail(err, TUNA_ERR_LIMIT, "too many %s patterns", key);
        const char *s = keep(o, value, err);
        if (!s) return err ? err->code : TUNA_ERR_NOMEM;
        (is_freeze ? o->freeze : o->train_only)[(*count)++] = s;
    }
    return TUNA_OK;
bad:
    return tuna_fail(err, TUNA_ERR_INVALID, "option %s: bad value \"%s\"", key, value);
}

tuna_status tuna_train_options_load_json(tuna_train_options *o, const char *text, size_t len, tuna_error *err) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tuna_fail(err, TUNA_ERR_FORMAT, "config: not a JSON object");
    }
    tuna_status st = TUNA_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        char buf[64];
        const char *value = NULL;
        if (cJSON_IsArray(item)) {
            if (strcmp(item->string, "freeze") && strcmp(item->string, "train_only")) {
                st = tuna_fail(err, TUNA_ERR_INVALID, "config: \"%s\" cannot be a list", item->string);
                break;
            }
            const cJSON *e;
            cJSON_ArrayForEach(e, item) {
                if (!cJSON_IsString(e)) {
                    st = tuna_fail(err, TUNA_ERR_INVALID, "config: \"%s\" must list strings", item->string);
                    break;
                }
                if ((st = tuna_train_options_set(o, item->string, e->valuestring, err)) != TUNA_OK) break;
            }
            if (st != TUNA_OK) break;
            continue;
        }
        if (cJSON_IsString(item)) value = item->valuestring;
        else if (cJSON_IsBool(item)) value = cJSON_IsTrue(item) ? "true" : "false";
        else if (cJSON_IsNull(item)) value = "null";
        else if (cJSON_IsNumber(item)) {
            if (item->valuedouble == floor(item->valuedouble) && fabs(item->valuedouble) < 9e15)
                snprintf(buf, sizeof buf, "%.0f", item->valuedouble);
            else snprintf(buf, sizeof buf, "%.17g", item->valuedouble);
            value = buf;
        } else {
            st = tuna_fail(err, TUNA_ERR_INVALID, "config: \"%s\" has an unsupported type", item->string);
            break;
        }
        if ((st = tuna_train_options_set(o, item->string, value, err)) != TUNA_OK) break;
    }
    cJSON_Delete(root);
    if (st != TUNA_OK) tuna_fail_context(err, st, "config");
    return st;
}

tuna_status tuna_train_options_parse(tuna_train_options *o, int argc, char **argv, int *help, tuna_error *err) {
    *help = 0;
    /* the config file first, so flags override it */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") && strcmp(argv[i], "-c")) continue;
        if (i + 1 >= argc) return tuna_fail(err, TUNA_ERR_INVALID, "--config needs a file");
        char *text = NULL;
        size_t size = 0;
        TUNA_TRY(tuna_read_file(argv[i + 1], 16u << 20, &text, &size, err));
        tuna_status st = tuna_train_options_load_json(o, text, size, err);
        free(text);
        if (st != TUNA_OK) return tuna_fail_context(err, st, "%s", argv[i + 1]);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = 1;
            return TUNA_OK;
        }
        if (!strcmp(a, "--config") || !strcmp(a, "-c")) {
            i++;
            continue;
        }
        if (!strcmp(a, "--no-resume") || !strcmp(a, "--no_resume")) {
            o->trainer.resume = 0;
            continue;
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o->trainer.quiet = 1;
            continue;
        }
        const char *key = NULL, *value = NULL;
        char keybuf[128];
        if (!strcmp(a, "-m")) key = "model";
        else if (!strcmp(a, "-o")) key = "output_dir";
        else if (!strcmp(a, "-t")) key = "tokenizer"; /* as in every command; threads: --threads */
        else if (!strncmp(a, "--", 2)) {
            const char *eq = strchr(a + 2, '=');
            if (eq) {
                snprintf(keybuf, sizeof keybuf, "%.*s", (int)(eq - a - 2), a + 2);
                key = keybuf;
                value = eq + 1;
            } else {
                key = a + 2;
            }
        } else {
            return tuna_fail(err, TUNA_ERR_INVALID, "unexpected argument \"%s\"", a);
        }
        if (!value) {
            if (i + 1 >= argc) return tuna_fail(err, TUNA_ERR_INVALID, "%s needs a value", a);
            value = argv[++i];
        }
        TUNA_TRY(tuna_train_options_set(o, key, value, err));
    }
    return TUNA_OK;
}

void tuna_train_options_print_keys(FILE *out) {
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) fprintf(out, "  --%-28s %s\n", defs[i].key, defs[i].help);
}
