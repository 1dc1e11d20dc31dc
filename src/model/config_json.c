/* config.json (SPEC section 8) <-> tuna_config, and shape checks against a
 * checkpoint. The file is described by the field tables below; the parser
 * walks them, so "unknown key", "wrong type" and "missing key" are checked the
 * same way at every level. */
#include "model/config_json.h"
#include "io/json_util.h"
#include "core/mapped_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the schema -------------------------------------------------------- */

typedef enum {
    FIELD_INT,           /* int, whole number in [0, 2^31) */
    FIELD_NUMBER,        /* double, finite */
    FIELD_BOOL,          /* int 0/1 */
    FIELD_OBJECT,        /* nested table */
    FIELD_ARCHITECTURE,  /* the string "tuna2" (optional) */
    FIELD_PATCH_EPS,     /* null (machine eps) or a number */
    FIELD_ROPE_SCALING,  /* null / absent (none) or the nested table */
    FIELD_IMAGE_SIZES,   /* optional: ["WxH", ...] the image sizes the model was trained for */
    FIELD_NEGATIVE,      /* optional: the negative prompt (null text) the model was trained with */
} field_kind;

typedef struct field {
    const char *key;
    field_kind kind;
    size_t offset;               /* into the struct being filled */
    const struct field *fields;  /* FIELD_OBJECT / FIELD_ROPE_SCALING */
} field;

#define END {NULL, 0, 0, NULL}

static const field llm_fields[] = {
    {"num_layers", FIELD_INT, offsetof(tuna_llm_config, num_layers), NULL},
    {"num_heads", FIELD_INT, offsetof(tuna_llm_config, num_heads), NULL},
    {"num_kv_heads", FIELD_INT, offsetof(tuna_llm_config, num_kv_heads), NULL},
    {"head_dim", FIELD_INT, offsetof(tuna_llm_config, head_dim), NULL},
    {"intermediate_size", FIELD_INT, offsetof(tuna_llm_config, intermediate_size), NULL},
    {"rope_theta", FIELD_NUMBER, offsetof(tuna_llm_config, rope_theta), NULL},
    {"rms_norm_eps", FIELD_NUMBER, offsetof(tuna_llm_config, rms_norm_eps), NULL},
    {"tie_word_embeddings", FIELD_BOOL, offsetof(tuna_llm_config, tie_word_embeddings), NULL},
    END,
};

static const field rope_scaling_fields[] = {
    {"factor", FIELD_NUMBER, offsetof(tuna_rope_scaling, factor), NULL},
    {"low_freq_factor", FIELD_NUMBER, offsetof(tuna_rope_scaling, low_freq_factor), NULL},
    {"high_freq_factor", FIELD_NUMBER, offsetof(tuna_rope_scaling, high_freq_factor), NULL},
    {"original_max_position_embeddings", FIELD_NUMBER, offsetof(tuna_rope_scaling, original_max_position_embeddings), NULL},
    END,
};

static const field head_fields[] = {
    {"num_layers", FIELD_INT, offsetof(tuna_head_config, num_layers), NULL},
    {"num_heads", FIELD_INT, offsetof(tuna_head_config, num_heads), NULL},
    {"num_kv_heads", FIELD_INT, offsetof(tuna_head_config, num_kv_heads), NULL},
    {"head_dim", FIELD_INT, offsetof(tuna_head_config, head_dim), NULL},
    {"intermediate_size", FIELD_INT, offsetof(tuna_head_config, intermediate_size), NULL},
    {"rms_norm_eps", FIELD_NUMBER, offsetof(tuna_head_config, rms_norm_eps), NULL},
    {"qk_norm_eps", FIELD_NUMBER, offsetof(tuna_head_config, qk_norm_eps), NULL},
    {"final_norm_eps", FIELD_NUMBER, offsetof(tuna_head_config, final_norm_eps), NULL},
    {"text_rope_theta", FIELD_NUMBER, offsetof(tuna_head_config, text_rope_theta), NULL},
    {"text_rope_scaling", FIELD_ROPE_SCALING, offsetof(tuna_head_config, text_rope_scaling), rope_scaling_fields},
    {"image_rope_theta", FIELD_NUMBER, offsetof(tuna_head_config, image_rope_theta), NULL},
    END,
};

static const field token_fields[] = {
    {"bos", FIELD_INT, offsetof(tuna_special_tokens, bos), NULL},
    {"eos", FIELD_INT, offsetof(tuna_special_tokens, eos), NULL},
    {"boi", FIELD_INT, offsetof(tuna_special_tokens, boi), NULL},
    {"eoi", FIELD_INT, offsetof(tuna_special_tokens, eoi), NULL},
    {"image_pad", FIELD_INT, offsetof(tuna_special_tokens, image_pad), NULL},
    {"pad", FIELD_INT, offsetof(tuna_special_tokens, pad), NULL},
    END,
};

static const field top_fields[] = {
    {"architecture", FIELD_ARCHITECTURE, 0, NULL},
    {"vocab_size", FIELD_INT, offsetof(tuna_config, vocab_size), NULL},
    {"hidden_size", FIELD_INT, offsetof(tuna_config, hidden_size), NULL},
    {"llm", FIELD_OBJECT, offsetof(tuna_config, llm), llm_fields},
    {"head", FIELD_OBJECT, offsetof(tuna_config, head), head_fields},
    {"patch_size", FIELD_INT, offsetof(tuna_config, patch_size), NULL},
    {"image_channels", FIELD_INT, offsetof(tuna_config, image_channels), NULL},
    {"time_freq_dim", FIELD_INT, offsetof(tuna_config, time_freq_dim), NULL},
    {"patch_norm_eps", FIELD_PATCH_EPS, offsetof(tuna_config, patch_norm_eps), NULL},
    {"noise_scale", FIELD_NUMBER, offsetof(tuna_config, noise_scale), NULL},
    {"t_eps", FIELD_NUMBER, offsetof(tuna_config, t_eps), NULL},
    {"tokens", FIELD_OBJECT, offsetof(tuna_config, tokens), token_fields},
    {"image_sizes", FIELD_IMAGE_SIZES, 0, NULL},
    {"negative_prompt", FIELD_NEGATIVE, 0, NULL},
    END,
};

/* ---- parsing ----------------------------------------------------------- */

static tuna_status parse_object(const cJSON *obj, const field *fields, void *out, const char *where, tuna_config *c,
                                tuna_error *err);

static tuna_status parse_field(const cJSON *item, const field *f, void *out, const char *where, tuna_config *c,
                               tuna_error *err) {
    char *dst = (char *)out + f->offset;
    char path[160];
    snprintf(path, sizeof path, "%s%s%s", where, where[0] ? "." : "", f->key);
    switch (f->kind) {
    case FIELD_INT: {
        uint64_t v;
        if (!json_whole_number(item, &v) || v > 0x7fffffff)
            return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: \"%s\" must be a non-negative integer", path);
        *(int *)dst = (int)v;
        return TUNA_OK;
    }
    case FIELD_NUMBER:
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
            return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: \"%s\" must be a number", path);
        *(double *)dst = item->valuedouble;
        return TUNA_OK;
    case FIELD_BOOL:
        if (!cJSON_IsBool(item)) return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: \"%s\" must be true or false", path);
        *(int *)dst = cJSON_IsTrue(item);
        return TUNA_OK;
    case FIELD_OBJECT:
        return parse_object(item, f->fields, dst, path, c, err);
    case FIELD_ARCHITECTURE:
        if (!cJSON_IsString(item) || strcmp(item->valuestring, "tuna2") != 0)
            return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "config.json: \"architecture\" must be \"tuna2\"");
        return TUNA_OK;
    case FIELD_PATCH_EPS:
        if (cJSON_IsNull(item)) { c->patch_norm_eps_is_machine_eps = 1; c->patch_norm_eps = 0; return TUNA_OK; }
        if (!cJSON_IsNumber(item) || !(item->valuedouble > 0) || !isfinite(item->valuedouble))
            return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: \"patch_norm_eps\" must be null or a positive number");
        c->patch_norm_eps_is_machine_eps = 0;
        c->patch_norm_eps = item->valuedouble;
        return TUNA_OK;
    case FIELD_ROPE_SCALING:
        if (cJSON_IsNull(item)) { c->head.has_text_rope_scaling = 0; return TUNA_OK; }
        c->head.has_text_rope_scaling = 1;
        return parse_object(item, f->fields, dst, path, c, err);
    case FIELD_IMAGE_SIZES: {
        int n = cJSON_IsArray(item) ? cJSON_GetArraySize(item) : -1;
        if (n < 1 || n > TUNA_CONFIG_MAX_IMAGE_SIZES)
            return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: \"image_sizes\" must list 1 to %d \"WxH\" strings",
                             TUNA_CONFIG_MAX_IMAGE_SIZES);
        int k = 0;
        for (const cJSON *e = item->child; e; e = e->next, k++) {
            int w = 0, h = 0, used = 0;
            if (!cJSON_IsString(e) || sscanf(e->valuestring, "%dx%d%n", &w, &h, &used) != 2 ||
                e->valuestring[used] || w < 1 || h < 1 || w > 65536 || h > 65536)
                return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: \"image_sizes\"[%d] must be \"WxH\"", k);
            c->image_sizes[k] = (tuna_image_size){h, w};
        }
        c->image_size_count = n;
        return TUNA_OK;
    }
    case FIELD_NEGATIVE:
        if (!cJSON_IsString(item) || strlen(item->valuestring) >= TUNA_CONFIG_MAX_NEGATIVE)
            return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: \"negative_prompt\" must be a string of under %d bytes",
                             TUNA_CONFIG_MAX_NEGATIVE);
        snprintf(c->negative_prompt, sizeof c->negative_prompt, "%s", item->valuestring);
        c->has_negative_prompt = 1;
        return TUNA_OK;
    }
    return tuna_fail(err, TUNA_ERR_INTERNAL, "config schema");
}

static tuna_status parse_object(const cJSON *obj, const field *fields, void *out, const char *where, tuna_config *c,
                                tuna_error *err) {
    const char *name = where[0] ? where : "the top level";
    if (!cJSON_IsObject(obj)) return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: %s must be an object", name);
    unsigned seen = 0; /* one bit per field of the table (at most 32) */
    for (const cJSON *it = obj->child; it; it = it->next) {
        const field *f = fields;
        while (f->key && strcmp(f->key, it->string) != 0) f++;
        if (!f->key) return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: unknown key \"%.100s\" in %s", it->string, name);
        unsigned bit = 1u << (f - fields);
        if (seen & bit)
            return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: key \"%.100s\" given twice in %s", it->string, name);
        seen |= bit;
        TUNA_TRY(parse_field(it, f, out, where, c, err));
    }
    for (const field *f = fields; f->key; f++) {
        if (f->kind == FIELD_ARCHITECTURE || f->kind == FIELD_ROPE_SCALING || f->kind == FIELD_IMAGE_SIZES ||
            f->kind == FIELD_NEGATIVE)
            continue; /* optional */
        if (!cJSON_GetObjectItemCaseSensitive(obj, f->key))
            return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: missing key \"%s\" in %s", f->key, name);
    }
    return TUNA_OK;
}

tuna_status tuna_config_parse_json(const char *text, size_t len, tuna_config *c, tuna_error *err) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return tuna_fail(err, TUNA_ERR_FORMAT, "config.json: not valid JSON");
    tuna_status s = parse_object(root, top_fields, c, "", c, err);
    cJSON_Delete(root);
    if (s == TUNA_OK) s = tuna_config_validate(c, err);
    if (s != TUNA_OK) memset(c, 0, sizeof *c);
    return s;
}

tuna_status tuna_config_load(const char *path, tuna_config *c, tuna_error *err) {
    char *text = NULL;
    size_t len = 0;
    TUNA_TRY(tuna_read_file(path, (size_t)1 << 20, &text, &len, err));
    tuna_status s = tuna_config_parse_json(text, len, c, err);
    free(text);
    if (s != TUNA_OK) return tuna_fail_context(err, s, "%s", path);
    return TUNA_OK;
}

/* ---- validation -------------------------------------------------------- */

#define LIMIT_DIM (1 << 20)
#define LIMIT_LAYERS 1024

tuna_status tuna_config_validate(const tuna_config *c, tuna_error *err) {
    struct { const char *name; long v, lo, hi; } ints[] = {
        {"vocab_size", c->vocab_size, 1, 1 << 24}, {"hidden_size", c->hidden_size, 1, LIMIT_DIM},
        {"llm.num_layers", c->llm.num_layers, 1, LIMIT_LAYERS}, {"llm.num_heads", c->llm.num_heads, 1, 4096},
        {"llm.num_kv_heads", c->llm.num_kv_heads, 1, 4096}, {"llm.head_dim", c->llm.head_dim, 2, 4096},
        {"llm.intermediate_size", c->llm.intermediate_size, 1, LIMIT_DIM},
        {"head.num_layers", c->head.num_layers, 1, LIMIT_LAYERS}, {"head.num_heads", c->head.num_heads, 1, 4096},
        {"head.num_kv_heads", c->head.num_kv_heads, 1, 4096}, {"head.head_dim", c->head.head_dim, 16, 4096},
        {"head.intermediate_size", c->head.intermediate_size, 1, LIMIT_DIM}, {"patch_size", c->patch_size, 1, 256},
        {"image_channels", c->image_channels, 1, 16}, {"time_freq_dim", c->time_freq_dim, 2, LIMIT_DIM},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].v < ints[i].lo || ints[i].v > ints[i].hi)
            return tuna_fail(err, TUNA_ERR_INVALID, "config: %s = %ld is outside [%ld, %ld]", ints[i].name, ints[i].v,
                             ints[i].lo, ints[i].hi);
    if (c->llm.num_heads % c->llm.num_kv_heads || c->head.num_heads % c->head.num_kv_heads)
        return tuna_fail(err, TUNA_ERR_INVALID, "config: num_heads must be a multiple of num_kv_heads");
    if (c->llm.head_dim % 2) return tuna_fail(err, TUNA_ERR_INVALID, "config: llm.head_dim must be even (RoPE pairs)");
    /* 3D RoPE: head_dim/4 + 3*head_dim/8 + 3*head_dim/8, each an even width */
    if (c->head.head_dim % 16) return tuna_fail(err, TUNA_ERR_INVALID, "config: head.head_dim must be a multiple of 16 (3D RoPE split)");
    if (c->time_freq_dim % 2) return tuna_fail(err, TUNA_ERR_INVALID, "config: time_freq_dim must be even (cos and sin halves)");
    struct { const char *name; double v; } positive[] = {
        {"llm.rope_theta", c->llm.rope_theta}, {"llm.rms_norm_eps", c->llm.rms_norm_eps},
        {"head.rms_norm_eps", c->head.rms_norm_eps}, {"head.qk_norm_eps", c->head.qk_norm_eps},
        {"head.final_norm_eps", c->head.final_norm_eps}, {"head.text_rope_theta", c->head.text_rope_theta},
        {"head.image_rope_theta", c->head.image_rope_theta}, {"noise_scale", c->noise_scale}, {"t_eps", c->t_eps},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (!(positive[i].v > 0) || !isfinite(positive[i].v))
            return tuna_fail(err, TUNA_ERR_INVALID, "config: %s must be positive", positive[i].name);
    if (!(c->t_eps < 1)) return tuna_fail(err, TUNA_ERR_INVALID, "config: t_eps must be below 1");
    if (c->image_size_count < 0 || c->image_size_count > TUNA_CONFIG_MAX_IMAGE_SIZES)
        return tuna_fail(err, TUNA_ERR_INVALID, "config: at most %d image_sizes", TUNA_CONFIG_MAX_IMAGE_SIZES);
    for (int k = 0; k < c->image_size_count; k++)
        if (c->image_sizes[k].height % c->patch_size || c->image_sizes[k].width % c->patch_size)
            return tuna_fail(err, TUNA_ERR_INVALID, "config: image_sizes %dx%d is not a multiple of the patch size %d",
                             c->image_sizes[k].width, c->image_sizes[k].height, c->patch_size);
    if (!c->patch_norm_eps_is_machine_eps && !(c->patch_norm_eps > 0))
        return tuna_fail(err, TUNA_ERR_INVALID, "config: patch_norm_eps must be positive or null");
    if (c->head.has_text_rope_scaling) {
        const tuna_rope_scaling *r = &c->head.text_rope_scaling;
        if (!(r->factor > 0) || !(r->low_freq_factor > 0) || !(r->high_freq_factor > r->low_freq_factor) ||
            !(r->original_max_position_embeddings > 0))
            return tuna_fail(err, TUNA_ERR_INVALID, "config: head.text_rope_scaling needs factor > 0, "
                                                    "high_freq_factor > low_freq_factor > 0, original_max_position_embeddings > 0");
    }
    const int *tok = &c->tokens.bos;
    for (int i = 0; i < 6; i++)
        if (tok[i] < 0 || tok[i] >= c->vocab_size)
            return tuna_fail(err, TUNA_ERR_INVALID, "config: special token id %d is outside the vocabulary", tok[i]);
    return TUNA_OK;
}

/* ---- writing ----------------------------------------------------------- */

/* Shortest decimal that reads back as the same double, always with a '.' or
 * exponent so it reads as a float ("1e-06", "32.0"). */
static void format_number(char *buf, size_t size, double v) {
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(buf, size, "%.*g", precision, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", size - strlen(buf) - 1);
}

typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} out_buffer;

static void emit(out_buffer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(out_buffer *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->failed = 1; return; }
        if (b->data && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
        size_t cap = (b->cap ? b->cap : 512) * 2 + (size_t)n;
        char *grown = realloc(b->data, cap);
        if (!grown) { b->failed = 1; return; }
        b->data = grown;
        b->cap = cap;
    }
}

static void emit_fields(out_buffer *b, const field *fields, const void *in, const tuna_config *c, int indent) {
    int first = 1;
    for (const field *f = fields; f->key; f++) {
        const char *src = (const char *)in + f->offset;
        char num[64];
        if ((f->kind == FIELD_IMAGE_SIZES && c->image_size_count == 0) ||
            (f->kind == FIELD_NEGATIVE && !c->has_negative_prompt))
            continue; /* optional keys are written only when recorded */
        emit(b, "%s\n%*s\"%s\": ", first ? "" : ",", indent, "", f->key);
        first = 0;
        switch (f->kind) {
        case FIELD_INT: emit(b, "%d", *(const int *)src); break;
        case FIELD_NUMBER: format_number(num, sizeof num, *(const double *)src); emit(b, "%s", num); break;
        case FIELD_BOOL: emit(b, "%s", *(const int *)src ? "true" : "false"); break;
        case FIELD_ARCHITECTURE: emit(b, "\"tuna2\""); break;
        case FIELD_IMAGE_SIZES:
            emit(b, "[");
            for (int k = 0; k < c->image_size_count; k++)
                emit(b, "%s\"%dx%d\"", k ? ", " : "", c->image_sizes[k].width, c->image_sizes[k].height);
            emit(b, "]");
            break;
        case FIELD_NEGATIVE: {
            char *quoted = NULL;
            cJSON *str = cJSON_CreateString(c->negative_prompt);
            if (str) quoted = cJSON_PrintUnformatted(str);
            cJSON_Delete(str);
            if (quoted) emit(b, "%s", quoted);
            else b->failed = 1;
            free(quoted);
            break;
        }
        case FIELD_PATCH_EPS:
            if (c->patch_norm_eps_is_machine_eps) emit(b, "null");
            else { format_number(num, sizeof num, c->patch_norm_eps); emit(b, "%s", num); }
            break;
        case FIELD_ROPE_SCALING:
            if (!c->head.has_text_rope_scaling) { emit(b, "null"); break; }
            /* fall through */
        case FIELD_OBJECT:
            emit(b, "{");
            emit_fields(b, f->fields, src, c, indent + 2);
            emit(b, "\n%*s}", indent, "");
            break;
        }
    }
}

tuna_status tuna_config_to_json(const tuna_config *c, char **json, tuna_error *err) {
    *json = NULL;
    out_buffer b = {0};
    emit(&b, "{");
    emit_fields(&b, top_fields, c, c, 2);
    emit(&b, "\n}\n");
    if (b.failed) { free(b.data); return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory writing config.json"); }
    *json = b.data;
    return TUNA_OK;
}

static tuna_status write_text(FILE *out, void *ctx, tuna_error *err) {
    const char *text = ctx;
    if (fputs(text, out) < 0) return tuna_fail(err, TUNA_ERR_IO, "short write");
    return TUNA_OK;
}

tuna_status tuna_config_save(const char *path, const tuna_config *c, tuna_error *err) {
    TUNA_TRY(tuna_config_validate(c, err));
    char *json;
    TUNA_TRY(tuna_config_to_json(c, &json, err));
    tuna_status s = tuna_write_file_atomic(path, write_text, json, err);
    free(json);
    return s;
}

/* ---- expected tensors and shape checks -------------------------------- */

typedef struct {
    tuna_expected_tensor *list;
    size_t count, cap;
    int failed;
} expected_list;

static void expect(expected_list *l, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void expect(expected_list *l, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...) {
    if (l->failed) return;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        tuna_expected_tensor *grown = realloc(l->list, cap * sizeof *grown);
        if (!grown) { l->failed = 1; return; }
        l->list = grown;
        l->cap = cap;
    }
    tuna_expected_tensor *e = &l->list[l->count++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    e->shape[0] = d0; e->shape[1] = d1; e->shape[2] = d2; e->shape[3] = d3;
}

tuna_status tuna_config_expected_tensors(const tuna_config *c, tuna_expected_tensor **list, size_t *count, tuna_error *err) {
    expected_list l = {0};
    int64_t d = c->hidden_size, V = c->vocab_size, p = c->patch_size, C = c->image_channels;
    /* LLM (SPEC sections 1 and 7): Qwen2 with q/k/v bias */
    int64_t q = (int64_t)c->llm.num_heads * c->llm.head_dim, kv = (int64_t)c->llm.num_kv_heads * c->llm.head_dim;
    int64_t I = c->llm.intermediate_size;
    expect(&l, 2, V, d, 0, 0, "tuna.model.embed_tokens.weight");
    for (int i = 0; i < c->llm.num_layers; i++) {
        expect(&l, 2, q, d, 0, 0, "tuna.model.layers.%d.self_attn.q_proj.weight", i);
        expect(&l, 1, q, 0, 0, 0, "tuna.model.layers.%d.self_attn.q_proj.bias", i);
        expect(&l, 2, kv, d, 0, 0, "tuna.model.layers.%d.self_attn.k_proj.weight", i);
        expect(&l, 1, kv, 0, 0, 0, "tuna.model.layers.%d.self_attn.k_proj.bias", i);
        expect(&l, 2, kv, d, 0, 0, "tuna.model.layers.%d.self_attn.v_proj.weight", i);
        expect(&l, 1, kv, 0, 0, 0, "tuna.model.layers.%d.self_attn.v_proj.bias", i);
        expect(&l, 2, d, q, 0, 0, "tuna.model.layers.%d.self_attn.o_proj.weight", i);
        expect(&l, 2, I, d, 0, 0, "tuna.model.layers.%d.mlp.gate_proj.weight", i);
        expect(&l, 2, I, d, 0, 0, "tuna.model.layers.%d.mlp.up_proj.weight", i);
        expect(&l, 2, d, I, 0, 0, "tuna.model.layers.%d.mlp.down_proj.weight", i);
        expect(&l, 1, d, 0, 0, 0, "tuna.model.layers.%d.input_layernorm.weight", i);
        expect(&l, 1, d, 0, 0, 0, "tuna.model.layers.%d.post_attention_layernorm.weight", i);
    }
    expect(&l, 1, d, 0, 0, 0, "tuna.model.norm.weight");
    if (!c->llm.tie_word_embeddings) expect(&l, 2, V, d, 0, 0, "tuna.lm_head.weight");
    /* patch embedding, time embedding, mask token */
    expect(&l, 4, d, C, p, p, "vision_encoder.patch_embedding.weight");
    expect(&l, 1, d, 0, 0, 0, "vision_encoder.patch_embedding.bias");
    expect(&l, 1, d, 0, 0, 0, "vision_encoder.norm.weight");
    expect(&l, 2, d, c->time_freq_dim, 0, 0, "time_embed.mlp.0.weight");
    expect(&l, 1, d, 0, 0, 0, "time_embed.mlp.0.bias");
    expect(&l, 2, d, d, 0, 0, "time_embed.mlp.2.weight");
    expect(&l, 1, d, 0, 0, 0, "time_embed.mlp.2.bias");
    expect(&l, 3, 1, 1, d, 0, "mask_token");
    /* flow head (SPEC section 2): no biases except adaLN */
    q = (int64_t)c->head.num_heads * c->head.head_dim;
    kv = (int64_t)c->head.num_kv_heads * c->head.head_dim;
    I = c->head.intermediate_size;
    for (int i = 0; i < c->head.num_layers; i++) {
        expect(&l, 2, q, d, 0, 0, "diffusion_head_a.%d.self_attn.q_proj.weight", i);
        expect(&l, 2, kv, d, 0, 0, "diffusion_head_a.%d.self_attn.k_proj.weight", i);
        expect(&l, 2, kv, d, 0, 0, "diffusion_head_a.%d.self_attn.v_proj.weight", i);
        expect(&l, 2, d, q, 0, 0, "diffusion_head_a.%d.self_attn.o_proj.weight", i);
        expect(&l, 1, c->head.head_dim, 0, 0, 0, "diffusion_head_a.%d.self_attn.q_norm.weight", i);
        expect(&l, 1, c->head.head_dim, 0, 0, 0, "diffusion_head_a.%d.self_attn.k_norm.weight", i);
        expect(&l, 2, I, d, 0, 0, "diffusion_head_a.%d.mlp.gate_proj.weight", i);
        expect(&l, 2, I, d, 0, 0, "diffusion_head_a.%d.mlp.up_proj.weight", i);
        expect(&l, 2, d, I, 0, 0, "diffusion_head_a.%d.mlp.down_proj.weight", i);
        expect(&l, 1, d, 0, 0, 0, "diffusion_head_a.%d.input_layernorm.weight", i);
        expect(&l, 1, d, 0, 0, 0, "diffusion_head_a.%d.post_attention_layernorm.weight", i);
        expect(&l, 2, 6 * d, d, 0, 0, "diffusion_head_a.%d.adaLN_modulation.1.weight", i);
        expect(&l, 1, 6 * d, 0, 0, 0, "diffusion_head_a.%d.adaLN_modulation.1.bias", i);
    }
    expect(&l, 1, d, 0, 0, 0, "diffusion_head_b.norm_final.weight");
    expect(&l, 2, p * p * C, d, 0, 0, "diffusion_head_b.linear.weight");
    expect(&l, 1, p * p * C, 0, 0, 0, "diffusion_head_b.linear.bias");
    expect(&l, 2, 2 * d, d, 0, 0, "diffusion_head_b.adaLN_modulation.1.weight");
    expect(&l, 1, 2 * d, 0, 0, 0, "diffusion_head_b.adaLN_modulation.1.bias");
    if (l.failed) { free(l.list); return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory"); }
    *list = l.list;
    *count = l.count;
    return TUNA_OK;
}

static void shape_text(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

tuna_status tuna_config_verify_checkpoint(const tuna_config *c, const tuna_checkpoint *ck, size_t *extra, tuna_error *err) {
    tuna_expected_tensor *list;
    size_t n;
    TUNA_TRY(tuna_config_expected_tensors(c, &list, &n, err));
    tuna_status s = TUNA_OK;
    for (size_t i = 0; i < n && s == TUNA_OK; i++) {
        const tuna_tensor *t = tuna_checkpoint_find(ck, list[i].name);
        if (!t) { s = tuna_fail(err, TUNA_ERR_FORMAT, "checkpoint lacks tensor %s", list[i].name); break; }
        int same = t->ndim == list[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == list[i].shape[d];
        if (!same) {
            char have[128], want[128];
            shape_text(have, sizeof have, t->ndim, t->shape);
            shape_text(want, sizeof want, list[i].ndim, list[i].shape);
            s = tuna_fail(err, TUNA_ERR_FORMAT, "tensor %s has shape %s but the configuration needs %s", list[i].name, have, want);
        } else if (t->dtype != TUNA_F32 && t->dtype != TUNA_BF16 && t->dtype != TUNA_F16 &&
                   !(t->ndim >= 2 && tuna_dtype_is_quantized(t->dtype))) { /* matrices may be quantised */
            s = tuna_fail(err, TUNA_ERR_UNSUPPORTED, "tensor %s has dtype %s (F32, BF16, F16 or, for a matrix, a quantised type expected)", list[i].name,
                          tuna_dtype_name(t->dtype));
        }
    }
    /* A tensor the configuration does not use means the two do not match (a
     * config.json with fewer layers than the weights would load and answer
     * garbage): refused, naming the first such tensor. */
    size_t total = tuna_checkpoint_count(ck), unexpected = 0;
    const char *first = NULL;
    for (size_t i = 0; s == TUNA_OK && i < total; i++) {
        const char *name = tuna_checkpoint_name(ck, i);
        size_t j = 0;
        while (j < n && strcmp(list[j].name, name) != 0) j++;
        if (j == n && !first) first = name;
        unexpected += j == n;
    }
    if (s == TUNA_OK && unexpected)
        s = tuna_fail(err, TUNA_ERR_FORMAT,
                      "the checkpoint holds %zu tensor%s the configuration does not use (first: %s): "
                      "config.json does not describe these weights",
                      unexpected, unexpected == 1 ? "" : "s", first);
    if (s == TUNA_OK && extra) *extra = 0;
    free(list);
    return s;
}

static int shape_is(const tuna_checkpoint *ck, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const tuna_tensor *t = tuna_checkpoint_find(ck, name);
    int64_t want[4] = {d0, d1, d2, d3};
    if (!t || t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++) if (t->shape[i] != want[i]) return 0;
    return 1;
}

int tuna_checkpoint_is_official_7b(const tuna_checkpoint *ck) {
    return shape_is(ck, "tuna.model.embed_tokens.weight", 2, 151669, 3584, 0, 0) &&
           shape_is(ck, "tuna.lm_head.weight", 2, 151669, 3584, 0, 0) &&
           shape_is(ck, "tuna.model.layers.0.self_attn.q_proj.weight", 2, 3584, 3584, 0, 0) &&
           shape_is(ck, "tuna.model.layers.27.self_attn.k_proj.weight", 2, 512, 3584, 0, 0) &&
           shape_is(ck, "tuna.model.layers.27.mlp.gate_proj.weight", 2, 18944, 3584, 0, 0) &&
           !tuna_checkpoint_find(ck, "tuna.model.layers.28.input_layernorm.weight") &&
           shape_is(ck, "vision_encoder.patch_embedding.weight", 4, 3584, 3, 16, 16) &&
           shape_is(ck, "time_embed.mlp.0.weight", 2, 3584, 256, 0, 0) &&
           shape_is(ck, "diffusion_head_a.0.self_attn.q_proj.weight", 2, 3584, 3584, 0, 0) &&
           shape_is(ck, "diffusion_head_a.15.self_attn.k_proj.weight", 2, 896, 3584, 0, 0) &&
           shape_is(ck, "diffusion_head_a.15.self_attn.q_norm.weight", 1, 64, 0, 0, 0) &&
           shape_is(ck, "diffusion_head_a.15.mlp.down_proj.weight", 2, 3584, 18944, 0, 0) &&
           !tuna_checkpoint_find(ck, "diffusion_head_a.16.input_layernorm.weight") &&
           shape_is(ck, "diffusion_head_b.linear.weight", 2, 768, 3584, 0, 0);
}

tuna_status tuna_config_for_checkpoint(const tuna_checkpoint *ck, tuna_config *c, const char **source, tuna_error *err) {
    /* a GGUF model carries its config.json text: the one file is complete */
    const char *embedded = tuna_checkpoint_metadata(ck, "tuna2.config");
    if (embedded) {
        if (source) *source = "tuna2.config (file metadata)";
        tuna_status s = tuna_config_parse_json(embedded, strlen(embedded), c, err);
        if (s != TUNA_OK) return tuna_fail_context(err, s, "the tuna2.config metadata");
        return tuna_config_verify_checkpoint(c, ck, NULL, err);
    }
    const char *dir = tuna_checkpoint_dir(ck);
    size_t n = strlen(dir) + sizeof "/config.json";
    char *path = malloc(n);
    if (!path) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    snprintf(path, n, "%s/config.json", dir);
    struct stat st;
    tuna_status s;
    if (stat(path, &st) == 0) {
        s = tuna_config_load(path, c, err);
        if (source) *source = "config.json";
    } else if (tuna_checkpoint_is_official_7b(ck)) {
        tuna_config_official_7b(c);
        s = TUNA_OK;
        if (source) *source = "official 7B (from tensor shapes)";
    } else {
        s = tuna_fail(err, TUNA_ERR_INVALID,
                      "%s is missing and the tensor shapes are not those of the official Tuna-2 7B: "
                      "write a config.json (SPEC section 8) beside the weights", path);
    }
    free(path);
    if (s == TUNA_OK) s = tuna_config_verify_checkpoint(c, ck, NULL, err);
    return s;
}
