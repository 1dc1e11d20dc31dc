/* `tuna demo`: what the bundled model does, in a few seconds: a PNG grid of
 * generations for a handful of prompts, and its answers about a few images. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/rng.h"
#include "infer/generate.h"
#include "infer/prompts.h"
#include "infer/sampler.h"
#include "infer/understand.h"
#include "io/image.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char *const demo_prompts[] = {
    "a red circle", "a blue square left of a yellow star", "three green triangles", "a purple coat",
    "a white circle above a black square", "an orange star", "a pair of green trousers", "two yellow circles",
};
#define DEMO_PROMPTS (int)(sizeof demo_prompts / sizeof demo_prompts[0])

typedef struct {
    const char *image, *question;
} demo_question;

static const demo_question demo_questions[] = {
    {"demo/shapes.png", "What colour is the star?"}, {"demo/shapes.png", "Where is the purple star relative to the orange circle?"},
    {"demo/count.png", "How many squares are there?"}, {"demo/fashion.png", "What is this?"},
    {"demo/text.png", "What does the text say?"},
};
#define DEMO_QUESTIONS (int)(sizeof demo_questions / sizeof demo_questions[0])

typedef struct {
    const char *model, *tokenizer, *output, *negative;
    int steps, height, width, threads, quiet;
    float cfg;
    unsigned long long seed;
} demo_options;

static void usage(FILE *out) {
    fprintf(out, "usage: tuna demo [-m MODEL] [-t TOKENIZER] [-o demo.png] [--steps 30] [--cfg 3] [--seed 0]\n"
                 "                [--negative TEXT] [--threads N] [-q]\n\n"
                 "Generates %d images from fixed prompts into one PNG grid and prints the model's answers\n"
                 "to questions about the demo images beside the model (MODEL/demo/). Without -m it uses\n"
                 "the bundled model. --seed N fixes every random choice; the negative prompt defaults to\n"
                 "the model's recorded one (as in generate and eval).\n",
            DEMO_PROMPTS);
}

static int parse(int argc, char **argv, demo_options *o) {
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 't'},
        {"output", required_argument, 0, 'o'}, {"steps", required_argument, 0, 's'},
        {"cfg", required_argument, 0, 'c'},    {"seed", required_argument, 0, 'r'},
        {"negative", required_argument, 0, 'N'}, {"threads", required_argument, 0, 'T'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:o:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'o': o->output = optarg; break;
        case 's': if (cli_int("demo", "--steps", optarg, 1, 1000, &o->steps)) return 2; break;
        case 'c': if (cli_float("demo", "--cfg", optarg, 0, 100, &o->cfg)) return 2; break;
        case 'r': if (cli_seed("demo", "--seed", optarg, &o->seed)) return 2; break;
        case 'N': o->negative = optarg; break;
        case 'T': if (cli_int("demo", "--threads", optarg, 1, 4096, &o->threads)) return 2; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "tuna demo: see tuna demo --help\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tuna demo: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return -1;
}

static int generate_one(const tuna_model *m, const tuna_tokenizer *tok, const demo_options *o, int k,
                        const tuna_threads *pool, tuna_image *out) {
    int h = o->height, w = o->width;
    tuna_ids cond = {0}, uncond = {0};
    tuna_error err = {0};
    float *z = malloc(sizeof(float) * 3 * (size_t)h * w);
    tuna_status s = z ? TUNA_OK : tuna_fail(&err, TUNA_ERR_NOMEM, "out of memory");
    if (s == TUNA_OK) s = tuna_t2i_ids(tok, &m->config, demo_prompts[k], h, w, 0, &cond, &err);
    if (s == TUNA_OK) s = tuna_t2i_ids(tok, &m->config, o->negative, h, w, 0, &uncond, &err);
    if (s == TUNA_OK) {
        tuna_rng rng;
        tuna_rng_seed(&rng, o->seed + (unsigned long long)k);
        tuna_euler_initial_noise(&rng, z, 3L * h * w, (float)m->config.noise_scale);
        tuna_generate_params p = {.cond_ids = cond.data, .cond_length = (int)cond.len,
                                  .uncond_ids = o->cfg > 0 ? uncond.data : NULL, .uncond_length = (int)uncond.len,
                                  .height = h, .width = w, .steps = o->steps, .cfg_scale = o->cfg};
        s = tuna_generate(m, &p, z, pool, &err);
    }
    if (s == TUNA_OK) s = tuna_image_from_tensor(z, h, w, out, &err);
    if (s != TUNA_OK) fprintf(stderr, "tuna demo: %s\n", err.message);
    free(z);
    tuna_ids_free(&cond);
    tuna_ids_free(&uncond);
    return s != TUNA_OK;
}

static int generate_grid(const tuna_model *m, const tuna_tokenizer *tok, const demo_options *o,
                         const tuna_threads *pool) {
    tuna_image images[DEMO_PROMPTS], grid = {0};
    memset(images, 0, sizeof images);
    int rc = 0;
    for (int k = 0; k < DEMO_PROMPTS && !rc; k++) {
        rc = generate_one(m, tok, o, k, pool, &images[k]);
        if (!rc) printf("image %d: %s\n", k + 1, demo_prompts[k]);
    }
    tuna_error err = {0};
    if (!rc && (tuna_image_grid(images, DEMO_PROMPTS, 4, 2, 128, &grid, &err) != TUNA_OK ||
                tuna_image_write_png(o->output, &grid, &err) != TUNA_OK)) {
        fprintf(stderr, "tuna demo: %s\n", err.message);
        rc = 1;
    }
    if (!rc) printf("wrote %s (%dx%d grid, row by row)\n", o->output, grid.width, grid.height);
    for (int k = 0; k < DEMO_PROMPTS; k++) tuna_image_free(&images[k]);
    tuna_image_free(&grid);
    return rc;
}

static int answer_one(const tuna_model *m, const tuna_tokenizer *tok, const char *dir, const demo_question *q,
                      const tuna_threads *pool) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, q->image);
    float *chw = NULL;
    int h, w;
    if (cli_load_image(path, &m->config, NULL, &chw, &h, &w, "demo")) return 1;
    tuna_chat_session s;
    tuna_error err = {0};
    char content[512], *reply = NULL;
    snprintf(content, sizeof content, "<image>\n%s", q->question);
    tuna_chat_message msg = {TUNA_ROLE_USER, content};
    tuna_reply_params p = {.max_tokens = 16};
    tuna_status st = tuna_chat_session_init(&s, m, tok, 1024, pool, &err);
    if (st == TUNA_OK) st = tuna_chat_session_add_image(&s, chw, h, w, &err);
    if (st == TUNA_OK) st = tuna_chat_session_reply(&s, &msg, 1, &p, NULL, &reply, NULL, &err);
    if (st == TUNA_OK) printf("%-16s %-44s -> %s\n", q->image, q->question, reply);
    else fprintf(stderr, "tuna demo: %s\n", err.message);
    tuna_chat_session_free(&s);
    free(reply);
    free(chw);
    return st != TUNA_OK;
}

int cli_cmd_demo(int argc, char **argv) {
    demo_options o = {.output = "demo.png", .steps = 30, .cfg = 3.0f};
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    if (strcmp(o.output, "-") == 0) {
        fprintf(stderr, "tuna demo: -o - is not possible: the answers go to standard output\n");
        return 2;
    }
    if (cli_check_output("demo", o.output)) return 1;
    double started = cli_now();
    tuna_model model;
    tuna_tokenizer *tok = NULL;
    if (cli_load_model(o.model, o.tokenizer, &model, &tok, "demo")) return 1;
    char buf[4096];
    const char *dir = tuna_model_dir(o.model, buf, sizeof buf);
    tuna_threads pool;
    tuna_threads_init(&pool, o.threads);
    tuna_default_generation_size(&model.config, &o.height, &o.width);
    if (!o.negative) o.negative = tuna_default_negative(&model.config, 0);
    rc = generate_grid(&model, tok, &o, &pool);
    for (int k = 0; k < DEMO_QUESTIONS && !rc; k++) rc = answer_one(&model, tok, dir, &demo_questions[k], &pool);
    if (!rc && !o.quiet) fprintf(stderr, "demo: %.1f s\n", cli_now() - started);
    tuna_tokenizer_free(tok);
    tuna_model_free(&model);
    return rc;
}
