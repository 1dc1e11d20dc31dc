/* Training benchmark (issue "Training"): tokens/s of full training steps
 * (forward + backward + optimizer update) on a small Tuna-2 config, beside our
 * PyTorch reference (tools/bench_train_reference.py) on the same machine, in
 * the same invocation, with the same thread count. Target: >= 1.5x.
 *
 *   OMP_WAIT_POLICY=passive build/bench/bench_train [--threads N] [--steps S]
 *        [--warmup W] [--image SIZE] [--patch P] [--text T] [--no-reference]
 *
 * Config (f32 weights, random init from a seeded generator):
 *   hidden 256, vocab 2048; LLM 4 layers, 8 q / 2 kv heads x 32, intermediate
 *   704; flow head 2 blocks, 4 q / 2 kv heads x 64, intermediate 704.
 * Sequence (text-to-image, one image):
 *   [BOS] T text tokens [BOI][t + N image_pad][EOI][EOS], N = (SIZE/P)^2;
 *   CE labels on the T text tokens (HF alignment: labels[i] = ids[i]), no
 *   masked patches, t = 0.4, the flow loss on the image (z_t and the clean
 *   target are seeded random images).
 * One step, timed as a whole (the trainer's own functions):
 *   tuna_param_table_zero_grad; loss and gradients through the trainer's
 *   model binding (tuna_train_model_bind -> tuna_model_loss_and_gradients);
 *   tuna_clip_grad_norm (1.0); tuna_adamw_step (lr 1e-4, betas 0.9/0.95,
 *   eps 1e-8, weight decay 0.01). No EMA (the reference has none either).
 * The reference does the same with tuna2_ref.Tuna2, ce_loss + flow_loss,
 * backward, clip_grad_norm_, torch.optim.AdamW.
 *
 * tokens/s = sequence length * steps / seconds, after W warm-up steps.
 * The machine is shared: the load average and the CPU use of each side
 * (CPU time / (wall time x threads)) are printed beside the figures; run it
 * with OMP_WAIT_POLICY=passive so OpenMP threads sleep instead of spinning
 * (as docs/benchmarks.md explains for bench_model). */
#include "core/rng.h"
#include "core/threads.h"
#include "model/config_json.h"
#include "model/config.h"
#include "train/optimizer.h"
#include "train/params.h"
#include "train/trainer.h"

#include "bench_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int threads, steps, warmup;
    int image, patch, text;
    int reference;
} options;

static void die(const char *what, const tuna_error *err) {
    fprintf(stderr, "bench_train: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

/* The small config; tools/bench_train_reference.py builds the same. */
static void small_config(tuna_config *c, int patch) {
    tuna_config_official_7b(c);
    c->vocab_size = 2048;
    c->hidden_size = 256;
    c->llm.num_layers = 4;
    c->llm.num_heads = 8;
    c->llm.num_kv_heads = 2;
    c->llm.head_dim = 32;
    c->llm.intermediate_size = 704;
    c->head.num_layers = 2;
    c->head.num_heads = 4;
    c->head.num_kv_heads = 2;
    c->head.head_dim = 64;
    c->head.intermediate_size = 704;
    c->patch_size = patch;
    c->tokens = (tuna_special_tokens){.bos = 2040, .eos = 2041, .boi = 2042, .eoi = 2043, .image_pad = 2044,
                                      .pad = 2045};
}

/* Ordinary text ids, the same formula as the reference script. */
static int32_t text_id(int i) { return (int32_t)((i * 7919 + 13) % 2000); }

/* Every parameter of the config in a table, seeded random: norms 1, Linear /
 * conv weights N(0, 1/sqrt(fan_in)), the rest N(0, 0.02). Speed does not
 * depend on the values, only on them being ordinary floats. */
static void build_params(const tuna_config *c, tuna_param_table *t) {
    tuna_expected_tensor *list = NULL;
    size_t count = 0;
    tuna_error err;
    if (tuna_config_expected_tensors(c, &list, &count, &err)) die("expected tensors", &err);
    tuna_rng rng;
    tuna_rng_seed(&rng, 1234);
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < count; i++) {
        const tuna_expected_tensor *e = &list[i];
        int64_t n = 1, fan_in = 1;
        for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
        for (int d = 1; d < e->ndim; d++) fan_in *= e->shape[d];
        float *init = bench_alloc(sizeof(float) * (size_t)n);
        int is_norm = strstr(e->name, "norm") != NULL && e->ndim == 1;
        float std = e->ndim >= 2 ? 1.0f / sqrtf((float)fan_in) : 0.02f;
        tuna_rng_fill_normal(&rng, init, (long)n, is_norm ? 1.0f : 0.0f, is_norm ? 0.0f : std);
        if (tuna_param_table_add(t, e->name, e->ndim, e->shape, init, &err)) die(e->name, &err);
        free(init);
    }
    free(list);
    tuna_freeze_rules none = {0};
    if (tuna_param_table_setup_training(t, &none, 0, &err)) die("setup training", &err);
}

/* The t2i sample described at the top. Buffers are owned by the sample
 * (tuna_train_sample_free releases them). */
static void build_sample(const tuna_config *c, const options *o, tuna_train_sample *s) {
    int grid = o->image / o->patch, n = grid * grid;
    int L = 1 + o->text + 1 + (n + 1) + 1 + 1;
    memset(s, 0, sizeof *s);
    s->task = TUNA_TASK_T2I;
    s->length = L;
    s->input_ids = malloc(sizeof(int32_t) * (size_t)L);
    s->labels = malloc(sizeof(int32_t) * (size_t)L);
    if (!s->input_ids || !s->labels) die("out of memory", NULL);
    int k = 0;
    s->input_ids[k++] = c->tokens.bos;
    for (int i = 0; i < o->text; i++) s->input_ids[k++] = text_id(i);
    s->input_ids[k++] = c->tokens.boi;
    for (int j = 0; j < n + 1; j++) s->input_ids[k++] = c->tokens.image_pad;
    s->input_ids[k++] = c->tokens.eoi;
    s->input_ids[k++] = c->tokens.eos;
    for (int i = 0; i < L; i++) s->labels[i] = i >= 1 && i <= o->text ? s->input_ids[i] : -100;
    size_t pixels = (size_t)c->image_channels * o->image * o->image;
    s->image_count = 1;
    s->heights[0] = s->widths[0] = o->image;
    s->images[0] = malloc(sizeof(float) * pixels);
    s->targets[0] = malloc(sizeof(float) * pixels);
    if (!s->images[0] || !s->targets[0]) die("out of memory", NULL);
    tuna_rng rng;
    tuna_rng_seed(&rng, 7);
    tuna_rng_fill_normal(&rng, s->targets[0], (long)pixels, 0.0f, 0.5f);
    tuna_rng_fill_normal(&rng, s->images[0], (long)pixels, 0.0f, 1.0f);
    s->t[0] = 0.4f;
    s->flow[0] = 1;
}

typedef struct {
    double tok_s, cpu, seconds;
    double first_loss, last_loss;
    int length;
} figures;

static void measure(const options *o, const tuna_threads *pool, figures *f) {
    tuna_config c;
    small_config(&c, o->patch);
    tuna_param_table params;
    build_params(&c, &params);
    tuna_param_stats st = tuna_param_table_stats(&params);
    tuna_train_sample sample;
    build_sample(&c, o, &sample);
    f->length = sample.length;
    printf("config: hidden %d, vocab %d; LLM %d layers, %d/%d heads x %d, intermediate %d; head %d blocks, %d/%d "
           "heads x %d, intermediate %d; patch %d\n",
           c.hidden_size, c.vocab_size, c.llm.num_layers, c.llm.num_heads, c.llm.num_kv_heads, c.llm.head_dim,
           c.llm.intermediate_size, c.head.num_layers, c.head.num_heads, c.head.num_kv_heads, c.head.head_dim,
           c.head.intermediate_size, c.patch_size);
    printf("parameters: %.2f M in %d tensors, all trained (f32); sequence: %d tokens (%d text, %dx%d image = %d "
           "patches)\n",
           st.trainable / 1e6, st.tensors, sample.length, o->text, o->image, o->image,
           (o->image / o->patch) * (o->image / o->patch));

    tuna_error err;
    tuna_train_model model;
    if (tuna_train_model_bind(&c, &params, pool, &model, &err)) die("bind", &err);
    tuna_optimizer_config oc;
    tuna_optimizer_config_default(&oc);
    oc.learning_rate = 1e-4;
    oc.ema_decay = 0;
    tuna_optimizer opt;
    tuna_optimizer_init(&opt, &oc);
    opt.pool = pool;

    double t0 = 0, c0 = 0;
    for (int step = 0; step < o->warmup + o->steps; step++) {
        if (step == o->warmup) t0 = bench_now(), c0 = bench_cpu_seconds();
        tuna_param_table_zero_grad(&params);
        tuna_loss_values loss;
        if (model.loss_and_grad(model.ctx, &sample, 1.0f, &loss, &err)) die("loss and gradients", &err);
        tuna_clip_grad_norm(&params, oc.max_grad_norm, pool);
        tuna_adamw_step(&opt, &params, oc.learning_rate);
        if (step == 0) f->first_loss = loss.loss;
        f->last_loss = loss.loss;
    }
    f->seconds = bench_now() - t0;
    f->cpu = (bench_cpu_seconds() - c0) / (f->seconds * pool->count);
    f->tok_s = (double)sample.length * o->steps / f->seconds;
    printf("ours: %d steps (after %d warm-up) in %.3f s = %.1f ms/step, %.1f tokens/s (CPU use %.0f%% of %d threads);"
           " loss %.4f -> %.4f\n",
           o->steps, o->warmup, f->seconds, 1e3 * f->seconds / o->steps, f->tok_s, 100 * f->cpu, pool->count,
           f->first_loss, f->last_loss);
    if (model.destroy) model.destroy(model.ctx);
    tuna_train_sample_free(&sample);
    tuna_param_table_free(&params);
}

static int reference_available(void) { return system("python3 -c 'import torch' >/dev/null 2>&1") == 0; }

static int int_arg(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "bench_train: %s needs a value\n", argv[*i]);
        exit(2);
    }
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < 0 || v > 100000) {
        fprintf(stderr, "bench_train: bad value '%s' for %s\n", argv[*i], argv[*i - 1]);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv) {
    options o = {.threads = 0, .steps = 10, .warmup = 2, .image = 64, .patch = 4, .text = 32, .reference = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--threads")) o.threads = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--steps")) o.steps = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--warmup")) o.warmup = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--image")) o.image = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--patch")) o.patch = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--text")) o.text = int_arg(argc, argv, &i);
        else if (!strcmp(a, "--no-reference")) o.reference = 0;
        else {
            fprintf(stderr, "bench_train: unknown argument '%s' (see the top of bench/bench_train.c)\n", a);
            return 2;
        }
    }
    if (o.steps < 1 || o.patch < 1 || o.image < o.patch || o.image % o.patch || o.text > 1000) {
        fprintf(stderr, "bench_train: need --steps >= 1, --image a multiple of --patch, --text <= 1000\n");
        return 2;
    }
    tuna_threads pool;
    tuna_threads_init(&pool, o.threads);
    printf("bench_train: threads=%d\n", pool.count);
    bench_print_load("start", &pool);
    figures f = {0};
    measure(&o, &pool, &f);

    cJSON *ref = NULL;
    if (!o.reference) {
        printf("\nreference: skipped (--no-reference)\n");
    } else if (!reference_available()) {
        printf("\nreference: not run: python3 with torch is not available here\n");
    } else {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "python3 tools/bench_train_reference.py --threads %d --steps %d --warmup %d --image %d --patch %d "
                 "--text %d",
                 pool.count, o.steps, o.warmup, o.image, o.patch, o.text);
        ref = bench_run_json_command("bench_train", cmd);
    }
    bench_print_load("end", &pool);

    double rt = bench_json_number(ref, "tok_s"), rcpu = bench_json_number(ref, "cpu");
    if (ref && (int)bench_json_number(ref, "length") != f.length)
        printf("WARNING: the reference's sequence has %d tokens, ours %d\n", (int)bench_json_number(ref, "length"),
               f.length);
    printf("\n| %-40s | %10s | %10s | %8s | %-11s | %10s |\n", "figure", "ours", "reference", "ratio", "CPU use",
           "per CPU-s");
    printf("|------------------------------------------|------------|------------|----------|-------------|"
           "------------|\n");
    char label[128];
    snprintf(label, sizeof label, "training tokens/s (%d tok, %dx%d/p%d)", f.length, o.image, o.image, o.patch);
    if (rt > 0)
        printf("| %-40s | %10.1f | %10.1f | %7.2fx | %3.0f%% / %3.0f%% | %9.2fx |\n", label, f.tok_s, rt, f.tok_s / rt,
               100 * f.cpu, 100 * rcpu, rcpu > 0 && f.cpu > 0 ? f.tok_s / rt * rcpu / f.cpu : 0.0);
    else
        printf("| %-40s | %10.1f | %10s | %8s | %3.0f%% / -   | %10s |\n", label, f.tok_s, "-", "-", 100 * f.cpu, "-");
    printf("(steps = zero grads + forward + backward + clip + AdamW; ratio = ours / reference, >1 = ours faster; "
           "target >= 1.5x. CPU use: CPU time / (wall x threads), ours / reference; per CPU-s: the ratio scaled by "
           "reference CPU use / ours. Reference: torch %s, f32, %d threads; loss %.4f -> %.4f.)\n",
           ref ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ref, "torch")) : "-", pool.count,
           bench_json_number(ref, "first_loss"), bench_json_number(ref, "last_loss"));
    if (rt > 0) printf("target 1.5x: %s\n", f.tok_s / rt >= 1.5 ? "met" : "NOT met");
    cJSON_Delete(ref);
    return 0;
}
