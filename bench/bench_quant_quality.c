/* Quality of a quantised model against its reference (docs/quantization.md).
 *
 *   build/bench/bench_quant_quality -r REF -m MODEL [--tasks FILE] [--max N] [--text-only]
 *                                    [--gen N] [--steps S] [--cfg C] [--size HxW]
 *
 * 1. Next-token distributions: every understanding task of the task file
 *    (default tests/fixtures/eval/tasks.jsonl: held-out, never trained on) is
 *    laid out as a chat with its image and its answer and run teacher-forced
 *    through both models; at every text position (the prefix all tasks share,
 *    system prompt and user header, counted once: with causal attention its
 *    logits are the same in every task),
 *        KLD(P_ref || P_model) = sum_v p_ref(v) (log p_ref(v) - log p_model(v))
 *    and whether the top tokens agree. Mean KLD, its 99th percentile, and the
 *    same-top-token rate are printed. --text-only drops the images (models
 *    whose vision path is not trained, such as random bench checkpoints).
 * 2. Generation: --gen N captions of the generation tasks, each generated
 *    from the same noise (seed k) by both models; the PSNR of the model's
 *    image against the reference's (range [-1, 1], peak-to-peak 2).
 * One JSON line at the end with every figure. */
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "infer/generate.h"
#include "infer/prepare.h"
#include "infer/prompts.h"
#include "infer/understand.h"
#include "model/forward.h"
#include "model/sequence.h"
#include "ops/backend.h"

#include "bench_common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const tuna_error *err) {
    fprintf(stderr, "bench_quant_quality: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

/* logits of every row of a whole sequence (no cache) */
static void all_logits(const tuna_model *m, const tuna_sequence *seq, float *logits, const tuna_threads *pool) {
    tuna_forward_request rq = {.sequence = seq, .cache = NULL, .row_begin = 0, .row_end = seq->length,
                               .logits_mode = TUNA_LOGITS_ALL, .logits = logits};
    tuna_backend be = tuna_backend_cpu(pool);
    tuna_error err = {0};
    if (tuna_model_forward(m, &rq, 1, &be, NULL, &err) != TUNA_OK) die("forward", &err);
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* KLD of one row; *same = argmax agree */
static double row_kld(const float *ref, const float *q, int V, int *same) {
    double mr = -INFINITY, mq = -INFINITY;
    int ar = 0, aq = 0;
    for (int v = 0; v < V; v++) {
        if (ref[v] > mr) mr = ref[v], ar = v;
        if (q[v] > mq) mq = q[v], aq = v;
    }
    double zr = 0, zq = 0;
    for (int v = 0; v < V; v++) {
        zr += exp(ref[v] - mr);
        zq += exp(q[v] - mq);
    }
    double lzr = log(zr), lzq = log(zq), kld = 0;
    for (int v = 0; v < V; v++) {
        double lr = ref[v] - mr - lzr, lq = q[v] - mq - lzq;
        kld += exp(lr) * (lr - lq);
    }
    *same = ar == aq;
    return kld > 0 ? kld : 0;
}

int main(int argc, char **argv) {
    const char *ref_path = NULL, *model_path = NULL, *tasks = "tests/fixtures/eval/tasks.jsonl";
    int max_tasks = 1000, text_only = 0, gen = 0, steps = 20, want_h = 0, want_w = 0;
    float cfg = 4.0f;
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (strcmp(argv[i], "-r") == 0 && more) ref_path = argv[++i];
        else if (strcmp(argv[i], "-m") == 0 && more) model_path = argv[++i];
        else if (strcmp(argv[i], "--tasks") == 0 && more) tasks = argv[++i];
        else if (strcmp(argv[i], "--max") == 0 && more) max_tasks = atoi(argv[++i]);
        else if (strcmp(argv[i], "--text-only") == 0) text_only = 1;
        else if (strcmp(argv[i], "--gen") == 0 && more) gen = atoi(argv[++i]);
        else if (strcmp(argv[i], "--steps") == 0 && more) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cfg") == 0 && more) cfg = strtof(argv[++i], NULL);
        else if (strcmp(argv[i], "--size") == 0 && more && sscanf(argv[i + 1], "%dx%d", &want_h, &want_w) == 2) i++;
        else {
            fprintf(stderr, "usage: bench_quant_quality -r REF -m MODEL [--tasks FILE] [--max N] [--text-only] "
                            "[--gen N] [--steps S] [--cfg C] [--size HxW]\n");
            return 2;
        }
    }
    if (!ref_path || !model_path) return fprintf(stderr, "bench_quant_quality: -r and -m are required\n"), 2;
    tuna_threads pool;
    tuna_threads_init(&pool, 0);
    tuna_model ref, model;
    tuna_tokenizer *tok, *tok2;
    tuna_error err = {0};
    if (tuna_load_model_and_tokenizer(ref_path, NULL, &ref, &tok, &err) != TUNA_OK) die(ref_path, &err);
    if (tuna_load_model_and_tokenizer(model_path, NULL, &model, &tok2, &err) != TUNA_OK) die(model_path, &err);
    tuna_tokenizer_free(tok2);
    const tuna_config *c = &ref.config;
    int V = c->vocab_size;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tasks);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");

    FILE *f = fopen(tasks, "r");
    if (!f) return fprintf(stderr, "bench_quant_quality: cannot open %s\n", tasks), 1;
    size_t cap = 1 << 16, count = 0;
    double *klds = malloc(sizeof(double) * cap), kld_sum = 0;
    long same = 0;
    int32_t *first_ids = NULL;
    int first_length = 0;
    int n_tasks = 0, n_gen = 0;
    double psnr_sum = 0, psnr_min = INFINITY, t0 = bench_now();
    char line[1 << 16];
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(j, "task"));
        if (kind && strcmp(kind, "understand") == 0 && n_tasks < max_tasks) {
            const char *q = cJSON_GetStringValue(cJSON_GetObjectItem(j, "question"));
            const char *a = cJSON_GetStringValue(cJSON_GetObjectItem(j, "answer"));
            const char *img = cJSON_GetStringValue(cJSON_GetObjectItem(j, "image"));
            if (q && a) {
                float *chw = NULL;
                int h = 0, w = 0, images = 0;
                if (img && !text_only) {
                    char path[8192];
                    snprintf(path, sizeof path, "%s/%s", dir, img);
                    if (tuna_prepare_image(path, c->patch_size, want_h, want_w, &chw, &h, &w, &err) != TUNA_OK)
                        die(path, &err);
                    images = 1;
                }
                char user[4096];
                snprintf(user, sizeof user, "%s%s", images ? "<image>\n" : "", q);
                tuna_chat_message msgs[2] = {{TUNA_ROLE_USER, user}, {TUNA_ROLE_ASSISTANT, a}};
                int32_t *ids;
                int length;
                if (tuna_chat_build_ids(&ref, tok, msgs, 2, 0, &h, &w, images, &ids, &length, &err) != TUNA_OK)
                    die("chat ids", &err);
                tuna_image_segment *segs = NULL;
                int found = 0;
                if (tuna_find_segments(ids, length, c, images, &h, &w, &segs, &found, &err) != TUNA_OK) die("segments", &err);
                float t1 = 1.0f;
                const float *imgs[1] = {chw};
                tuna_sequence seq = {.ids = ids, .length = length, .image_count = images, .segments = segs,
                                     .images = imgs, .t = &t1};
                float *lr = malloc(sizeof(float) * (size_t)length * V), *lq = malloc(sizeof(float) * (size_t)length * V);
                all_logits(&ref, &seq, lr, &pool);
                all_logits(&model, &seq, lq, &pool);
                int shared = 0; /* positions identical to the first task's: already counted */
                if (first_ids)
                    while (shared < length && shared < first_length && ids[shared] == first_ids[shared]) shared++;
                for (int r = shared ? shared - 1 : 0; r + 1 < length; r++) {
                    if (tuna_segment_at(segs, found, r) >= 0) continue; /* text positions only */
                    int agree;
                    double k = row_kld(lr + (size_t)r * V, lq + (size_t)r * V, V, &agree);
                    if (count == cap) klds = realloc(klds, sizeof(double) * (cap *= 2));
                    klds[count++] = k;
                    kld_sum += k;
                    same += agree;
                }
                if (!first_ids) {
                    first_ids = ids;
                    first_length = length;
                } else {
                    free(ids);
                }
                free(lr), free(lq), free(segs), free(chw);
                n_tasks++;
            }
        } else if (kind && strcmp(kind, "generate") == 0 && n_gen < gen) {
            const char *prompt = cJSON_GetStringValue(cJSON_GetObjectItem(j, "prompt"));
            int h = want_h > 0 ? want_h : c->patch_size == 16 ? 256 : 32, w = want_w > 0 ? want_w : h;
            tuna_ids cond = {0}, uncond = {0};
            if (tuna_t2i_ids(tok, c, prompt, h, w, 0, &cond, &err) != TUNA_OK ||
                tuna_t2i_ids(tok, c, tuna_default_negative_t2i, h, w, 0, &uncond, &err) != TUNA_OK)
                die("t2i ids", &err);
            size_t n = (size_t)c->image_channels * h * w;
            float *za = malloc(sizeof(float) * n), *zb = malloc(sizeof(float) * n);
            tuna_rng rng;
            tuna_rng_seed(&rng, (uint64_t)n_gen);
            tuna_rng_fill_normal(&rng, za, (long)n, 0.0f, (float)c->noise_scale);
            memcpy(zb, za, sizeof(float) * n);
            tuna_generate_params p = {.cond_ids = cond.data, .cond_length = (int)cond.len, .uncond_ids = uncond.data,
                                      .uncond_length = (int)uncond.len, .height = h, .width = w, .steps = steps,
                                      .cfg_scale = cfg};
            if (tuna_generate(&ref, &p, za, &pool, &err) != TUNA_OK) die("generate", &err);
            if (tuna_generate(&model, &p, zb, &pool, &err) != TUNA_OK) die("generate", &err);
            double se = 0;
            for (size_t i = 0; i < n; i++) {
                double a = fmax(-1, fmin(1, za[i])), b = fmax(-1, fmin(1, zb[i]));
                se += (a - b) * (a - b);
            }
            double psnr = se > 0 ? 10 * log10(4.0 / (se / (double)n)) : 99.0;
            psnr_sum += psnr;
            psnr_min = fmin(psnr_min, psnr);
            n_gen++;
            free(za), free(zb);
            tuna_ids_free(&cond);
            tuna_ids_free(&uncond);
        }
        cJSON_Delete(j);
    }
    fclose(f);
    qsort(klds, count, sizeof *klds, compare_double);
    double mean = count ? kld_sum / (double)count : 0, p99 = count ? klds[(size_t)(0.99 * (double)(count - 1))] : 0;
    double top1 = count ? (double)same / (double)count : 0;
    printf("%s vs %s: %d tasks, %zu text positions%s: KLD mean %.6f, p99 %.6f, max %.6f; same top token %.2f%%\n",
           model_path, ref_path, n_tasks, count, text_only ? " (text only)" : "", mean, p99,
           count ? klds[count - 1] : 0.0, 100.0 * top1);
    if (n_gen)
        printf("generation: %d images (%d steps, cfg %.1f), PSNR vs reference mean %.2f dB, min %.2f dB\n", n_gen, steps, cfg,
               psnr_sum / n_gen, psnr_min);
    printf("{\"model\": \"%s\", \"reference\": \"%s\", \"positions\": %zu, \"kld_mean\": %.7f, \"kld_p99\": %.7f, "
           "\"top1\": %.5f, \"images\": %d, \"psnr_mean\": %.3f, \"seconds\": %.1f}\n",
           model_path, ref_path, count, mean, p99, top1, n_gen, n_gen ? psnr_sum / n_gen : 0.0, bench_now() - t0);
    free(klds);
    free(first_ids);
    tuna_tokenizer_free(tok);
    tuna_model_free(&ref);
    tuna_model_free(&model);
    return 0;
}
