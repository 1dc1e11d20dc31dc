/* `tuna bench -m MODEL [--json FILE] [--threads N]`: the model's speed, as
 * llama-bench prints it:
 *   prefill  tokens/s of one forward over a P-token text prompt (default 512),
 *            logits of the last row; best of --reps runs
 *   decode   tokens/s of D one-token steps (default 64) on the KV cache after
 *            that prompt (greedy), best of --reps
 *   gen step seconds per Euler step of a SxS (default 256) generation with
 *            classifier-free guidance (both branches, after a cached prefix);
 *            the fastest of --gen-steps steps (0 skips it)
 * beside the model's type (the dtype of most of its matrix bytes), size and
 * parameter count. Token ids are synthetic (ordinary text ids), so any model
 * of any vocabulary runs. --json writes prefill_tokens_per_s,
 * decode_tokens_per_s, generation_step_s and the rest. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "infer/generate.h"
#include "infer/prepare.h"
#include "io/checkpoint.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/tuna2.h"
#include "ops/backend.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* an ordinary text id below every special token */
static int32_t text_id(const tuna_config *c, int i, int salt) {
    int32_t limit = c->tokens.bos;
    const int32_t special[] = {c->tokens.eos, c->tokens.boi, c->tokens.eoi, c->tokens.image_pad, c->tokens.pad};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++)
        if (special[k] < limit) limit = special[k];
    if (limit > c->vocab_size) limit = c->vocab_size;
    if (limit < 2) limit = 2;
    return (int32_t)(((long)i * 7919 + (long)salt * 104729 + 13) % (limit - 1));
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    double best;
} step_best;

static void on_step(void *ctx, int step, int steps, double seconds) {
    (void)step, (void)steps;
    step_best *s = ctx;
    if (seconds < s->best) s->best = seconds;
}

static void print_usage(FILE *out) {
    fprintf(out, "usage: tuna bench [-m MODEL] [--threads N] [--json FILE] [--prompt P] [--decode D]\n"
                 "                  [--gen-size S] [--gen-steps G] [--reps R]\n"
                 "  prefill tokens/s (P-token prompt, default 512), decode tokens/s (D tokens after it,\n"
                 "  default 64), seconds per SxS guided generation step (default 256; --gen-steps 0: skip)\n");
}

/* The dtype holding most of the matrix bytes, and the totals. */
static const char *model_type(const tuna_checkpoint *ck, double *bytes, double *params) {
    double per_type[TUNA_DTYPE_COUNT] = {0};
    *bytes = *params = 0;
    for (size_t i = 0; i < tuna_checkpoint_count(ck); i++) {
        const tuna_tensor *t = tuna_checkpoint_tensor(ck, i);
        double b = (double)tuna_tensor_nbytes(t);
        *bytes += b;
        *params += (double)tuna_tensor_numel(t);
        if (t->ndim == 2 && (unsigned)t->dtype < TUNA_DTYPE_COUNT) per_type[t->dtype] += b;
    }
    int best = 0;
    for (int d = 1; d < TUNA_DTYPE_COUNT; d++)
        if (per_type[d] > per_type[best]) best = d;
    return tuna_dtype_name((tuna_dtype)best);
}

int cli_cmd_bench(int argc, char **argv) {
    const char *model_arg = NULL, *json = NULL;
    int threads = 0, P = 512, D = 64, gen_size = 256, gen_steps = 2, reps = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && more) model_arg = argv[++i];
        else if (!strcmp(a, "--threads") && more) { if (cli_int("bench", a, argv[++i], 1, 4096, &threads)) return 2; }
        else if (!strcmp(a, "--json") && more) json = argv[++i];
        else if (!strcmp(a, "--prompt") && more) { if (cli_int("bench", a, argv[++i], 1, 65536, &P)) return 2; }
        else if (!strcmp(a, "--decode") && more) { if (cli_int("bench", a, argv[++i], 0, 65536, &D)) return 2; }
        else if (!strcmp(a, "--gen-size") && more) { if (cli_int("bench", a, argv[++i], 1, 4096, &gen_size)) return 2; }
        else if (!strcmp(a, "--gen-steps") && more) { if (cli_int("bench", a, argv[++i], 0, 1000, &gen_steps)) return 2; }
        else if (!strcmp(a, "--reps") && more) { if (cli_int("bench", a, argv[++i], 1, 100, &reps)) return 2; }
        else {
            print_usage(stderr);
            return 2;
        }
    }
    if (P < 1 || P > 65536 || D < 0 || D > 65536 || gen_steps < 0 || gen_steps > 1000 || reps < 1 || reps > 100 ||
        threads < 0 || gen_size < 1) {
        fprintf(stderr, "tuna bench: --prompt in [1, 65536], --decode in [0, 65536], --reps in [1, 100], "
                        "--gen-steps in [0, 1000]\n");
        return 2;
    }
    char dir[4096], buf[4096];
    snprintf(buf, sizeof buf, "%s", tuna_model_dir(model_arg, dir, sizeof dir));
    tuna_threads pool;
    tuna_threads_init(&pool, threads);
    tuna_model m;
    tuna_error err = {0};
    double t0 = now();
    if (tuna_model_load(buf, &m, &err) != TUNA_OK) {
        fprintf(stderr, "tuna bench: %s\n", err.message);
        return 1;
    }
    double load_s = now() - t0, bytes, params;
    const tuna_config *c = &m.config;
    const char *type = model_type(m.checkpoint, &bytes, &params);
    if (gen_size % c->patch_size) gen_size = gen_size / c->patch_size * c->patch_size;
    if (gen_size < c->patch_size) gen_size = c->patch_size;

    int total = P + D;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)total);
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
    tuna_kv_cache cache;
    int rc = 1;
    if (!ids || !logits || tuna_kv_cache_init(&cache, c, total, 0, &err) != TUNA_OK) {
        fprintf(stderr, "tuna bench: %s\n", ids && logits ? err.message : "out of memory");
        free(ids), free(logits), tuna_model_free(&m);
        return 1;
    }
    for (int i = 0; i < P; i++) ids[i] = text_id(c, i, 1);
    tuna_sequence seq = {.ids = ids, .length = P};
    tuna_backend be = tuna_backend_cpu(&pool);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    double prefill = 1e30, decode = 1e30, gen = 0;
    /* warm-up: pages the weights in */
    tuna_forward_request warm = {.sequence = &seq, .cache = &cache, .row_begin = 0, .row_end = P < 16 ? P : 16,
                                 .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
    tuna_status s = tuna_model_forward(&m, &warm, 1, &be, &ws, &err);
    for (int r = 0; r < reps && s == TUNA_OK; r++) {
        tuna_kv_cache_truncate(&cache, 0);
        seq.length = P;
        tuna_forward_request rq = {.sequence = &seq, .cache = &cache, .row_begin = 0, .row_end = P,
                                   .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
        double t = now();
        s = tuna_model_forward(&m, &rq, 1, &be, &ws, &err);
        if (now() - t < prefill) prefill = now() - t;
        t = now();
        for (int i = 0; i < D && s == TUNA_OK; i++) {
            ids[P + i] = argmax(logits, c->vocab_size);
            seq.length = P + i + 1;
            tuna_forward_request step = {.sequence = &seq, .cache = &cache, .row_begin = P + i, .row_end = P + i + 1,
                                         .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
            s = tuna_model_forward(&m, &step, 1, &be, &ws, &err);
        }
        if (D && now() - t < decode) decode = now() - t;
    }
    tuna_workspace_free(&ws);
    tuna_kv_cache_free(&cache);
    if (s == TUNA_OK && gen_steps > 0) {
        /* 32 text tokens + the image segment; the unconditional branch 8 */
        int n = (gen_size / c->patch_size) * (gen_size / c->patch_size), lens[2] = {32 + n + 3, 8 + n + 3};
        int32_t *g[2];
        for (int b = 0; b < 2; b++) {
            g[b] = malloc(sizeof(int32_t) * (size_t)lens[b]);
            if (!g[b]) continue;
            int k = 0;
            for (int i = 0; i < lens[b] - n - 3; i++) g[b][k++] = text_id(c, i, 2 + b);
            g[b][k++] = c->tokens.boi;
            for (int j = 0; j < n + 1; j++) g[b][k++] = c->tokens.image_pad;
            g[b][k++] = c->tokens.eoi;
        }
        size_t nz = (size_t)c->image_channels * gen_size * gen_size;
        float *z = malloc(sizeof(float) * nz);
        if (g[0] && g[1] && z) {
            tuna_rng rng;
            tuna_rng_seed(&rng, 0);
            tuna_rng_fill_normal(&rng, z, (long)nz, 0.0f, (float)c->noise_scale);
            step_best best = {1e30};
            tuna_generate_params p = {.cond_ids = g[0], .cond_length = lens[0], .uncond_ids = g[1],
                                      .uncond_length = lens[1], .height = gen_size, .width = gen_size,
                                      .steps = gen_steps, .cfg_scale = 4.0f, .progress = on_step, .progress_ctx = &best};
            s = tuna_generate(&m, &p, z, &pool, &err);
            gen = best.best;
        } else {
            s = tuna_fail(&err, TUNA_ERR_NOMEM, "out of memory");
        }
        free(g[0]), free(g[1]), free(z);
    }
    if (s != TUNA_OK) {
        fprintf(stderr, "tuna bench: %s\n", err.message);
    } else {
        double prefill_tps = P / prefill, decode_tps = D ? D / decode : 0;
        printf("| %-32s | %-6s | %9s | %8s | %7s | %16s | %16s | %14s |\n", "model", "type", "size", "params",
               "threads", "prefill tok/s", "decode tok/s", "gen step s");
        char count[32];
        if (params >= 1e9) snprintf(count, sizeof count, "%.2f B", params / 1e9);
        else snprintf(count, sizeof count, "%.2f M", params / 1e6);
        printf("| %-32.32s | %-6s | %6.2f GB | %8s | %7d | %9.1f (pp%d) | %9.2f (tg%d) | %6.3f (%dx%d) |\n", buf, type,
               bytes / 1e9, count, pool.count, prefill_tps, P, decode_tps, D, gen, gen_size, gen_size);
        printf("load %.2f s; decode after the %d-token prompt; gen step: the fastest of %d, CFG, both branches\n",
               load_s, P, gen_steps);
        rc = 0;
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", buf);
            cJSON_AddStringToObject(o, "type", type);
            cJSON_AddNumberToObject(o, "size_bytes", bytes);
            cJSON_AddNumberToObject(o, "params", params);
            cJSON_AddNumberToObject(o, "threads", pool.count);
            cJSON_AddNumberToObject(o, "prompt_tokens", P);
            cJSON_AddNumberToObject(o, "decode_tokens", D);
            cJSON_AddNumberToObject(o, "prefill_tokens_per_s", prefill_tps);
            cJSON_AddNumberToObject(o, "decode_tokens_per_s", decode_tps);
            cJSON_AddNumberToObject(o, "generation_size", gen_steps ? gen_size : 0);
            cJSON_AddNumberToObject(o, "generation_step_s", gen);
            cJSON_AddNumberToObject(o, "load_s", load_s);
            char *text = cJSON_Print(o);
            FILE *f = text ? fopen(json, "w") : NULL;
            if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
                fprintf(stderr, "tuna bench: cannot write %s\n", json);
                rc = 1;
            }
            cJSON_free(text);
            cJSON_Delete(o);
        }
    }
    free(ids);
    free(logits);
    tuna_model_free(&m);
    return rc;
}
