/* The training loop (src/train/trainer.h) with a stand-in model: a quadratic
 * loss over a small parameter table whose targets depend on the sample (ids,
 * t, pixels), so the loss curve depends on the data order and every random
 * draw. Proves: resume gives the same curve and weights bit for bit, also
 * after real SIGKILLs of a child process at random moments; keep_last; frozen
 * parameters untouched and absent from the optimizer state; BF16 weights with
 * f32 masters. */
#include "test.h"

#include "core/rng.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static tuna_tokenizer *tok;
static char dir[256];
static int step_sleep_us;

/* ---- the stand-in model -------------------------------------------------------- */

static double sample_feature(const tuna_train_sample *s) {
    double f = 0;
    for (int i = 0; i < s->length; i++) f += (double)(s->input_ids[i] % 97) + (s->labels[i] != -100);
    f = fmod(f, 97.0) / 97.0;
    for (int k = 0; k < s->image_count; k++) {
        double m = 0;
        long n = 3L * s->heights[k] * s->widths[k];
        for (long i = 0; i < n; i++) m += s->images[k][i];
        f += s->t[k] + 0.1 * m / (double)n + 0.01 * s->mask_counts[k];
    }
    return f;
}

static tuna_status standin_loss_grad(void *ctx, const tuna_train_sample *s, float scale, tuna_loss_values *out,
                                     tuna_error *err) {
    (void)err;
    tuna_param_table *t = ctx;
    double f = sample_feature(s);
    double ce = 0, flow = 0;
    for (int i = 0; i < t->count; i++) {
        tuna_param *p = &t->items[i];
        int is_flow = p->name[0] == 'b';
        for (int64_t k = 0; k < p->numel; k++) {
            double target = sin((double)k + 3.0 * f);
            double d = (double)p->weight[k] - target;
            if (is_flow) flow += 0.5 * d * d;
            else ce += 0.5 * d * d;
            if (p->grad) p->grad[k] += scale * (float)(d * (1.0 + f));
        }
    }
    out->ce = ce;
    out->flow = s->image_count ? flow : 0;
    out->loss = out->ce + out->flow;
    out->ce_tokens = 1;
    out->flow_elements = s->image_count ? 1 : 0;
    if (step_sleep_us) usleep((useconds_t)step_sleep_us);
    return TUNA_OK;
}

static void make_params(tuna_param_table *t, int with_ema) {
    memset(t, 0, sizeof *t);
    float init[64];
    tuna_rng rng;
    tuna_rng_seed(&rng, 7);
    tuna_rng_fill_normal(&rng, init, 64, 0, 1);
    int64_t a[2] = {4, 4}, b[1] = {8}, c[1] = {6};
    tuna_param_table_add(t, "a.weight", 2, a, init, NULL);
    tuna_param_table_add(t, "b.bias", 1, b, init + 16, NULL);
    tuna_param_table_add(t, "frozen.weight", 1, c, init + 32, NULL);
    const char *freeze[] = {"frozen.*"};
    tuna_freeze_rules rules = {.freeze = freeze, .freeze_count = 1};
    tuna_param_table_setup_training(t, &rules, with_ema, NULL);
}

/* ---- fixtures ---------------------------------------------------------------- */

static void write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void make_fixtures(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/imgs", dir);
    if (system(cmd) != 0) return;
    for (int k = 0; k < 3; k++) {
        tuna_image img;
        tuna_image_alloc(&img, 32 + 8 * k, 32, NULL);
        for (int i = 0; i < img.width * img.height * 3; i++) img.rgb[i] = (uint8_t)((i * 31 + k * 77) & 255);
        char path[512];
        snprintf(path, sizeof path, "%s/imgs/%d.png", dir, k);
        tuna_image_write_png(path, &img, NULL);
        tuna_image_free(&img);
    }
    write_text("t2i.jsonl", "{\"image\": \"imgs/0.png\", \"caption\": \"a cat\"}\n"
                            "{\"image\": \"imgs/1.png\", \"caption\": \"a dog on a mat\"}\n"
                            "{\"image\": \"imgs/nope.png\", \"caption\": \"missing\"}\n"
                            "{\"image\": \"imgs/2.png\", \"caption\": \"three birds\"}\n");
    write_text("edit.jsonl", "{\"raw_image\": \"imgs/0.png\", \"out_image\": \"imgs/1.png\", \"instruction\": \"zoom\"}\n");
    write_text("mmu.jsonl", "{\"image\": \"imgs/2.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
                            "\"<image>\\nWhat?\"}, {\"from\": \"gpt\", \"value\": \"Birds.\"}]}\n");
    write_text("text.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", "
                             "\"value\": \"Hello!\"}]}\n");
}

static void data_config(tuna_data_config *c) {
    static char paths[4][512];
    const char *files[4] = {"t2i.jsonl", "edit.jsonl", "mmu.jsonl", "text.jsonl"};
    tuna_data_config_default(c);
    for (int i = 0; i < 4; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, files[i]);
        c->streams[i].jsonl_path = paths[i];
    }
    c->streams[TUNA_TASK_TEXT].batch_size = 2;
    c->buckets[0] = (tuna_bucket){32, 32};
    c->bucket_count = 1;
    c->tokenizer = tok;
    c->seed = 42;
    c->quiet = 1;
}

static void trainer_config(tuna_trainer_config *c, const char *out, int64_t max_steps) {
    tuna_trainer_config_default(c);
    c->optim.learning_rate = 1e-2;
    c->optim.warmup_steps = 3;
    c->optim.ema_decay = 0.99;
    c->max_steps = max_steps;
    c->grad_accum = 2;
    c->save_every = 4;
    c->keep_last = 2;
    c->output_dir = out;
    c->quiet = 1;
}

static tuna_status run_training(const char *out, int64_t max_steps, int64_t stop_after, int bf16, tuna_error *err) {
    tuna_param_table params;
    make_params(&params, 1);
    tuna_train_model model = {.ctx = &params, .loss_and_grad = standin_loss_grad, .name = "stand-in"};
    tuna_trainer_config tc;
    trainer_config(&tc, out, max_steps);
    tc.stop_after = stop_after;
    tc.save_bf16 = bf16;
    tuna_data_config dc;
    data_config(&dc);
    tuna_status st = tuna_trainer_run(&tc, &params, &model, &dc, NULL, NULL, err);
    tuna_param_table_free(&params);
    return st;
}

/* metrics.jsonl without the timing fields. */
static char *curve(const char *out) {
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    size_t cap = 1 << 16, len = 0;
    char *res = calloc(cap, 1), line[1024];
    while (fgets(line, sizeof line, f)) {
        char *a = strstr(line, ", \"tokens_per_s\"");
        char *b = strstr(line, ", \"skipped\"");
        if (a && b) memmove(a, b, strlen(b) + 1);
        size_t n = strlen(line);
        if (len + n + 1 > cap) break;
        memcpy(res + len, line, n + 1);
        len += n;
    }
    fclose(f);
    return res;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int count_checkpoints(const char *out) {
    DIR *d = opendir(out);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strncmp(e->d_name, "checkpoint-", 11) == 0;
    if (d) closedir(d);
    return n;
}

static int same_file(const char *a, const char *b) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return system(cmd) == 0;
}

TEST(resume_in_process_is_bitwise) {
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/run_a", dir);
    snprintf(b, sizeof b, "%s/run_b", dir);
    tuna_error err = {0};
    REQUIRE(run_training(a, 12, 0, 0, &err) == TUNA_OK, "%s", err.message);
    /* B: 6 steps (checkpoint at 4, steps 5-6 logged then lost), then resume to 12 */
    REQUIRE(run_training(b, 12, 6, 0, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(run_training(b, 12, 0, 0, &err) == TUNA_OK, "%s", err.message);
    char *ca = curve(a), *cb = curve(b);
    CHECK(count_lines(ca) == 12, "A has %d steps", count_lines(ca));
    CHECK(strcmp(ca, cb) == 0, "curves differ:\n%s\n---\n%s", ca, cb);
    char fa[600], fb[600];
    const char *files[] = {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "trainer_state.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(fa, sizeof fa, "%s/checkpoint-00000012/%s", a, files[i]);
        snprintf(fb, sizeof fb, "%s/checkpoint-00000012/%s", b, files[i]);
        CHECK(same_file(fa, fb), "%s differs", files[i]);
    }
    CHECK(count_checkpoints(a) == 2, "keep_last 2: %d checkpoints", count_checkpoints(a));
    /* the loss goes down */
    double first = 0, last = 0;
    sscanf(strstr(ca, "\"loss\": ") + 8, "%lf", &first);
    sscanf(strstr(strstr(ca, "{\"step\": 12"), "\"loss\": ") + 8, "%lf", &last);
    CHECK(last < first, "loss %g -> %g", first, last);
    /* frozen: unchanged weight, no optimizer state */
    tuna_safetensors opt, model;
    snprintf(fa, sizeof fa, "%s/checkpoint-00000012/optimizer.safetensors", a);
    REQUIRE(tuna_safetensors_open(fa, &opt, &err) == TUNA_OK, "%s", err.message);
    CHECK(!tuna_safetensors_find(&opt, "m.frozen.weight") && tuna_safetensors_find(&opt, "m.a.weight") &&
              tuna_safetensors_find(&opt, "v.b.bias"),
          "optimizer tensors");
    tuna_safetensors_close(&opt);
    snprintf(fa, sizeof fa, "%s/checkpoint-00000012/model.safetensors", a);
    REQUIRE(tuna_safetensors_open(fa, &model, &err) == TUNA_OK, "%s", err.message);
    tuna_param_table init;
    make_params(&init, 0);
    const tuna_tensor *fw = tuna_safetensors_find(&model, "frozen.weight");
    const tuna_tensor *aw = tuna_safetensors_find(&model, "a.weight");
    REQUIRE(fw && aw && fw->dtype == TUNA_F32, "weights");
    CHECK(memcmp(fw->data, init.items[2].weight, 6 * sizeof(float)) == 0, "frozen weight moved");
    CHECK(memcmp(aw->data, init.items[0].weight, 16 * sizeof(float)) != 0, "trained weight did not move");
    tuna_param_table_free(&init);
    tuna_safetensors_close(&model);
    free(ca);
    free(cb);
}

TEST(bf16_weights_resume_bitwise) {
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/bf_a", dir);
    snprintf(b, sizeof b, "%s/bf_b", dir);
    tuna_error err = {0};
    REQUIRE(run_training(a, 10, 0, 1, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(run_training(b, 10, 5, 1, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(run_training(b, 10, 0, 1, &err) == TUNA_OK, "%s", err.message);
    char *ca = curve(a), *cb = curve(b);
    CHECK(strcmp(ca, cb) == 0, "bf16 curves differ");
    char fa[600];
    snprintf(fa, sizeof fa, "%s/checkpoint-00000010/model.safetensors", a);
    tuna_safetensors st;
    REQUIRE(tuna_safetensors_open(fa, &st, &err) == TUNA_OK, "%s", err.message);
    const tuna_tensor *w = tuna_safetensors_find(&st, "a.weight");
    CHECK(w && w->dtype == TUNA_BF16, "bf16 weights");
    tuna_safetensors_close(&st);
    free(ca);
    free(cb);
}

/* ---- SIGKILL ------------------------------------------------------------------- */

static int child_main(const char *out) {
    step_sleep_us = 3000; /* slow enough to be killed mid-run */
    tuna_error err = {0};
    if (run_training(out, 30, 0, 0, &err) != TUNA_OK) {
        fprintf(stderr, "child: %s\n", err.message);
        return 1;
    }
    return 0;
}

static pid_t spawn(const char *out) {
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_trainer", "--child", out, dir, (char *)NULL);
        _exit(127);
    }
    return pid;
}

TEST(sigkill_at_random_moments_then_resume) {
    char ref[400], killed[400];
    snprintf(ref, sizeof ref, "%s/kill_ref", dir);
    snprintf(killed, sizeof killed, "%s/kill_run", dir);
    int status = 0;
    pid_t pid = spawn(ref);
    REQUIRE(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "reference child failed");
    tuna_rng rng;
    tuna_rng_seed(&rng, (uint64_t)time(NULL));
    int kills = 0, n;
    char progress[256] = "";
    size_t used = 0;
    for (int round = 0; round < 8; round++) {
        pid = spawn(killed);
        REQUIRE(pid > 0, "fork");
        /* wait until this child trains past the checkpoint it resumes from,
         * then kill it 0-40 ms later (a step takes ~7 ms: 2 micro-batches x 3 ms) */
        int64_t resumed = tuna_train_checkpoint_latest(killed, NULL, 0);
        char *before = curve(killed);
        for (int w = 0; w < 5000; w++) {
            char *c = curve(killed);
            int moved = count_lines(c) > resumed && strcmp(c, before) != 0;
            free(c);
            if (moved || waitpid(pid, &status, WNOHANG) == pid) break;
            usleep(500);
        }
        free(before);
        usleep((useconds_t)tuna_rng_below(&rng, 60000));
        int done = waitpid(pid, &status, WNOHANG) == pid;
        if (!done) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            kills += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
            char *c = curve(killed);
            n = snprintf(progress + used, sizeof progress - used, " %d", count_lines(c));
            if (n > 0 && (size_t)n < sizeof progress - used) used += (size_t)n;
            free(c);
        } else {
            break;
        }
    }
    pid = spawn(killed); /* finish */
    REQUIRE(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "final child failed");
    char *ca = curve(ref), *cb = curve(killed);
    printf("  %d SIGKILLs (steps logged when killed:%s), %d steps in the final curve\n", kills, progress,
           count_lines(cb));
    CHECK(kills >= 1, "no kill happened");
    CHECK(count_lines(ca) == 30, "ref has %d steps", count_lines(ca));
    CHECK(strcmp(ca, cb) == 0, "curve after kills differs");
    char fa[600], fb[600];
    snprintf(fa, sizeof fa, "%s/checkpoint-00000030/model.safetensors", ref);
    snprintf(fb, sizeof fb, "%s/checkpoint-00000030/model.safetensors", killed);
    CHECK(same_file(fa, fb), "final weights differ");
    snprintf(fa, sizeof fa, "%s/checkpoint-00000030/ema.safetensors", ref);
    snprintf(fb, sizeof fb, "%s/checkpoint-00000030/ema.safetensors", killed);
    CHECK(same_file(fa, fb), "final EMA differs");
    free(ca);
    free(cb);
}

TEST(binding_a_table_without_the_model_fails_cleanly) {
    tuna_param_table t;
    make_params(&t, 0);
    tuna_train_model m;
    tuna_error err = {0};
    tuna_config cfg;
    tuna_config_official_7b(&cfg);
    tuna_status st = tuna_train_model_bind(&cfg, &t, NULL, &m, &err);
    CHECK(st != TUNA_OK && m.loss_and_grad == NULL && strstr(err.message, "tensor"), "message: %s", err.message);
    tuna_param_table_free(&t);
}

static int load_tokenizer(void) {
    char path[4096];
    tuna_error err = {0};
    const char *p = tuna_tokenizer_default_path(path, sizeof path);
    if (!p || tuna_tokenizer_load(p, &tok, &err) != TUNA_OK) {
        fprintf(stderr, "cannot load the tokenizer: %s\n", err.message);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--child")) {
        snprintf(dir, sizeof dir, "%s", argv[3]);
        if (!load_tokenizer()) return 1;
        int rc = child_main(argv[2]);
        tuna_tokenizer_free(tok);
        return rc;
    }
    if (!load_tokenizer()) return 1;
    snprintf(dir, sizeof dir, "/tmp/tuna_test_trainer_%d", (int)getpid());
    make_fixtures();
    RUN(resume_in_process_is_bitwise);
    RUN(bf16_weights_resume_bitwise);
    RUN(sigkill_at_random_moments_then_resume);
    RUN(binding_a_table_without_the_model_fails_cleanly);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    tuna_tokenizer_free(tok);
    return test_summary();
}
