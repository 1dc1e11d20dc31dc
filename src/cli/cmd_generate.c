/* `tuna generate`, `tuna edit`, `tuna reconstruct`: images from the flow head
 * with the JiT Euler sampler and classifier-free guidance (SPEC section 6). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "infer/generate.h"
#include "infer/metrics.h"
#include "infer/prompts.h"
#include "infer/sampler.h"
#include "io/image.h"
#include "io/safetensors.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

typedef enum { MODE_GENERATE, MODE_EDIT, MODE_RECONSTRUCT } generate_mode;

typedef struct {
    generate_mode mode;
    const char *command;
    const char *model, *tokenizer, *prompt, *negative, *output, *image, *init_noise, *dtype;
    int height, width, steps, count, threads, no_guidance;
    float cfg;
    unsigned long long seed;
} generate_options;

static void usage(FILE *out, const generate_options *o) {
    if (o->mode == MODE_GENERATE)
        fprintf(out, "usage: tuna generate [-m MODEL] --prompt TEXT -o out.png [options]\n\n"
                     "Text to image: [BOS] caption [BOI][t][patches][EOI][EOS], Euler sampler with guidance.\n");
    else if (o->mode == MODE_EDIT)
        fprintf(out, "usage: tuna edit [-m MODEL] --image IMG --prompt TEXT -o out.png [options]\n\n"
                     "Image editing: the clean source at t=1, then the instruction, then the generated image.\n");
    else
        fprintf(out, "usage: tuna reconstruct [-m MODEL] --image IMG -o out.png [options]\n\n"
                     "The reference's reconstruction mode: empty prompt, the clean image's patch embeddings\n"
                     "as conditioning, the sampler started from noise_scale * image. Prints PSNR and SSIM.\n");
    fprintf(out,
            "\n  -m, --model DIR       model directory (default: $TUNA_MODEL or the bundled model)\n"
            "  -t, --tokenizer FILE  tokenizer.json (default: the model's, else the bundled one)\n"
            "  -p, --prompt TEXT     caption / edit instruction\n"
            "      --negative TEXT   negative prompt of the unconditional branch (default: the reference's)\n"
            "  -o, --output FILE     PNG to write (with -n K: FILE-0.png ... FILE-(K-1).png)\n"
            "  -i, --image FILE      source image (edit, reconstruct)\n"
            "      --size HxW        image size (default: 512x512 for patch 16, else 8 patches a side;\n"
            "                        edit/reconstruct: the source's nearest bucket)\n"
            "      --steps N         Euler steps (default 50)\n"
            "      --cfg S           guidance scale (default %s); 0 turns guidance off\n"
            "      --seed N          seed of the initial noise (default 0); image k uses seed + k.\n"
            "                        Every random choice comes from this seed: runs are reproducible.\n"
            "  -n N                  number of images (default 1)\n"
            "      --init-noise FILE F32 safetensors holding the initial z [1,3,H,W] or [3,H,W]\n"
            "                        (first tensor), to compare with the reference bit for bit\n"
            "      --dtype f32|bf16  precision of the weight matrices the matmuls read (default: the\n"
            "                        checkpoint's): f32 widens bf16 files (exact, 2x memory), bf16\n"
            "                        rounds f32 files (half the memory); accumulation is f32\n"
            "      --threads N       threads (default: TUNA_THREADS or all cores)\n",
            o->mode == MODE_EDIT ? "2" : "3");
}

static int parse_options(int argc, char **argv, generate_options *o) {
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},   {"tokenizer", required_argument, 0, 't'},
        {"prompt", required_argument, 0, 'p'},  {"negative", required_argument, 0, 'N'},
        {"output", required_argument, 0, 'o'},  {"image", required_argument, 0, 'i'},
        {"size", required_argument, 0, 'S'},    {"steps", required_argument, 0, 's'},
        {"cfg", required_argument, 0, 'c'},     {"seed", required_argument, 0, 'r'},
        {"init-noise", required_argument, 0, 'z'}, {"dtype", required_argument, 0, 'd'},
        {"threads", required_argument, 0, 'T'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:p:o:i:n:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'N': o->negative = optarg; break;
        case 'o': o->output = optarg; break;
        case 'i': o->image = optarg; break;
        case 'z': o->init_noise = optarg; break;
        case 'S':
            if (cli_parse_size(optarg, &o->height, &o->width)) {
                fprintf(stderr, "tuna %s: --size wants HxW, e.g. 512x512\n", o->command);
                return 2;
            }
            break;
        case 's': o->steps = atoi(optarg); break;
        case 'c': o->cfg = strtof(optarg, NULL); break;
        case 'r': o->seed = strtoull(optarg, NULL, 10); break;
        case 'n': o->count = atoi(optarg); break;
        case 'T': o->threads = atoi(optarg); break;
        case 'd':
            if (strcmp(optarg, "f32") != 0 && strcmp(optarg, "bf16") != 0) {
                fprintf(stderr, "tuna %s: --dtype %s: use f32 or bf16\n", o->command, optarg);
                return 2;
            }
            o->dtype = optarg;
            break;
        case 'h': usage(stdout, o); return 0;
        default: usage(stderr, o); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tuna %s: unexpected argument '%s'\n", o->command, argv[optind]);
        return 2;
    }
    const char *missing = !o->output ? "-o" : (o->mode != MODE_RECONSTRUCT && !o->prompt) ? "--prompt"
                                            : (o->mode != MODE_GENERATE && !o->image)       ? "--image"
                                                                                            : NULL;
    if (missing) {
        fprintf(stderr, "tuna %s: %s is required\n", o->command, missing);
        usage(stderr, o);
        return 2;
    }
    if (o->steps < 1 || o->steps > 10000 || o->count < 1 || o->count > 1000) {
        fprintf(stderr, "tuna %s: --steps must be in [1, 10000] and -n in [1, 1000]\n", o->command);
        return 2;
    }
    return -1;
}

/* --init-noise: the first tensor of an F32 safetensors file, [1,3,H,W] or [3,H,W]. */
static int load_init_noise(const generate_options *o, float *z, int height, int width) {
    tuna_safetensors st;
    tuna_error err = {0};
    if (tuna_safetensors_open(o->init_noise, &st, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", o->command, err.message);
        return 1;
    }
    int rc = 0;
    const tuna_tensor *t = st.count ? &st.entries[0].tensor : NULL;
    if (!t || t->dtype != TUNA_F32 || tuna_tensor_numel(t) != 3LL * height * width) {
        fprintf(stderr, "tuna %s: %s must hold one F32 tensor of 3x%dx%d values\n", o->command, o->init_noise, height,
                width);
        rc = 1;
    } else {
        memcpy(z, t->data, sizeof(float) * 3 * (size_t)height * width);
    }
    tuna_safetensors_close(&st);
    return rc;
}

static void print_quality(const float *result, const float *reference, int height, int width) {
    tuna_image a = {0}, b = {0};
    tuna_error err = {0};
    double psnr = 0, ssim = 0;
    if (tuna_image_from_tensor(result, height, width, &a, &err) == TUNA_OK &&
        tuna_image_from_tensor(reference, height, width, &b, &err) == TUNA_OK &&
        tuna_psnr(&a, &b, &psnr, &err) == TUNA_OK && tuna_ssim(&a, &b, &ssim, &err) == TUNA_OK)
        printf("PSNR %.2f dB  SSIM %.4f\n", psnr, ssim);
    else
        fprintf(stderr, "tuna reconstruct: %s\n", err.message);
    tuna_image_free(&a);
    tuna_image_free(&b);
}

typedef struct {
    tuna_ids cond, uncond;
    float *source;
    int source_h, source_w;
} generate_inputs;

static int build_inputs(const generate_options *o, const tuna_model *m, const tuna_tokenizer *tok, int height,
                        int width, generate_inputs *in) {
    tuna_error err = {0};
    const tuna_config *c = &m->config;
    tuna_status s = TUNA_OK;
    const char *negative = o->negative;
    if (o->mode == MODE_EDIT) {
        if (!negative) negative = tuna_default_negative_edit;
        s = tuna_edit_ids(tok, c, o->prompt, in->source_h, in->source_w, height, width, &in->cond, &err);
        if (s == TUNA_OK && !o->no_guidance)
            s = tuna_edit_ids(tok, c, negative, in->source_h, in->source_w, height, width, &in->uncond, &err);
    } else {
        if (!negative) negative = tuna_default_negative_t2i;
        int pads = o->mode == MODE_RECONSTRUCT ? (height / c->patch_size) * (width / c->patch_size) : 0;
        const char *prompt = o->mode == MODE_RECONSTRUCT ? "" : o->prompt;
        s = tuna_t2i_ids(tok, c, prompt, height, width, pads, &in->cond, &err);
        if (s == TUNA_OK && !o->no_guidance) s = tuna_t2i_ids(tok, c, negative, height, width, pads, &in->uncond, &err);
    }
    if (s != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", o->command, err.message);
        return 1;
    }
    return 0;
}

static int run_one(const generate_options *o, const tuna_model *m, const tuna_threads *pool, generate_inputs *in,
                   int height, int width, int k, float *z) {
    const tuna_config *c = &m->config;
    size_t n = 3 * (size_t)height * width;
    if (o->init_noise) {
        if (load_init_noise(o, z, height, width)) return 1;
    } else if (o->mode == MODE_RECONSTRUCT) {
        for (size_t i = 0; i < n; i++) z[i] = (float)c->noise_scale * in->source[i]; /* reca: z = s * image */
    } else {
        tuna_rng rng;
        tuna_rng_seed(&rng, o->seed + (unsigned long long)k);
        tuna_euler_initial_noise(&rng, z, (long)n, (float)c->noise_scale);
    }
    cli_progress progress = {.label = o->command};
    tuna_generate_params p = {
        .cond_ids = in->cond.data, .cond_length = (int)in->cond.len,
        .uncond_ids = o->no_guidance ? NULL : in->uncond.data, .uncond_length = (int)in->uncond.len,
        .source = o->mode == MODE_EDIT ? in->source : NULL, .source_height = in->source_h,
        .source_width = in->source_w, .height = height, .width = width, .steps = o->steps, .cfg_scale = o->cfg,
        .progress = cli_progress_step, .progress_ctx = &progress,
    };
    if (o->mode == MODE_RECONSTRUCT) {
        p.clean_image = in->source;
        p.clean_offset = 1; /* right after BOS: the empty prompt has no tokens */
    }
    tuna_error err = {0};
    if (tuna_generate(m, &p, z, pool, &err) != TUNA_OK) {
        fprintf(stderr, "\ntuna %s: %s\n", o->command, err.message);
        return 1;
    }
    char path[4096];
    cli_indexed_path(o->output, k, o->count, path, sizeof path);
    if (cli_save_image(path, z, height, width, o->command)) return 1;
    fprintf(stderr, "wrote %s\n", path);
    if (o->mode == MODE_RECONSTRUCT) print_quality(z, in->source, height, width);
    return 0;
}

static int run(generate_options *o) {
    tuna_model model;
    tuna_tokenizer *tok = NULL;
    if (cli_load_model(o->model, o->tokenizer, &model, &tok, o->command)) return 1;
    if (cli_apply_dtype(&model, o->dtype, o->command)) {
        tuna_model_free(&model);
        tuna_tokenizer_free(tok);
        return 1;
    }
    tuna_threads pool;
    tuna_threads_init(&pool, o->threads);
    int p = model.config.patch_size, height = o->height, width = o->width, rc = 0;
    generate_inputs in;
    memset(&in, 0, sizeof in);
    if (o->mode != MODE_GENERATE) {
        rc = cli_load_image(o->image, p, o->height, o->width, &in.source, &in.source_h, &in.source_w, o->command);
        height = in.source_h;
        width = in.source_w;
    } else if (height == 0) {
        height = width = p == 16 ? 512 : 8 * p;
    }
    if (!rc && (height % p || width % p)) {
        fprintf(stderr, "tuna %s: --size %dx%d is not a multiple of the patch size %d\n", o->command, height, width, p);
        rc = 2;
    }
    if (!rc) rc = build_inputs(o, &model, tok, height, width, &in);
    float *z = rc ? NULL : malloc(sizeof(float) * 3 * (size_t)height * width);
    for (int k = 0; !rc && z && k < o->count; k++) rc = run_one(o, &model, &pool, &in, height, width, k, z);
    free(z);
    free(in.source);
    tuna_ids_free(&in.cond);
    tuna_ids_free(&in.uncond);
    tuna_tokenizer_free(tok);
    tuna_model_free(&model);
    return rc;
}

static int generate_main(int argc, char **argv, generate_mode mode, const char *command, float cfg) {
    generate_options o;
    memset(&o, 0, sizeof o);
    o.mode = mode;
    o.command = command;
    o.steps = 50;
    o.count = 1;
    o.cfg = cfg;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    o.no_guidance = o.cfg == 0.0f;
    return run(&o);
}

int cli_cmd_generate(int argc, char **argv) { return generate_main(argc, argv, MODE_GENERATE, "generate", 3.0f); }
int cli_cmd_edit(int argc, char **argv) { return generate_main(argc, argv, MODE_EDIT, "edit", 2.0f); }
int cli_cmd_reconstruct(int argc, char **argv) { return generate_main(argc, argv, MODE_RECONSTRUCT, "reconstruct", 3.0f); }
