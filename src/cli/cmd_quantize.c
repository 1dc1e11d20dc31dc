/* `tuna quantize -m SRC -o DST --type TYPE`: a model (any format the engine
 * reads) to one GGUF file DST/model.gguf holding the weights in ggml's block
 * types, the configuration (tuna2.config = config.json text) and the tokenizer
 * (tokenizer.huggingface.json), so `-m DST` and `-m DST/model.gguf` are a
 * complete model for every command.
 *
 * Which tensor gets which type (first matching rule; --rule rules come
 * before the defaults; docs/quantization.md has the measurements behind the
 * defaults):
 *   - tensors that are not matrices (norms, biases, the mask token, the 4-D
 *     patch embedding) keep their dtype for the block types;
 *   - the flow head's adaLN modulation, its final layer, the time embedding
 *     stay in their dtype (a small share of the bytes, read once per image
 *     step, and sensitive: they scale every image token);
 *   - with q4_k / q4_0 / q5_0 the LM head becomes Q6_K (as llama.cpp's Q4_K_M);
 *   - every other matrix becomes TYPE.
 * A matrix whose rows are not whole blocks of its type falls back, as
 * llama.cpp does: Q4_K -> Q5_0, Q6_K -> Q8_0, then to its own dtype when not a
 * multiple of 32 either; each fallback is reported with its row length.
 * f16 / bf16 / f32 convert every floating tensor. The file is written
 * atomically, one converted tensor in memory at a time. */
#include "cli/commands.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "infer/prepare.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "model/config_json.h"
#include "ops/cpu/quant.h"
#include "text/tokenizer.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TYPE_KEEP TUNA_DTYPE_COUNT /* a rule's "keep the source dtype" */
enum { MAX_RULES = 64 };

typedef struct {
    const char *glob;
    tuna_dtype type;
} rule;

static const struct {
    const char *name;
    tuna_dtype type;
    uint32_t ftype; /* llama.cpp's general.file_type */
} type_names[] = {
    {"q8_0", TUNA_Q8_0, 7}, {"q4_0", TUNA_Q4_0, 2}, {"q5_0", TUNA_Q5_0, 8},  {"q4_k", TUNA_Q4_K, 15},
    {"q6_k", TUNA_Q6_K, 18}, {"f16", TUNA_F16, 1},  {"bf16", TUNA_BF16, 32}, {"f32", TUNA_F32, 0},
    {"keep", TYPE_KEEP, 0},
};

static int parse_type(const char *name, tuna_dtype *out, uint32_t *ftype) {
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (strcmp(type_names[i].name, name) == 0) {
            *out = type_names[i].type;
            if (ftype) *ftype = type_names[i].ftype;
            return 1;
        }
    return 0;
}

static const char *type_label(tuna_dtype t) {
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].type == t) return type_names[i].name;
    return tuna_dtype_name(t);
}

static int is_float(tuna_dtype t) {
    return t == TUNA_F32 || t == TUNA_BF16 || t == TUNA_F16 || tuna_dtype_is_quantized(t);
}

typedef struct {
    const char *name;
    const tuna_tensor *src;
    tuna_dtype out;
    const char *why; /* a fallback's reason, or NULL */
} plan_entry;

typedef struct {
    plan_entry *plan;
    const tuna_threads *pool;
} fill_ctx;

/* The destination type of one tensor. */
static tuna_dtype choose(const char *name, const tuna_tensor *t, tuna_dtype type, const rule *rules, int n_rules,
                         char *why, size_t why_size) {
    why[0] = '\0';
    if (!is_float(t->dtype)) return t->dtype;
    if (!tuna_dtype_is_quantized(type)) return type; /* f16 / bf16 / f32: everything */
    if (t->ndim != 2) return t->dtype;
    tuna_dtype want = type;
    for (int i = 0; i < n_rules; i++)
        if (fnmatch(rules[i].glob, name, 0) == 0) {
            want = rules[i].type;
            break;
        }
    if (want == TYPE_KEEP) return t->dtype;
    int64_t K = t->shape[1];
    tuna_dtype got = want;
    if (K % tuna_dtype_block_size(got) && got == TUNA_Q4_K) got = TUNA_Q5_0;
    if (K % tuna_dtype_block_size(got) && got == TUNA_Q6_K) got = TUNA_Q8_0;
    if (K % tuna_dtype_block_size(got)) got = t->dtype;
    if (got != want)
        snprintf(why, why_size, "%s wanted, rows of %lld are not a multiple of %lld", tuna_dtype_name(want), (long long)K,
                 (long long)tuna_dtype_block_size(want));
    return got;
}

/* Convert plan[index] into buffer: the same dtype is copied byte for byte;
 * otherwise blocks of rows are widened to f32 and quantised/rounded. */
static tuna_status fill_tensor(void *ctx, size_t index, void *buffer, tuna_error *err) {
    fill_ctx *f = ctx;
    const plan_entry *e = &f->plan[index];
    const tuna_tensor *src = e->src;
    if (src->dtype == e->out) {
        memcpy(buffer, src->data, tuna_tensor_nbytes(src));
        return TUNA_OK;
    }
    int64_t K = src->ndim ? src->shape[src->ndim - 1] : 1, rows = K ? tuna_tensor_numel(src) / K : 0;
    int64_t chunk = ((int64_t)16 << 20) / (K > 0 ? K : 1);
    if (chunk < 1) chunk = 1;
    float *wide = malloc(sizeof(float) * (size_t)((chunk < rows ? chunk : rows) * K + 1));
    if (!wide) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory converting %s", e->name);
    size_t in_row = tuna_dtype_bytes_for(src->dtype, K), out_row = tuna_dtype_bytes_for(e->out, K);
    tuna_status s = TUNA_OK;
    for (int64_t r0 = 0; r0 < rows && s == TUNA_OK; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        for (int64_t r = 0; r < n; r++)
            if (tuna_dequantize_row(src->dtype, (const char *)src->data + (size_t)(r0 + r) * in_row, wide + r * K, K) != 0)
                s = tuna_fail(err, TUNA_ERR_UNSUPPORTED, "%s: cannot read dtype %s", e->name, tuna_dtype_name(src->dtype));
        if (s == TUNA_OK)
            s = tuna_quantize_rows(e->out, wide, (char *)buffer + (size_t)r0 * out_row, n, K, f->pool, err);
    }
    free(wide);
    if (s != TUNA_OK) return tuna_fail_context(err, s, "%s", e->name);
    return TUNA_OK;
}

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: tuna quantize -m SRC -o DST --type TYPE [--rule GLOB=TYPE]... [-t TOKENIZER] [--quiet]\n"
            "  -m SRC       a model directory or weights file (safetensors, .pt, .gguf)\n"
            "  -o DST       output directory (DST/model.gguf is written), or a .gguf path\n"
            "  --type TYPE  q8_0 | q4_k | q6_k | q5_0 | q4_0 (ggml block types) | f16 | bf16 | f32\n"
            "  --rule GLOB=TYPE  tensors matching GLOB get TYPE (or 'keep': their dtype); first match wins,\n"
            "               before the defaults (adaLN, final layer, time embedding kept; LM head q6_k for 4/5-bit)\n"
            "  -t FILE      the tokenizer.json to embed (default: the model's, as the other commands find it)\n"
            "  --quiet      no per-tensor lines\n");
}

static tuna_status build_kv(const tuna_config *c, const char *config_json, const char *tokenizer_json, uint32_t ftype,
                            const char *name, const char *type_name, tuna_gguf_value *kv, size_t *n) {
    size_t k = 0;
    kv[k++] = (tuna_gguf_value){.key = "general.architecture", .type = TUNA_GGUF_STRING, .str = "tuna2"};
    kv[k++] = (tuna_gguf_value){.key = "general.name", .type = TUNA_GGUF_STRING, .str = name};
    kv[k++] = (tuna_gguf_value){.key = "general.file_type", .type = TUNA_GGUF_UINT32, .u = ftype};
    kv[k++] = (tuna_gguf_value){.key = "general.quantization_version", .type = TUNA_GGUF_UINT32, .u = 2};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.quantization.type", .type = TUNA_GGUF_STRING, .str = type_name};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.config", .type = TUNA_GGUF_STRING, .str = config_json};
    /* the LLM's geometry under ggml's usual key names, for tools that list them */
    kv[k++] = (tuna_gguf_value){.key = "tuna2.vocab_size", .type = TUNA_GGUF_UINT32, .u = (uint64_t)c->vocab_size};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.embedding_length", .type = TUNA_GGUF_UINT32, .u = (uint64_t)c->hidden_size};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.block_count", .type = TUNA_GGUF_UINT32, .u = (uint64_t)c->llm.num_layers};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.feed_forward_length", .type = TUNA_GGUF_UINT32,
                                .u = (uint64_t)c->llm.intermediate_size};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.attention.head_count", .type = TUNA_GGUF_UINT32, .u = (uint64_t)c->llm.num_heads};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.attention.head_count_kv", .type = TUNA_GGUF_UINT32,
                                .u = (uint64_t)c->llm.num_kv_heads};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.rope.freq_base", .type = TUNA_GGUF_FLOAT32, .f = c->llm.rope_theta};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.attention.layer_norm_rms_epsilon", .type = TUNA_GGUF_FLOAT32,
                                .f = c->llm.rms_norm_eps};
    kv[k++] = (tuna_gguf_value){.key = "tuna2.flow_head.block_count", .type = TUNA_GGUF_UINT32,
                                .u = (uint64_t)c->head.num_layers};
    if (tokenizer_json)
        kv[k++] = (tuna_gguf_value){.key = "tokenizer.huggingface.json", .type = TUNA_GGUF_STRING, .str = tokenizer_json};
    *n = k;
    return TUNA_OK;
}

int cli_cmd_quantize(int argc, char **argv) {
    const char *src_path = NULL, *dst = NULL, *type_name = NULL, *tokenizer_arg = NULL;
    int quiet = 0, n_rules = 0;
    rule rules[MAX_RULES + 8];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(stdout);
            return 0;
        } else if ((strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) && more) src_path = argv[++i];
        else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && more) dst = argv[++i];
        else if (strcmp(a, "--type") == 0 && more) type_name = argv[++i];
        else if ((strcmp(a, "-t") == 0 || strcmp(a, "--tokenizer") == 0) && more) tokenizer_arg = argv[++i];
        else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) quiet = 1;
        else if (strcmp(a, "--rule") == 0 && more) {
            char *spec = argv[++i], *eq = strrchr(spec, '=');
            tuna_dtype t;
            if (!eq || eq == spec || !parse_type(eq + 1, &t, NULL) || n_rules == MAX_RULES) {
                fprintf(stderr, "tuna quantize: --rule %s: expected GLOB=TYPE (at most %d rules)\n", spec, MAX_RULES);
                return 2;
            }
            *eq = '\0';
            rules[n_rules++] = (rule){spec, t};
        } else {
            fprintf(stderr, "tuna quantize: unexpected argument '%s'%s\n", a, more ? "" : " (or a missing value)");
            print_usage(stderr);
            return 2;
        }
    }
    tuna_dtype type;
    uint32_t ftype = 0;
    if (!src_path || !dst || !type_name) {
        print_usage(stderr);
        return 2;
    }
    if (!parse_type(type_name, &type, &ftype) || type == TYPE_KEEP) {
        fprintf(stderr, "tuna quantize: --type %s: use q8_0, q4_k, q6_k, q5_0, q4_0, f16, bf16 or f32\n", type_name);
        return 2;
    }
    /* the defaults after the user's rules */
    rules[n_rules++] = (rule){"*adaLN_modulation*", TYPE_KEEP};
    rules[n_rules++] = (rule){"diffusion_head_b.*", TYPE_KEEP};
    rules[n_rules++] = (rule){"time_embed.*", TYPE_KEEP};
    if (type == TUNA_Q4_K || type == TUNA_Q4_0 || type == TUNA_Q5_0) rules[n_rules++] = (rule){"tuna.lm_head.weight", TUNA_Q6_K};

    tuna_error err = {0};
    tuna_checkpoint *ck = NULL;
    tuna_config config;
    const char *config_source = NULL;
    char *config_json = NULL, *tokenizer_json = NULL;
    int rc = 1;
    if (tuna_checkpoint_open(src_path, &ck, &err) != TUNA_OK ||
        tuna_config_for_checkpoint(ck, &config, &config_source, &err) != TUNA_OK ||
        tuna_config_to_json(&config, &config_json, &err) != TUNA_OK) {
        fprintf(stderr, "tuna quantize: %s\n", err.message);
        if (ck) tuna_checkpoint_close(ck);
        return 1;
    }
    /* the tokenizer: -t, else the one embedded in SRC, else what the other commands would load */
    const char *embedded = tokenizer_arg ? NULL : tuna_checkpoint_metadata(ck, "tokenizer.huggingface.json");
    if (embedded) {
        tokenizer_json = strdup(embedded);
    } else {
        char buf[4096];
        const char *tok = tuna_tokenizer_for_model(tokenizer_arg, tuna_checkpoint_dir(ck), buf, sizeof buf);
        size_t len;
        if (!tok || tuna_tokenizer_read_json(tok, &tokenizer_json, &len, &err) != TUNA_OK) {
            fprintf(stderr, "tuna quantize: no tokenizer to embed (%s); give one with -t FILE\n",
                    tok ? err.message : "none found");
            goto done;
        }
        tuna_tokenizer *check;
        if (tuna_tokenizer_load_json(tokenizer_json, len, &check, &err) != TUNA_OK) {
            fprintf(stderr, "tuna quantize: %s: %s\n", tok, err.message);
            goto done;
        }
        tuna_tokenizer_free(check);
    }

    size_t n = tuna_checkpoint_count(ck);
    plan_entry *plan = calloc(n ? n : 1, sizeof *plan);
    tuna_gguf_tensor_in *outs = calloc(n ? n : 1, sizeof *outs);
    char (*why)[96] = calloc(n ? n : 1, sizeof *why);
    if (!plan || !outs || !why) {
        fprintf(stderr, "tuna quantize: out of memory\n");
        free(plan), free(outs), free(why);
        goto done;
    }
    double in_bytes = 0, out_bytes = 0, matrix_weights = 0, matrix_bytes = 0;
    int fallbacks = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = tuna_checkpoint_name(ck, i);
        const tuna_tensor *t = tuna_checkpoint_tensor(ck, i);
        plan[i] = (plan_entry){name, t, choose(name, t, type, rules, n_rules, why[i], sizeof why[i]), why[i][0] ? why[i] : NULL};
        if (t->ndim < 1 || t->ndim > 4) {
            fprintf(stderr, "tuna quantize: %s has %d dimensions (GGUF holds 1 to 4)\n", name, t->ndim);
            free(plan), free(outs), free(why);
            goto done;
        }
        outs[i] = (tuna_gguf_tensor_in){.name = name, .dtype = plan[i].out, .ndim = t->ndim};
        for (int d = 0; d < t->ndim; d++) outs[i].shape[d] = t->shape[d];
        double bytes = (double)tuna_dtype_bytes_for(plan[i].out, tuna_tensor_numel(t));
        in_bytes += (double)tuna_tensor_nbytes(t);
        out_bytes += bytes;
        if (t->ndim == 2) {
            matrix_weights += (double)tuna_tensor_numel(t);
            matrix_bytes += bytes;
        }
        if (plan[i].why) fallbacks++;
        if (!quiet)
            printf("  %-56s %-5s -> %-5s%s%s\n", name, tuna_dtype_name(t->dtype), tuna_dtype_name(plan[i].out),
                   plan[i].why ? "  fallback: " : "", plan[i].why ? plan[i].why : "");
    }
    if (fallbacks) {
        printf("%d matrices fell back to another type:\n", fallbacks);
        for (size_t i = 0; i < n; i++)
            if (plan[i].why)
                printf("  %-56s %-5s (%s)\n", plan[i].name, tuna_dtype_name(plan[i].out), plan[i].why);
    }

    /* DST/model.gguf, or DST itself when it names a .gguf file */
    char path[4096];
    size_t dlen = strlen(dst);
    if (dlen > 5 && strcmp(dst + dlen - 5, ".gguf") == 0) {
        snprintf(path, sizeof path, "%s", dst);
    } else {
        if (mkdir(dst, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "tuna quantize: cannot create %s: %s\n", dst, strerror(errno));
            free(plan), free(outs), free(why);
            goto done;
        }
        snprintf(path, sizeof path, "%s/model.gguf", dst);
    }
    const char *base = strrchr(dst, '/');
    tuna_gguf_value kv[20];
    size_t n_kv;
    build_kv(&config, config_json, tokenizer_json, ftype, base && base[1] ? base + 1 : dst, type_label(type), kv, &n_kv);
    tuna_threads pool;
    tuna_threads_init(&pool, 0);
    fill_ctx ctx = {plan, &pool};
    if (tuna_gguf_write(path, kv, n_kv, outs, n, fill_tensor, &ctx, &err) != TUNA_OK) {
        fprintf(stderr, "tuna quantize: %s\n", err.message);
    } else {
        printf("wrote %s: %zu tensors, %.1f MB (from %.1f MB), matrices at %.2f bits per weight; config from %s\n", path,
               n, out_bytes / 1e6, in_bytes / 1e6, matrix_weights > 0 ? 8.0 * matrix_bytes / matrix_weights : 0.0,
               config_source);
        rc = 0;
    }
    free(plan), free(outs), free(why);
done:
    free(config_json);
    free(tokenizer_json);
    tuna_checkpoint_close(ck);
    return rc;
}
