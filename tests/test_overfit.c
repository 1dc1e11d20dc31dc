/* Overfitting, end to end through the real trainer: a small Tuna-2 trained
 * from scratch for 300 steps on 4 fixed images (text-to-image) and the 4
 * questions about them (understanding) drives both losses near zero, then
 * generates each training image from its caption (PSNR > 25 dB) and answers
 * each question. */
#include "test.h"

#include "core/rng.h"
#include "infer/generate.h"
#include "infer/metrics.h"
#include "infer/prompts.h"
#include "infer/sampler.h"
#include "infer/understand.h"
#include "model/config_json.h"
#include "io/image.h"
#include "train/init.h"
#include "train/train_options.h"
#include "train/trainer.h"

#include <unistd.h>

#define FIXTURE "tests/fixtures/overfit/"
#define SIZE 16
#define STEPS 300

static char dir[256];
static const char *colours[4] = {"red", "green", "blue", "yellow"};
static const char *captions[4] = {"a red square on the left", "a green stripe at the top", "a blue cross",
                                  "a yellow ring"};

static void set_pixel(tuna_image *img, int y, int x, int r, int g, int b) {
    uint8_t *p = img->rgb + ((size_t)y * SIZE + x) * 3;
    p[0] = (uint8_t)r, p[1] = (uint8_t)g, p[2] = (uint8_t)b;
}

/* Four 16x16 pictures: a red half, a green top stripe, a blue cross, a yellow ring. */
static void draw(int k, tuna_image *img) {
    tuna_image_alloc(img, SIZE, SIZE, NULL);
    for (int y = 0; y < SIZE; y++)
        for (int x = 0; x < SIZE; x++) {
            double r = hypot(y - 7.5, x - 7.5);
            if (k == 0) set_pixel(img, y, x, x < 8 ? 220 : 0, x < 8 ? 30 : 0, x < 8 ? 30 : 0);
            if (k == 1) y < 5 ? set_pixel(img, y, x, 30, 200, 40) : set_pixel(img, y, x, 20, 20, 20);
            if (k == 2) (y >= 6 && y < 10) || (x >= 6 && x < 10) ? set_pixel(img, y, x, 30, 60, 220)
                                                                 : set_pixel(img, y, x, 240, 240, 240);
            if (k == 3) r > 3 && r < 6 ? set_pixel(img, y, x, 230, 220, 40) : set_pixel(img, y, x, 10, 10, 10);
        }
}

static int write_dataset(void) {
    char path[512];
    snprintf(path, sizeof path, "mkdir -p %s/imgs", dir);
    if (system(path) != 0) return 1;
    snprintf(path, sizeof path, "%s/t2i.jsonl", dir);
    FILE *t2i = fopen(path, "w");
    snprintf(path, sizeof path, "%s/mmu.jsonl", dir);
    FILE *mmu = fopen(path, "w");
    if (!t2i || !mmu) return 1;
    for (int k = 0; k < 4; k++) {
        tuna_image img;
        draw(k, &img);
        snprintf(path, sizeof path, "%s/imgs/%s.png", dir, colours[k]);
        tuna_image_write_png(path, &img, NULL);
        tuna_image_free(&img);
        fprintf(t2i, "{\"image\": \"imgs/%s.png\", \"caption\": \"%s\"}\n", colours[k], captions[k]);
        fprintf(mmu,
                "{\"image\": \"imgs/%s.png\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat "
                "colour is it?\"}, {\"from\": \"gpt\", \"value\": \"%s\"}]}\n",
                colours[k], colours[k]);
    }
    fclose(t2i);
    fclose(mmu);
    return 0;
}

static tuna_status train(const tuna_tokenizer *tok, tuna_error *err) {
    char model_dir[400], out[400], text[4096];
    snprintf(model_dir, sizeof model_dir, "%s/init", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    tuna_config config;
    TUNA_TRY(tuna_config_load(FIXTURE "config.json", &config, err));
    TUNA_TRY(tuna_init_checkpoint(&config, 1, model_dir, err));
    snprintf(text, sizeof text,
             "{\"model\": \"%s\", \"output_dir\": \"%s\", \"learning_rate\": 4e-3, \"warmup_steps\": 20, "
             "\"lr_schedule\": \"cosine\", \"min_lr\": 1e-5, \"max_steps\": %d, \"save_every\": %d, "
             "\"gradient_accumulation_steps\": 2, \"ema_decay\": 0, \"buckets\": \"%dx%d\", \"seed\": 0, "
             "\"t2i_jsonl\": \"%s/t2i.jsonl\", \"t2i_weight\": 3, \"t2i_batch_size\": 4, "
             "\"mmu_jsonl\": \"%s/mmu.jsonl\", \"mmu_weight\": 1, \"mmu_batch_size\": 4, "
             "\"und_layout\": \"inference\", \"mixed_precision\": null}",
             model_dir, out, STEPS, STEPS, SIZE, SIZE, dir, dir);
    tuna_train_options o;
    tuna_train_options_default(&o);
    tuna_status st = tuna_train_options_load_json(&o, text, strlen(text), err);
    o.trainer.quiet = 1;
    tuna_checkpoint *ck = NULL;
    tuna_param_table params = {0};
    tuna_train_model model = {0};
    tuna_threads pool;
    tuna_threads_init(&pool, 0);
    if (st == TUNA_OK) st = tuna_checkpoint_open(model_dir, &ck, err);
    if (st == TUNA_OK) st = tuna_param_table_from_checkpoint(&params, ck, err);
    tuna_freeze_rules rules = {0};
    if (st == TUNA_OK) st = tuna_param_table_setup_training(&params, &rules, 0, err);
    if (st == TUNA_OK) st = tuna_train_model_bind(&config, &params, &pool, &model, err);
    o.data.tokenizer = tok;
    o.data.tokens = config.tokens;
    o.data.patch_size = config.patch_size;
    o.data.quiet = 1;
    tuna_trainer_result r = {0};
    if (st == TUNA_OK) st = tuna_trainer_run(&o.trainer, &params, &model, &o.data, &config, &r, err);
    if (model.destroy) model.destroy(model.ctx);
    if (ck) tuna_checkpoint_close(ck);
    tuna_param_table_free(&params);
    tuna_train_options_free(&o);
    return st;
}

/* Mean of "ce" and "flow" over the last `window` steps of metrics.jsonl. */
static void tail_losses(double *ce, double *flow, int window) {
    char path[512], line[4096];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    double ce_sum = 0, flow_sum = 0;
    int ce_n = 0, flow_n = 0, step = 0;
    while (f && fgets(line, sizeof line, f)) {
        step++;
        if (step <= STEPS - window) continue;
        char *p = strstr(line, "\"ce\": ");
        if (p && p[6] != 'n') ce_sum += atof(p + 6), ce_n++;
        p = strstr(line, "\"flow\": ");
        if (p && p[8] != 'n') flow_sum += atof(p + 8), flow_n++;
    }
    if (f) fclose(f);
    *ce = ce_n ? ce_sum / ce_n : INFINITY;
    *flow = flow_n ? flow_sum / flow_n : INFINITY;
}

static double generate_psnr(const tuna_model *m, const tuna_tokenizer *tok, int k, const tuna_threads *pool) {
    tuna_ids ids = {0};
    tuna_error err = {0};
    float z[3 * SIZE * SIZE], x[3 * SIZE * SIZE];
    double psnr = 0;
    if (tuna_t2i_ids(tok, &m->config, captions[k], SIZE, SIZE, 0, &ids, &err) != TUNA_OK) return 0;
    tuna_rng rng;
    tuna_rng_seed(&rng, 100 + (uint64_t)k);
    tuna_euler_initial_noise(&rng, z, 3 * SIZE * SIZE, (float)m->config.noise_scale);
    tuna_generate_params p = {.cond_ids = ids.data, .cond_length = (int)ids.len, .height = SIZE, .width = SIZE,
                              .steps = 50, .cfg_scale = 1.0f};
    tuna_image generated = {0}, truth = {0};
    if (tuna_generate(m, &p, z, pool, &err) == TUNA_OK && tuna_image_from_tensor(z, SIZE, SIZE, &generated, &err) == TUNA_OK) {
        draw(k, &truth);
        tuna_image_to_tensor(&truth, x); /* truth through the same [-1,1] round trip */
        tuna_image_free(&truth);
        tuna_image_from_tensor(x, SIZE, SIZE, &truth, &err);
        tuna_psnr(&generated, &truth, &psnr, &err);
    }
    tuna_image_free(&generated);
    tuna_image_free(&truth);
    tuna_ids_free(&ids);
    return psnr;
}

static int answers_correctly(const tuna_model *m, const tuna_tokenizer *tok, int k, const tuna_threads *pool) {
    tuna_chat_session s;
    tuna_error err = {0};
    if (tuna_chat_session_init(&s, m, tok, 512, pool, &err) != TUNA_OK) return 0;
    tuna_image img;
    float chw[3 * SIZE * SIZE];
    draw(k, &img);
    tuna_image_to_tensor(&img, chw);
    tuna_image_free(&img);
    char *reply = NULL;
    tuna_chat_message msg = {TUNA_ROLE_USER, "<image>\nWhat colour is it?"};
    tuna_reply_params p = {.max_tokens = 8};
    int ok = tuna_chat_session_add_image(&s, chw, SIZE, SIZE, &err) == TUNA_OK &&
             tuna_chat_session_reply(&s, &msg, 1, &p, NULL, &reply, NULL, &err) == TUNA_OK && reply &&
             strcmp(reply, colours[k]) == 0;
    if (!ok) fprintf(stderr, "  answer for %s: '%s' %s\n", colours[k], reply ? reply : "", err.message);
    free(reply);
    tuna_chat_session_free(&s);
    return ok;
}

TEST(tiny_model_overfits_then_generates_and_answers) {
    tuna_tokenizer *tok = NULL;
    tuna_error err = {0};
    REQUIRE(write_dataset() == 0, "cannot write the dataset under %s", dir);
    REQUIRE(tuna_tokenizer_load(FIXTURE "tokenizer.json", &tok, &err) == TUNA_OK, "%s", err.message);
    tuna_status st = train(tok, &err);
    CHECK(st == TUNA_OK, "training: %s", err.message);
    double ce, flow;
    tail_losses(&ce, &flow, 40);
    CHECK(ce < 0.05, "CE over the last 40 steps %.4f", ce);
    CHECK(flow < 0.05, "flow loss over the last 40 steps %.4f", flow);
    char final[512];
    snprintf(final, sizeof final, "%s/run/checkpoint-%08d", dir, STEPS);
    tuna_model m;
    if (st == TUNA_OK && tuna_model_load(final, &m, &err) == TUNA_OK) {
        tuna_threads pool;
        tuna_threads_init(&pool, 0);
        for (int k = 0; k < 4; k++) {
            double psnr = generate_psnr(&m, tok, k, &pool);
            printf("     %s: generated from its caption at %.2f dB\n", colours[k], psnr);
            CHECK(psnr > 25.0, "%s: PSNR %.2f dB", colours[k], psnr);
            CHECK(answers_correctly(&m, tok, k, &pool), "%s: wrong answer", colours[k]);
        }
        tuna_model_free(&m);
    } else {
        CHECK(0, "cannot load the trained checkpoint %s: %s", final, err.message);
    }
    tuna_tokenizer_free(tok);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/tuna_overfit_%d", (int)getpid());
    RUN(tiny_model_overfits_then_generates_and_answers);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (!getenv("TUNA_KEEP") && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return test_summary();
}
