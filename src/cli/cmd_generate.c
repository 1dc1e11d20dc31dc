/* `tuna generate`, `tuna edit`, `tuna reconstruct`: images from the flow head
 * with the JiT sampler (Euler, or Heun) and classifier-free guidance (SPEC
 * section 6). Flag vocabulary: docs/cli.md. */
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
    const char *model, *tokenizer, *prompt, *prompt_file, *negative, *output, *image, *init_noise, *dtype;
    tuna_image_request size;
    int steps, count, threads, no_guidance, quiet, heun, strength_set;
    float cfg, strength;
    unsigned long long seed;
} generate_options;

static void usage(FILE *out, const generate_options *o) {
    if (o->mode == MODE_GENERATE)
        fprintf(out, "usage: tuna generate [-m MODEL] -p TEXT | -f FILE  -o out.png [options]\n\n"
                     "Text to image: [BOS] caption [BOI][t][patches][EOI][EOS], JiT sampler with guidance.\n");
    else if (o->mode == MODE_EDIT)
        fprintf(out, "usage: tuna edit [-m MODEL] -i IMG -p TEXT -o out.png [options]\n\n"
                     "Image editing: the clean source at t=1, then the instruction, then the generated image.\n");
    else
        fprintf(out, "usage: tuna reconstruct [-m MODEL] -i IMG -o out.png [options]\n\n"
                     "The reference's reconstruction mode: empty prompt, the clean image's patch embeddings\n"
                     "as conditioning, the sampler started from noise_scale * image. Prints PSNR and SSIM.\n");
    fprintf(out,
            "\n  -m, --model DIR        model directory (default: $TUNA_MODEL or the bundled model)\n"
            "  -t, --tokenizer FILE   tokenizer.json (default: the model's, else the bundled one)\n");
    if (o->mode != MODE_RECONSTRUCT)
        fprintf(out, "  -p, --prompt TEXT      %s\n", o->mode == MODE_EDIT ? "the edit instruction" : "the caption");
    if (o->mode == MODE_GENERATE)
        fprintf(out, "  -f, --prompt-file FILE one caption a line (blank lines skipped): a batch; image k of\n"
                     "                         caption j goes to OUT-j-k.png\n");
    fprintf(out,
            "      --negative TEXT    negative prompt of the unconditional branch (default: the model's\n"
            "                         recorded one, else the reference's)\n"
            "  -o, --output FILE      PNG to write; '-' writes it to standard output (with -n K:\n"
            "                         FILE-0.png ... FILE-(K-1).png)\n");
    if (o->mode != MODE_GENERATE) fprintf(out, "  -i, --image FILE       the source image\n");
    fprintf(out,
            "  -W, --width N, -H, --height N\n"
            "      --size WxH|native  image size (default: the size the model was trained for%s)\n"
            "      --steps N          sampler steps, 1..10000 (default 50)\n"
            "      --sampler NAME     euler (default) or heun (two predictions a step, as the reference's)\n"
            "      --cfg S            guidance scale, 0..100 (default %s); 0 turns guidance off\n",
            o->mode == MODE_GENERATE ? "" : " nearest the\n                         source's aspect ratio; native: the source's own size",
            o->mode == MODE_EDIT ? "2" : "3");
    if (o->mode == MODE_EDIT)
        fprintf(out, "      --strength S       0 < S <= 1 (default 1): start from the source noised to t = 1 - S\n"
                     "                         instead of pure noise (lower keeps more of the source)\n");
    fprintf(out,
            "      --seed N           seed of the initial noise (default 0); image k uses seed + k.\n"
            "                         Every random choice comes from this seed: runs are reproducible.\n"
            "  -n, --count N          number of images, 1..1000 (default 1)\n"
            "      --init-noise FILE  F32 safetensors holding the initial z [1,3,H,W] or [3,H,W]\n"
            "                         (first tensor), to compare with the reference bit for bit\n"
            "      --dtype f32|bf16   precision of the weight matrices the matmuls read (default: the\n"
            "                         checkpoint's)\n"
            "      --threads N        threads (default: TUNA_THREADS or all cores)\n"
            "  -q, --quiet            no progress and no summary on stderr\n"
            "PNGs record the prompt, negative prompt, seed, steps, sampler, guidance, size and model in\n"
            "their text chunks.\n");
}

static int parse_options(int argc, char **argv, generate_options *o) {
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},      {"tokenizer", required_argument, 0, 't'},
        {"prompt", required_argument, 0, 'p'},     {"prompt-file", required_argument, 0, 'f'},
        {"negative", required_argument, 0, 'N'},   {"output", required_argument, 0, 'o'},
        {"image", required_argument, 0, 'i'},      {"size", required_argument, 0, 'S'},
        {"width", required_argument, 0, 'W'},      {"height", required_argument, 0, 'H'},
        {"steps", required_argument, 0, 's'},      {"cfg", required_argument, 0, 'c'},
        {"seed", required_argument, 0, 'r'},       {"count", required_argument, 0, 'n'},
        {"init-noise", required_argument, 0, 'z'}, {"dtype", required_argument, 0, 'd'},
        {"threads", required_argument, 0, 'T'},    {"sampler", required_argument, 0, 'a'},
        {"strength", required_argument, 0, 'g'},   {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    const char *cmd = o->command;
    int c, width = 0, height = 0;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "m:t:p:f:o:i:W:H:n:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'N': o->negative = optarg; break;
        case 'o': o->output = optarg; break;
        case 'i': o->image = optarg; break;
        case 'z': o->init_noise = optarg; break;
        case 'S':
            if (cli_size(cmd, optarg, &o->size.width, &o->size.height, &o->size.native)) return 2;
            break;
        case 'W': if (cli_int(cmd, "--width", optarg, 1, CLI_MAX_SIDE, &width)) return 2; break;
        case 'H': if (cli_int(cmd, "--height", optarg, 1, CLI_MAX_SIDE, &height)) return 2; break;
        case 's': if (cli_int(cmd, "--steps", optarg, 1, 10000, &o->steps)) return 2; break;
        case 'c': if (cli_float(cmd, "--cfg", optarg, 0, 100, &o->cfg)) return 2; break;
        case 'g':
            if (cli_float(cmd, "--strength", optarg, 1e-6, 1, &o->strength)) return 2;
            o->strength_set = 1;
            break;
        case 'r': if (cli_seed(cmd, "--seed", optarg, &o->seed)) return 2; break;
        case 'n': if (cli_int(cmd, "-n", optarg, 1, 1000, &o->count)) return 2; break;
        case 'T': if (cli_int(cmd, "--threads", optarg, 1, 4096, &o->threads)) return 2; break;
        case 'a':
            if (strcmp(optarg, "euler") == 0) o->heun = 0;
            else if (strcmp(optarg, "heun") == 0) o->heun = 1;
            else {
                fprintf(stderr, "tuna %s: --sampler '%s': use euler or heun\n", cmd, optarg);
                return 2;
            }
            break;
        case 'd':
            if (strcmp(optarg, "f32") != 0 && strcmp(optarg, "bf16") != 0) {
                fprintf(stderr, "tuna %s: --dtype '%s': use f32 or bf16\n", cmd, optarg);
                return 2;
            }
            o->dtype = optarg;
            break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout, o); return 0;
        default: fprintf(stderr, "tuna %s: see tuna %s --help\n", cmd, cmd); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tuna %s: unexpected argument '%s' (options take their values with a flag, e.g. -p TEXT)\n",
                cmd, argv[optind]);
        return 2;
    }
    if ((width > 0) != (height > 0)) {
        fprintf(stderr, "tuna %s: give both -W and -H (or --size WxH)\n", cmd);
        return 2;
    }
    if (width > 0) {
        if (o->size.width || o->size.native) {
            fprintf(stderr, "tuna %s: give the size once: --size or -W/-H\n", cmd);
            return 2;
        }
        o->size.width = width;
        o->size.height = height;
    }
    /* every option given must be one this mode uses */
    const char *unused = o->mode == MODE_GENERATE && o->image               ? "-i/--image (generate starts from noise)"
                         : o->mode == MODE_GENERATE && o->size.native        ? "--size native (there is no source image)"
                         : o->mode == MODE_RECONSTRUCT && o->prompt          ? "-p/--prompt (reconstruct uses the empty prompt)"
                         : o->mode != MODE_GENERATE && o->prompt_file        ? "-f/--prompt-file"
                         : o->mode != MODE_EDIT && o->strength_set           ? "--strength (edit only)"
                         : o->init_noise && o->count > 1                     ? "--init-noise with -n > 1"
                         : o->init_noise && o->strength_set                  ? "--init-noise with --strength"
                         : o->prompt && o->prompt_file                       ? "both -p and -f"
                                                                             : NULL;
    if (unused) {
        fprintf(stderr, "tuna %s: %s is not used here: remove it\n", cmd, unused);
        return 2;
    }
    const char *missing = !o->output                                                   ? "-o FILE"
                          : o->mode != MODE_RECONSTRUCT && !o->prompt && !o->prompt_file ? "-p TEXT"
                          : o->mode != MODE_GENERATE && !o->image                        ? "-i IMAGE"
                                                                                          : NULL;
    if (missing) {
        fprintf(stderr, "tuna %s: %s is required (tuna %s --help)\n", cmd, missing, cmd);
        return 2;
    }
    if (strcmp(o->output, "-") == 0 && (o->count > 1 || o->prompt_file)) {
        fprintf(stderr, "tuna %s: -o - writes one image to standard output: not with -n > 1 or -f\n", cmd);
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

static void print_quality(const float *result, const float *reference, int height, int width, FILE *out) {
    tuna_image a = {0}, b = {0};
    tuna_error err = {0};
    double psnr = 0, ssim = 0;
    if (tuna_image_from_tensor(result, height, width, &a, &err) == TUNA_OK &&
        tuna_image_from_tensor(reference, height, width, &b, &err) == TUNA_OK &&
        tuna_psnr(&a, &b, &psnr, &err) == TUNA_OK && tuna_ssim(&a, &b, &ssim, &err) == TUNA_OK)
        fprintf(out, "PSNR %.2f dB  SSIM %.4f\n", psnr, ssim);
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

/* The longest sequence a command runs: checked before any model work, so a
 * huge prompt or size is refused at once instead of after minutes. */
#define MAX_SEQUENCE 16384

static int build_inputs(const generate_options *o, const tuna_model *m, const tuna_tokenizer *tok, const char *prompt,
                        int height, int width, generate_inputs *in) {
    tuna_error err = {0};
    const tuna_config *c = &m->config;
    tuna_status s = TUNA_OK;
    const char *negative = o->negative ? o->negative : tuna_default_negative(c, o->mode == MODE_EDIT);
    tuna_ids_free(&in->cond);
    tuna_ids_free(&in->uncond);
    if (o->mode == MODE_EDIT) {
        s = tuna_edit_ids(tok, c, prompt, in->source_h, in->source_w, height, width, &in->cond, &err);
        if (s == TUNA_OK && !o->no_guidance)
            s = tuna_edit_ids(tok, c, negative, in->source_h, in->source_w, height, width, &in->uncond, &err);
    } else {
        int pads = o->mode == MODE_RECONSTRUCT ? (height / c->patch_size) * (width / c->patch_size) : 0;
        s = tuna_t2i_ids(tok, c, prompt, height, width, pads, &in->cond, &err);
        if (s == TUNA_OK && !o->no_guidance) s = tuna_t2i_ids(tok, c, negative, height, width, pads, &in->uncond, &err);
    }
    if (s != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", o->command, err.message);
        return 1;
    }
    size_t longest = in->cond.len > in->uncond.len ? in->cond.len : in->uncond.len;
    if (longest > MAX_SEQUENCE) {
        fprintf(stderr,
                "tuna %s: the sequence would be %zu tokens (prompt and %dx%d image), over the limit of %d: use a "
                "shorter prompt or a smaller size\n",
                o->command, longest, width, height, MAX_SEQUENCE);
        return 2;
    }
    return 0;
}

typedef struct {
    const char *prompt;
    const char *negative;
    const char *model;
    int index, total; /* this prompt among those of -f */
} run_context;

static int save_png(const generate_options *o, const run_context *r, const char *path, const float *z, int height,
                    int width, unsigned long long seed) {
    tuna_error err = {0};
    tuna_image img = {0};
    char seed_text[32], steps_text[32], cfg_text[32], size_text[48];
    snprintf(seed_text, sizeof seed_text, "%llu", seed);
    snprintf(steps_text, sizeof steps_text, "%d", o->steps);
    snprintf(cfg_text, sizeof cfg_text, "%g", (double)o->cfg);
    snprintf(size_text, sizeof size_text, "%dx%d", width, height);
    const char *keys[] = {"prompt", "negative_prompt", "seed", "steps", "sampler", "cfg", "size", "model", "mode",
                          "software"};
    const char *values[] = {r->prompt, o->no_guidance ? "" : r->negative, seed_text, steps_text,
                            o->heun ? "heun" : "euler", cfg_text, size_text, r->model, o->command, "tuna"};
    tuna_status s = tuna_image_from_tensor(z, height, width, &img, &err);
    if (s == TUNA_OK) s = tuna_image_write_png_text(path, &img, keys, values, 10, &err);
    tuna_image_free(&img);
    if (s != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", o->command, err.message);
        return 1;
    }
    return 0;
}

static int run_one(const generate_options *o, const tuna_model *m, const tuna_threads *pool, generate_inputs *in,
                   const run_context *r, int height, int width, int k, float *z) {
    const tuna_config *c = &m->config;
    size_t n = 3 * (size_t)height * width;
    unsigned long long seed = o->seed + (unsigned long long)k;
    int first_step = 0;
    if (o->init_noise) {
        if (load_init_noise(o, z, height, width)) return 1;
    } else if (o->mode == MODE_RECONSTRUCT) {
        for (size_t i = 0; i < n; i++) z[i] = (float)c->noise_scale * in->source[i]; /* reca: z = s * image */
    } else {
        tuna_rng rng;
        tuna_rng_seed(&rng, seed);
        tuna_euler_initial_noise(&rng, z, (long)n, (float)c->noise_scale);
        if (o->mode == MODE_EDIT && o->strength_set && o->strength < 1) {
            /* SDEdit-style: the source noised to t0 = 1 - strength on the flow's path
             * z_t = t x + (1 - t) e, then the sampler from the first grid time >= t0 */
            first_step = (int)((1.0f - o->strength) * o->steps);
            if (first_step >= o->steps) first_step = o->steps - 1;
            float t0 = (float)first_step / (float)o->steps;
            for (size_t i = 0; i < n; i++) z[i] = t0 * in->source[i] + (1.0f - t0) * z[i];
        }
    }
    char label[96];
    if (r->total > 1 && o->count > 1) snprintf(label, sizeof label, "%s %d/%d #%d/%d", o->command, r->index + 1, r->total, k + 1, o->count);
    else if (r->total > 1) snprintf(label, sizeof label, "%s %d/%d", o->command, r->index + 1, r->total);
    else if (o->count > 1) snprintf(label, sizeof label, "%s %d/%d", o->command, k + 1, o->count);
    else snprintf(label, sizeof label, "%s", o->command);
    cli_progress progress = {.label = label};
    cli_progress_begin(&progress, o->quiet);
    tuna_generate_params p = {
        .cond_ids = in->cond.data, .cond_length = (int)in->cond.len,
        .uncond_ids = o->no_guidance ? NULL : in->uncond.data, .uncond_length = (int)in->uncond.len,
        .source = o->mode == MODE_EDIT ? in->source : NULL, .source_height = in->source_h,
        .source_width = in->source_w, .height = height, .width = width, .steps = o->steps,
        .first_step = first_step, .heun = o->heun, .cfg_scale = o->cfg,
        .progress = o->quiet ? NULL : cli_progress_step, .progress_ctx = &progress,
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
    char path[4096], stem[4096];
    if (r->total > 1) {
        cli_indexed_path(o->output, r->index, r->total, stem, sizeof stem);
        cli_indexed_path(stem, k, o->count, path, sizeof path);
    } else {
        cli_indexed_path(o->output, k, o->count, path, sizeof path);
    }
    if (save_png(o, r, path, z, height, width, seed)) return 1;
    if (!o->quiet) fprintf(stderr, "wrote %s (%dx%d, seed %llu)\n", strcmp(path, "-") ? path : "standard output",
                           width, height, seed);
    if (o->mode == MODE_RECONSTRUCT) print_quality(z, in->source, height, width, strcmp(path, "-") ? stdout : stderr);
    return 0;
}

/* -f: the non-blank lines of a file (at most 10000 of at most 16 KiB each). */
static int read_prompts(const generate_options *o, char **text, char ***lines, int *count) {
    size_t size = 0;
    tuna_error err = {0};
    *lines = NULL;
    *count = 0;
    if (tuna_read_file(o->prompt_file, 16u << 20, text, &size, &err) != TUNA_OK) {
        fprintf(stderr, "tuna %s: %s\n", o->command, err.message);
        return 1;
    }
    if (memchr(*text, '\0', size)) {
        fprintf(stderr, "tuna %s: %s holds a NUL byte\n", o->command, o->prompt_file);
        return 1;
    }
    int cap = 0;
    for (char *line = *text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        if (strspn(line, " \t") == len) continue;
        if (*count == 10000) {
            fprintf(stderr, "tuna %s: %s: more than 10000 prompts\n", o->command, o->prompt_file);
            return 2;
        }
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(*lines, sizeof(char *) * (size_t)cap);
            if (!grown) return 1;
            *lines = grown;
        }
        (*lines)[(*count)++] = line;
    }
    if (*count == 0) {
        fprintf(stderr, "tuna %s: %s holds no prompt\n", o->command, o->prompt_file);
        return 2;
    }
    return 0;
}

static int run(generate_options *o) {
    double started = cli_now();
    char *prompt_text = NULL, **prompts = NULL;
    int prompt_count = 1;
    if (o->prompt_file) {
        int rc = read_prompts(o, &prompt_text, &prompts, &prompt_count);
        if (rc) {
            free(prompt_text);
            free(prompts);
            return rc;
        }
    }
    if (cli_check_output(o->command, o->output)) {
        free(prompt_text);
        free(prompts);
        return 1;
    }
    tuna_model model;
    tuna_tokenizer *tok = NULL;
    char model_buf[4096];
    const char *model_dir = tuna_model_dir(o->model, model_buf, sizeof model_buf);
    if (cli_load_model(o->model, o->tokenizer, &model, &tok, o->command)) {
        free(prompt_text);
        free(prompts);
        return 1;
    }
    int rc = cli_apply_dtype(&model, o->dtype, o->command);
    tuna_threads pool;
    tuna_threads_init(&pool, o->threads);
    int p = model.config.patch_size, height = o->size.height, width = o->size.width;
    generate_inputs in;
    memset(&in, 0, sizeof in);
    if (!rc && o->mode != MODE_GENERATE) {
        rc = cli_load_image(o->image, &model.config, &o->size, &in.source, &in.source_h, &in.source_w, o->command);
        height = in.source_h;
        width = in.source_w;
    } else if (!rc && height == 0) {
        tuna_default_generation_size(&model.config, &height, &width);
    }
    if (!rc && (height % p || width % p)) {
        fprintf(stderr, "tuna %s: size %dx%d (WxH) is not a multiple of the patch size %d\n", o->command, width,
                height, p);
        rc = 2;
    }
    float *z = rc ? NULL : malloc(sizeof(float) * 3 * (size_t)height * width);
    if (!rc && !z) {
        fprintf(stderr, "tuna %s: out of memory for a %dx%d image\n", o->command, width, height);
        rc = 1;
    }
    int images = 0;
    for (int j = 0; !rc && j < prompt_count; j++) {
        const char *prompt = o->mode == MODE_RECONSTRUCT ? "" : prompts ? prompts[j] : o->prompt;
        rc = build_inputs(o, &model, tok, prompt, height, width, &in);
        run_context r = {.prompt = prompt,
                         .negative = o->negative ? o->negative : tuna_default_negative(&model.config, o->mode == MODE_EDIT),
                         .model = model_dir, .index = j, .total = prompt_count};
        for (int k = 0; !rc && k < o->count; k++) {
            rc = run_one(o, &model, &pool, &in, &r, height, width, k, z);
            images += !rc;
        }
    }
    if (!o->quiet && images) {
        double seconds = cli_now() - started;
        fprintf(stderr, "%s: %d image%s %dx%d in %.1f s (%.2f s/image, %d steps, %s)\n", o->command, images,
                images == 1 ? "" : "s", width, height, seconds, seconds / images, o->steps, o->heun ? "heun" : "euler");
    }
    free(z);
    free(in.source);
    free(prompt_text);
    free(prompts);
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
    o.strength = 1.0f;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    o.no_guidance = o.cfg == 0.0f;
    return run(&o);
}

int cli_cmd_generate(int argc, char **argv) { return generate_main(argc, argv, MODE_GENERATE, "generate", 3.0f); }
int cli_cmd_edit(int argc, char **argv) { return generate_main(argc, argv, MODE_EDIT, "edit", 2.0f); }
int cli_cmd_reconstruct(int argc, char **argv) { return generate_main(argc, argv, MODE_RECONSTRUCT, "reconstruct", 3.0f); }
