/* Model benchmark (issue "The Tuna-2 model on CPU"): our engine against our
 * PyTorch reference (tools/bench_reference.py) on the same weights and the
 * same number of threads, in one invocation.
 *
 *   build/bench/bench_model MODEL_DIR [--threads N] [--prompt P] [--decode D]
 *        [--gen-size S] [--gen-steps G] [--full-decode F] [--no-reference] [--dtype f32|bf16]
 *   build/bench/bench_model --memory MODEL_DIR [--threads N] [--image S]
 *        [--text T] [--decode D] [--tokenizer PATH]
 *
 * Speed (default mode):
 *   prefill   tokens/s of one forward over a P-token text prompt (no image),
 *             logits of the last row only (TUNA_LOGITS_LAST); best of 2
 *   decode    tokens/s of D one-token steps on the KV cache after the prefill
 *   roofline  bytes of weights one decode token reads (every LLM matrix +
 *             lm_head, in their dtype) / the machine's measured read bandwidth;
 *             also as the median of 5 (bandwidth, 8 decode tokens) pairs
 *             measured back to back (the bandwidth of a shared machine drifts)
 *   gen step  seconds per Euler step of tuna_generate at S x S with CFG: the
 *             segment rows of cond and uncond stacked, after a cached prefix
 * then the same figures from tools/bench_reference.py (when python3 + torch
 * are present) and one table: figure, ours, reference, ratio.
 *
 * Memory (--memory): the understanding path (tuna_chat_session_reply) on an
 * S x S random image + T words of text, greedy decoding of D tokens, with the
 * weights memory-mapped. Prints peak RSS and its split: RssFile (pages of the
 * mapped weights) vs RssAnon (everything the engine allocates). "Beyond the
 * weights" = anonymous memory. Token ids come from the real tokenizer.
 *
 * Token ids of the speed mode follow text_id() below; tools/bench_reference.py
 * uses the same formulas, so both sides compute the same sequences. */
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "infer/generate.h"
#include "infer/understand.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/tuna2.h"
#include "text/tokenizer.h"

#include "bench_common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *model_dir;
    int threads;
    int prompt, decode, full_decode;
    int gen_size, gen_steps, gen_text, gen_uncond_text;
    int reference;
    int memory;
    int image, text_words;
    const char *tokenizer;
    const char *dtype; /* --dtype f32|bf16: convert the weight matrices after loading (as `tuna --dtype`) */
} options;

static void die(const char *what, const tuna_error *err) {
    fprintf(stderr, "bench_model: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

/* ---- token ids shared with tools/bench_reference.py --------------------- */

static int32_t text_id(int i, int salt) { return (int32_t)(((long)i * 7919 + (long)salt * 104729 + 13) % 150000); }

/* text tokens, then [boi][t + N image_pad][eoi] for an S x S image */
static int32_t *gen_ids(const tuna_config *c, int text, int salt, int size, int *length) {
    int n = (size / c->patch_size) * (size / c->patch_size);
    *length = text + n + 3;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)*length);
    if (!ids) die("out of memory", NULL);
    int k = 0;
    for (int i = 0; i < text; i++) ids[k++] = text_id(i, salt);
    ids[k++] = c->tokens.boi;
    for (int j = 0; j < n + 1; j++) ids[k++] = c->tokens.image_pad;
    ids[k++] = c->tokens.eoi;
    return ids;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* ---- engine figures ----------------------------------------------------- */

typedef struct {
    double prefill_tok_s, decode_tok_s, gen_step_s;
    double prefill_cpu, decode_cpu, gen_cpu; /* CPU time / (wall time * threads) */
    double bandwidth_gbs, decode_bytes, roofline_tok_s, kv_bytes_last;
    double paired_roofline; /* median of decode / bandwidth over ROOFLINE_PAIRS adjacent measurements */
} figures;

/* Bytes one decode token reads from the weights: every LLM matrix + lm_head. */
static double decode_weight_bytes(const tuna_model *m) {
    double bytes = (double)tuna_tensor_nbytes(m->lm_head);
    for (int l = 0; l < m->config.llm.num_layers; l++) {
        const tuna_llm_layer *w = &m->llm_layers[l];
        const tuna_tensor *mats[7] = {w->q_weight, w->k_weight, w->v_weight, w->o_weight,
                                      w->gate_weight, w->up_weight, w->down_weight};
        for (int i = 0; i < 7; i++) bytes += (double)tuna_tensor_nbytes(mats[i]);
    }
    return bytes;
}

/* count one-token forwards after position `from` (greedy argmax feeds the
 * next); seconds taken. */
static double decode_tokens(const tuna_model *m, int32_t *ids, tuna_sequence *seq, tuna_kv_cache *cache, float *logits,
                            int from, int count, const tuna_backend *be, tuna_workspace *ws) {
    tuna_error err;
    double t0 = bench_now();
    for (int i = 0; i < count; i++) {
        ids[from + i] = argmax(logits, m->config.vocab_size);
        seq->length = from + i + 1;
        tuna_forward_request rq = {.sequence = seq, .cache = cache, .row_begin = from + i, .row_end = from + i + 1,
                                   .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
        if (tuna_model_forward(m, &rq, 1, be, ws, &err)) die("decode", &err);
    }
    return bench_now() - t0;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The machine's bandwidth drifts by a third within a minute when it is shared,
 * so one bandwidth figure taken before the decode can flatter or wrong it.
 * Here each of ROOFLINE_PAIRS short decode runs is timed right after its own
 * bandwidth measurement; the median of the ratios is reported beside the
 * plain one. */
enum { ROOFLINE_PAIRS = 5, ROOFLINE_PAIR_TOKENS = 8 };

static void measure_paired_roofline(const tuna_model *m, int32_t *ids, tuna_sequence *seq, tuna_kv_cache *cache,
                                    float *logits, int from, const tuna_threads *pool, const tuna_backend *be,
                                    tuna_workspace *ws, figures *f) {
    double ratio[ROOFLINE_PAIRS];
    printf("decode beside the bandwidth, %d pairs of (bandwidth, %d tokens):", ROOFLINE_PAIRS, ROOFLINE_PAIR_TOKENS);
    for (int p = 0; p < ROOFLINE_PAIRS; p++) {
        double gbs = bench_memory_bandwidth(pool, (size_t)512 << 20);
        double dt = decode_tokens(m, ids, seq, cache, logits, from + p * ROOFLINE_PAIR_TOKENS, ROOFLINE_PAIR_TOKENS, be, ws);
        ratio[p] = ROOFLINE_PAIR_TOKENS / dt / (gbs * 1e9 / f->decode_bytes);
        printf(" %.0f%% (%.1f GB/s)", 100 * ratio[p], gbs);
    }
    qsort(ratio, ROOFLINE_PAIRS, sizeof ratio[0], compare_double);
    f->paired_roofline = ratio[ROOFLINE_PAIRS / 2];
    printf("; median %.0f%%\n", 100 * f->paired_roofline);
}

static void measure_text(const tuna_model *m, const options *o, const tuna_threads *pool, figures *f) {
    const tuna_config *c = &m->config;
    int P = o->prompt, D = o->decode, total = P + D + ROOFLINE_PAIRS * ROOFLINE_PAIR_TOKENS;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)total);
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
    if (!ids || !logits) die("out of memory", NULL);
    for (int i = 0; i < P; i++) ids[i] = text_id(i, 1);
    tuna_sequence seq = {.ids = ids, .length = P};
    tuna_kv_cache cache;
    tuna_error err;
    if (tuna_kv_cache_init(&cache, c, total, 0, &err)) die("kv cache", &err);
    tuna_backend be = tuna_backend_cpu(pool);
    tuna_workspace ws; /* one for prefill and decode, as a chat session keeps */
    tuna_workspace_init(&ws, &be);

    /* warm-up: pages the mapped weights in and lets the allocator settle */
    tuna_forward_request warm = {.sequence = &seq, .cache = &cache, .row_begin = 0, .row_end = P < 16 ? P : 16,
                                 .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
    if (tuna_model_forward(m, &warm, 1, &be, &ws, &err)) die("warm-up forward", &err);

    double best = 1e30;
    for (int rep = 0; rep < 2; rep++) {
        tuna_kv_cache_truncate(&cache, 0);
        tuna_forward_request rq = {.sequence = &seq, .cache = &cache, .row_begin = 0, .row_end = P,
                                   .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
        double t0 = bench_now(), c0 = bench_cpu_seconds();
        if (tuna_model_forward(m, &rq, 1, &be, &ws, &err)) die("prefill", &err);
        double dt = bench_now() - t0;
        if (dt < best) best = dt, f->prefill_cpu = (bench_cpu_seconds() - c0) / (dt * pool->count);
    }
    f->prefill_tok_s = P / best;
    printf("prefill: %d tokens in %.3f s = %.1f tokens/s (best of 2; CPU use %.0f%% of %d threads)\n", P, best,
           f->prefill_tok_s, 100 * f->prefill_cpu, pool->count);

    double c0 = bench_cpu_seconds();
    double dt = decode_tokens(m, ids, &seq, &cache, logits, P, D, &be, &ws);
    f->decode_tok_s = D / dt;
    f->decode_cpu = (bench_cpu_seconds() - c0) / (dt * pool->count);
    f->kv_bytes_last = 2.0 * c->llm.num_layers * (double)total * cache.llm_row * sizeof(float);
    printf("decode: %d tokens after the prefill in %.3f s = %.2f tokens/s (CPU use %.0f%%)\n", D, dt, f->decode_tok_s,
           100 * f->decode_cpu);
    measure_paired_roofline(m, ids, &seq, &cache, logits, P + D, pool, &be, &ws, f);
    tuna_kv_cache_free(&cache);
    tuna_workspace_free(&ws);
    free(ids);
    free(logits);
}

typedef struct {
    double sum;
    int count;
} step_times;

static void on_step(void *ctx, int step, int steps, double seconds) {
    step_times *s = ctx;
    s->sum += seconds;
    s->count++;
    printf("  generation step %d/%d: %.3f s\n", step, steps, seconds);
}

static void measure_generation(const tuna_model *m, const options *o, const tuna_threads *pool, figures *f) {
    const tuna_config *c = &m->config;
    int cond_len, uncond_len;
    int32_t *cond = gen_ids(c, o->gen_text, 2, o->gen_size, &cond_len);
    int32_t *uncond = gen_ids(c, o->gen_uncond_text, 3, o->gen_size, &uncond_len);
    size_t n = (size_t)c->image_channels * o->gen_size * o->gen_size;
    float *z = malloc(sizeof(float) * n);
    if (!z) die("out of memory", NULL);
    tuna_rng rng;
    tuna_rng_seed(&rng, 0);
    tuna_rng_fill_normal(&rng, z, (long)n, 0.0f, (float)c->noise_scale);
    step_times times = {0};
    tuna_generate_params p = {.cond_ids = cond, .cond_length = cond_len, .uncond_ids = uncond,
                              .uncond_length = uncond_len, .height = o->gen_size, .width = o->gen_size,
                              .steps = o->gen_steps, .cfg_scale = 4.0f, .progress = on_step, .progress_ctx = &times};
    tuna_error err;
    double t0 = bench_now(), c0 = bench_cpu_seconds();
    if (tuna_generate(m, &p, z, pool, &err)) die("generate", &err);
    double total = bench_now() - t0;
    f->gen_cpu = (bench_cpu_seconds() - c0) / (total * pool->count);
    f->gen_step_s = times.sum / times.count;
    printf("generation %dx%d, CFG, %d steps: %.3f s per step (mean), %.3f s in all with the prefix (CPU use %.0f%%)\n",
           o->gen_size, o->gen_size, o->gen_steps, f->gen_step_s, total, 100 * f->gen_cpu);
    free(cond);
    free(uncond);
    free(z);
}

/* ---- the reference ------------------------------------------------------ */

static int reference_available(void) {
    return system("python3 -c 'import torch, safetensors' >/dev/null 2>&1") == 0;
}

/* Runs tools/bench_reference.py (bench_run_json_command: its parsed JSON, or NULL). */
static cJSON *run_reference(const options *o, int threads) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "python3 tools/bench_reference.py '%s' --threads %d --prompt %d --decode %d --full-decode %d "
             "--gen-size %d --gen-steps %d --gen-text %d --gen-uncond-text %d --check",
             o->model_dir, threads, o->prompt, o->decode, o->full_decode, o->gen_size, o->gen_steps, o->gen_text,
             o->gen_uncond_text);
    return bench_run_json_command("bench_model", cmd);
}

/* ratio > 1: ours is better (higher rate, or fewer seconds). The last column
 * is the share of the requested cores each side got while measuring. */
static void table_row(const char *figure, double ours, double ref, int lower_is_better, double ours_cpu,
                      double ref_cpu) {
    char cpu[32];
    if (ref_cpu > 0) snprintf(cpu, sizeof cpu, "%3.0f%% / %3.0f%%", 100 * ours_cpu, 100 * ref_cpu);
    else snprintf(cpu, sizeof cpu, "%3.0f%% / -", 100 * ours_cpu);
    if (ref > 0) {
        double ratio = lower_is_better ? ref / ours : ours / ref;
        /* the same ratio per CPU-second used: less sensitive to cores taken by others */
        double per_cpu = ref_cpu > 0 && ours_cpu > 0 ? ratio * ref_cpu / ours_cpu : 0;
        printf("| %-44s | %10.3f | %10.3f | %7.2fx | %-11s | %9.2fx |\n", figure, ours, ref, ratio, cpu, per_cpu);
    } else {
        printf("| %-44s | %10.3f | %10s | %8s | %-11s | %10s |\n", figure, ours, "-", "-", cpu, "-");
    }
}

static int run_speed(const options *o) {
    tuna_threads pool;
    tuna_threads_init(&pool, o->threads);
    tuna_model m;
    tuna_error err;
    double t0 = bench_now();
    if (tuna_model_load(o->model_dir, &m, &err)) die(o->model_dir, &err);
    if (o->dtype && tuna_model_set_weight_dtype(&m, strcmp(o->dtype, "f32") ? TUNA_BF16 : TUNA_F32, &err))
        die("--dtype", &err);
    const tuna_config *c = &m.config;
    printf("bench_model: %s, threads=%d, load %.2f s\n", o->model_dir, pool.count, bench_now() - t0);
    printf("  LLM: hidden %d, %d layers, %d/%d heads, intermediate %d, vocab %d, weights %s; head: %d blocks\n",
           c->hidden_size, c->llm.num_layers, c->llm.num_heads, c->llm.num_kv_heads, c->llm.intermediate_size,
           c->vocab_size, tuna_dtype_name(m.lm_head->dtype), c->head.num_layers);

    bench_print_load("start", &pool);
    figures f = {0};
    size_t bw_bytes = (size_t)1 << 30;
    f.bandwidth_gbs = bench_memory_bandwidth(&pool, bw_bytes);
    f.decode_bytes = decode_weight_bytes(&m);
    f.roofline_tok_s = f.bandwidth_gbs * 1e9 / f.decode_bytes;
    printf("memory read bandwidth: %.2f GB/s (streaming sum over %zu MB, best of 5)\n", f.bandwidth_gbs,
           bw_bytes >> 20);

    measure_text(&m, o, &pool, &f);
    printf("decode roofline: %.1f MB of weights per token / %.2f GB/s = %.2f tokens/s; measured %.2f = %.0f%%\n"
           "  (the KV cache adds at most %.1f MB per token at the last step, not counted)\n",
           f.decode_bytes / 1e6, f.bandwidth_gbs, f.roofline_tok_s, f.decode_tok_s,
           100.0 * f.decode_tok_s / f.roofline_tok_s, f.kv_bytes_last / 1e6);
    measure_generation(&m, o, &pool, &f);
    tuna_model_free(&m);

    cJSON *ref = NULL;
    if (!o->reference)
        printf("\nreference: skipped (--no-reference)\n");
    else if (!reference_available())
        printf("\nreference: not run: python3 with torch and safetensors is not available here\n");
    else
        ref = run_reference(o, pool.count);

    bench_print_load("end", &pool);
    printf("\n| %-44s | %10s | %10s | %8s | %-11s | %10s |\n", "figure", "ours", "reference", "ratio", "CPU use",
           "per CPU-s");
    printf("|%s|%s|%s|%s|%s|%s|\n", "----------------------------------------------", "------------",
           "------------", "----------", "-------------", "------------");
    char label[128];
    snprintf(label, sizeof label, "prefill tokens/s (%d tokens, last logits)", o->prompt);
    table_row(label, f.prefill_tok_s, bench_json_number(ref, "prefill_tok_s"), 0, f.prefill_cpu,
              bench_json_number(ref, "prefill_cpu"));
    table_row("  vs reference module forward (all logits)", f.prefill_tok_s, bench_json_number(ref, "prefill_module_tok_s"),
              0, f.prefill_cpu, bench_json_number(ref, "prefill_module_cpu"));
    table_row("decode tokens/s (reference with a KV cache)", f.decode_tok_s, bench_json_number(ref, "decode_kv_tok_s"), 0,
              f.decode_cpu, bench_json_number(ref, "decode_kv_cpu"));
    table_row("decode tokens/s (reference: full recompute)", f.decode_tok_s, bench_json_number(ref, "decode_full_tok_s"), 0,
              f.decode_cpu, bench_json_number(ref, "decode_full_cpu"));
    snprintf(label, sizeof label, "seconds per generation step %dx%d, CFG", o->gen_size, o->gen_size);
    table_row(label, f.gen_step_s, bench_json_number(ref, "gen_step_s"), 1, f.gen_cpu, bench_json_number(ref, "gen_cpu"));
    printf("| %-44s | %9.0f%% | %10s | %8s | %-11s | %10s |\n", "decode / bandwidth roofline",
           100.0 * f.decode_tok_s / f.roofline_tok_s, "", "", "", "");
    printf("| %-44s | %9.0f%% | %10s | %8s | %-11s | %10s |\n", "  the same, paired measurements (median)",
           100.0 * f.paired_roofline, "", "", "", "");
    printf("(ratio: ours / reference for rates, reference / ours for seconds; >1 = ours faster. CPU use: CPU time /"
           " (wall time x threads), ours / reference: below 100%% = other processes took cores;"
           " per CPU-s: the ratio scaled by reference CPU use / ours."
           " Reference: torch %s, f32 compute, %d threads.)\n",
           ref ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ref, "torch")) : "-", pool.count);
    cJSON_Delete(ref);
    return 0;
}

/* ---- peak memory -------------------------------------------------------- */

/* A "Key:   123 kB" line of /proc/self/status, in bytes (0 when absent). */
static double proc_status_bytes(const char *key) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return 0;
    char line[256];
    double v = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = atof(line + n + 1) * 1024.0;
            break;
        }
    fclose(fp);
    return v;
}

static void print_memory(const char *when) {
    printf("  %-28s VmRSS %8.1f MB = RssAnon %8.1f MB + RssFile %8.1f MB (+ shmem); VmHWM %8.1f MB\n", when,
           proc_status_bytes("VmRSS") / 1e6, proc_status_bytes("RssAnon") / 1e6, proc_status_bytes("RssFile") / 1e6,
           proc_status_bytes("VmHWM") / 1e6);
}

/* Peak anonymous memory: /proc has no high-water mark for RssAnon alone
 * (VmHWM mixes in the pages of the mapped weights), so a sampler thread reads
 * RssAnon every 2 ms while the understanding run goes on. */
typedef struct {
    pthread_mutex_t lock;
    int stop;
    double peak_anon;
    long samples;
} anon_sampler;

static void *sample_anon(void *ctx) {
    anon_sampler *a = ctx;
    for (;;) {
        double v = proc_status_bytes("RssAnon");
        pthread_mutex_lock(&a->lock);
        if (v > a->peak_anon) a->peak_anon = v;
        a->samples++;
        int stop = a->stop;
        pthread_mutex_unlock(&a->lock);
        if (stop) return NULL;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

static int run_memory(const options *o) {
    tuna_threads pool;
    tuna_threads_init(&pool, o->threads);
    tuna_error err;
    bench_print_load("start", &pool);
    print_memory("at start:");
    tuna_model m;
    if (tuna_model_load(o->model_dir, &m, &err)) die(o->model_dir, &err);
    const tuna_config *c = &m.config;
    double weight_bytes = 0;
    for (size_t i = 0; i < tuna_checkpoint_count(m.checkpoint); i++)
        weight_bytes += (double)tuna_tensor_nbytes(tuna_checkpoint_tensor(m.checkpoint, i));
    printf("bench_model --memory: %s (%s), threads=%d, %.1f MB of weights (%s, memory-mapped)\n", o->model_dir,
           tuna_checkpoint_format(m.checkpoint), pool.count, weight_bytes / 1e6, tuna_dtype_name(m.lm_head->dtype));
    printf("  LLM: hidden %d, %d layers, %d/%d heads, intermediate %d; head: %d blocks\n", c->hidden_size,
           c->llm.num_layers, c->llm.num_heads, c->llm.num_kv_heads, c->llm.intermediate_size, c->head.num_layers);
    print_memory("after load:");
    double anon_after_load = proc_status_bytes("RssAnon");

    tuna_tokenizer *tok = NULL;
    if (tuna_tokenizer_load(o->tokenizer, &tok, &err)) die(o->tokenizer, &err);

    /* user: "<image>\n" + T words; the words are distinct enough to stay ~1 token each */
    static const char *words[] = {"the", "model", "reads", "an", "image", "and", "a", "long", "question",
                                  "about", "its", "content", "then", "answers", "in", "one", "line"};
    size_t nwords = sizeof words / sizeof words[0];
    size_t cap = 16 + (size_t)o->text_words * 12;
    char *content = malloc(cap);
    if (!content) die("out of memory", NULL);
    size_t len = (size_t)snprintf(content, cap, "%s", o->image > 0 ? "<image>\n" : "");
    for (int i = 0; i < o->text_words; i++)
        len += (size_t)snprintf(content + len, cap - len, "%s%s", i ? " " : "", words[(size_t)i * 7 % nwords]);
    tuna_chat_message msg = {TUNA_ROLE_USER, content};

    int h = o->image, w = o->image;
    int32_t *ids = NULL;
    int length = 0;
    if (tuna_chat_build_ids(&m, tok, &msg, 1, 1, &h, &w, o->image > 0, &ids, &length, &err)) die("chat ids", &err);
    free(ids);
    int patches = o->image > 0 ? (h / c->patch_size) * (w / c->patch_size) : 0;
    printf("  sequence: %d positions = %d image rows (%dx%d, %d patches + t, BOI, EOI) + %d text tokens; decode %d\n",
           length, o->image > 0 ? patches + 3 : 0, h, w, patches, length - (o->image > 0 ? patches + 3 : 0), o->decode);

    tuna_chat_session s;
    if (tuna_chat_session_init(&s, &m, tok, length + o->decode + 1, &pool, &err)) die("session", &err);
    printf("  KV cache: %.1f MB (f32, %d positions)\n", tuna_kv_cache_bytes(&s.cache) / 1e6, s.cache.capacity);
    if (o->image > 0) {
        size_t n = (size_t)c->image_channels * h * w;
        float *img = malloc(sizeof(float) * n);
        if (!img) die("out of memory", NULL);
        tuna_rng rng;
        tuna_rng_seed(&rng, 5);
        for (size_t i = 0; i < n; i++) img[i] = 2.0f * tuna_rng_uniform(&rng) - 1.0f;
        if (tuna_chat_session_add_image(&s, img, h, w, &err)) die("image", &err);
        free(img);
    }
    anon_sampler sampler = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t sampler_thread;
    if (pthread_create(&sampler_thread, NULL, sample_anon, &sampler) != 0) die("sampler thread", NULL);
    tuna_reply_params rp = {.sampling = {.temperature = 0.0f}, .max_tokens = o->decode};
    tuna_rng rng;
    tuna_rng_seed(&rng, 1);
    int reply_tokens = 0;
    double t0 = bench_now();
    if (tuna_chat_session_reply(&s, &msg, 1, &rp, &rng, NULL, &reply_tokens, &err)) die("reply", &err);
    double dt = bench_now() - t0;
    pthread_mutex_lock(&sampler.lock);
    sampler.stop = 1;
    pthread_mutex_unlock(&sampler.lock);
    pthread_join(sampler_thread, NULL);
    printf("  prefill + %d decoded tokens in %.2f s\n", reply_tokens, dt);
    print_memory("after the run:");
    bench_print_load("end", &pool);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double hwm = proc_status_bytes("VmHWM"), file_now = proc_status_bytes("RssFile");
    printf("\npeak RSS (VmHWM) %.1f MB, ru_maxrss %.1f MB; mapped weights resident now (RssFile) %.1f MB of %.1f MB\n",
           hwm / 1e6, ru.ru_maxrss * 1024.0 / 1e6, file_now / 1e6, weight_bytes / 1e6);
    printf("VmHWM - RssFile now: %.1f MB (a lower bound of the anonymous peak: fewer weight pages may have been resident then)\n",
           (hwm - file_now) / 1e6);
    printf("anonymous memory (RssAnon): %.1f MB after load, peak %.1f MB (%ld samples, every 2 ms)\n",
           anon_after_load / 1e6, sampler.peak_anon / 1e6, sampler.samples);
    double beyond = sampler.peak_anon;
    printf("resident memory beyond the weights: %.1f MB (target < 1000 MB): %s\n", beyond / 1e6,
           beyond < 1e9 ? "met" : "NOT met");
    tuna_chat_session_free(&s);
    tuna_tokenizer_free(tok);
    free(content);
    tuna_model_free(&m);
    return 0;
}

/* ---- command line ------------------------------------------------------- */

static int int_arg(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "bench_model: %s needs a value\n", argv[*i]);
        exit(2);
    }
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < 0 || v > 1000000) {
        fprintf(stderr, "bench_model: bad value '%s' for %s\n", argv[*i], argv[*i - 1]);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    options o = {.threads = 0, .prompt = 512, .decode = 64, .full_decode = 4, .gen_size = 256, .gen_steps = 3,
                 .gen_text = 32, .gen_uncond_text = 8, .reference = 1, .image = 512, .text_words = 991,
                 .tokenizer = "../shared/tokenizer/tuna2/tokenizer.json"};
    int decode_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--threads")) o.threads = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--prompt")) o.prompt = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--decode")) o.decode = int_arg(argc, argv, &i), decode_given = 1;
        else if (!strcmp(a, "--full-decode")) o.full_decode = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--gen-size")) o.gen_size = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--gen-steps")) o.gen_steps = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--no-reference")) o.reference = 0;
        else if (!strcmp(a, "--memory")) o.memory = 1;
        else if (!strcmp(a, "--image")) o.image = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--text")) o.text_words = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) o.tokenizer = argv[++i];
        else if (!strcmp(a, "--dtype") && i + 1 < argc && (!strcmp(argv[i + 1], "f32") || !strcmp(argv[i + 1], "bf16")))
            o.dtype = argv[++i];
        else if (a[0] != '-' && !o.model_dir) o.model_dir = a;
        else {
            fprintf(stderr, "bench_model: unknown argument '%s' (see the top of bench/bench_model.c)\n", a);
            return 2;
        }
    }
    if (!o.model_dir) {
        fprintf(stderr, "usage: bench_model MODEL_DIR [--threads N] [--prompt P] [--decode D] [--gen-size S]\n"
                        "         [--gen-steps G] [--full-decode F] [--no-reference]\n"
                        "       bench_model --memory MODEL_DIR [--image S] [--text WORDS] [--decode D]\n"
                        "         [--tokenizer tokenizer.json]\n"
                        "write the models with tools/make_bench_models.sh\n");
        return 2;
    }
    if (o.prompt < 1 || o.gen_steps < 1 || o.gen_size < 16) {
        fprintf(stderr, "bench_model: --prompt and --gen-steps must be >= 1, --gen-size >= 16\n");
        return 2;
    }
    if (o.memory) {
        if (!decode_given) o.decode = 8;
        return run_memory(&o);
    }
    return run_speed(&o);
}
