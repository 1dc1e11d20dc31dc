/* `tuna restore`: find the re-initialised units of a foundation checkpoint
 * (`detect`), make a damaged copy for tests and benchmarks (`damage`), and
 * re-learn them (the default). docs/restoration.md. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "infer/prepare.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/config_json.h"
#include "train/restore.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna restore detect -m MODEL [--json FILE]\n"
            "       tuna restore damage -m MODEL -o OUT --layers P,... [--rule R] [--seed S]\n"
            "       tuna restore -m DAMAGED -o OUT [--max_minutes M | --max_steps N] [--layers P,...]\n"
            "                    [--no-neutralize] [--probe_samples N] [tuna train's keys: streams, buckets, ...]\n"
            "\n"
            "detect   names the units re-initialised in place (LLM layers tuna.model.layers.N, head blocks\n"
            "         diffusion_head_a.N, diffusion_head_b, time_embed, vision_encoder, embeddings, lm_head,\n"
            "         the final norm) from the weights alone: one line per damaged unit, its prefix first, then\n"
            "         its evidence; nothing for a clean model. --json FILE: every unit's score and margin.\n"
            "damage   re-initialises the given units by rule (normal, kaiming, xavier, adaln-zero, mixed;\n"
            "         default mixed) with --seed (default 0; the same seed gives the same weights) into OUT.\n"
            "restore  detects (or takes --layers), zeroes each damaged unit's output projections and adaLN\n"
            "         so it starts as an identity (--no-neutralize keeps the random weights), trains only those\n"
            "         units with everything else frozen, and writes OUT as a complete model with\n"
            "         restore_report.json. Defaults: lr 1e-3 x sqrt(192/hidden), warmup 10, no EMA, a checkpoint\n"
            "         every 50 steps in OUT/run (running again resumes). The data order follows --seed.\n"
            "Keys of tuna train (see tuna train --help) set the data streams, batch sizes and the optimizer.\n");
}

/* ---- detect ---------------------------------------------------------------- */

static const tuna_tensor *find_in_checkpoint(void *ctx, const char *name) { return tuna_checkpoint_find(ctx, name); }

static int cmd_detect(int argc, char **argv) {
    const char *model = NULL, *json = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
        else return fprintf(stderr, "tuna restore detect: unexpected argument '%s'\n", argv[i]), 2;
    }
    if (!model) return fprintf(stderr, "tuna restore detect: -m MODEL is required\n"), 2;
    tuna_error err = {0};
    tuna_checkpoint *ck = NULL;
    tuna_config config;
    const char *source;
    tuna_restore_detection d = {0};
    if (tuna_checkpoint_open(model, &ck, &err) != TUNA_OK || tuna_config_for_checkpoint(ck, &config, &source, &err) ||
        tuna_restore_detect(&config, find_in_checkpoint, ck, &d, &err) != TUNA_OK) {
        fprintf(stderr, "tuna restore detect: %s\n", err.message);
        if (ck) tuna_checkpoint_close(ck);
        return 1;
    }
    for (int i = 0; i < d.count; i++) {
        const tuna_restore_unit *u = &d.units[i];
        if (!u->damaged) continue;
        printf("%s score %.3f < %.2f (margin %.0f%%): %d of %d matrices look freshly initialised "
               "(spectral excess %.3f..%.3f), %d of %d vectors constant\n",
               u->prefix, u->score, d.threshold, 100 * u->margin, u->fresh_matrices, u->matrices, u->min_excess,
               u->max_excess, u->constant_vectors, u->vectors);
    }
    int rc = 0;
    if (json && tuna_restore_detection_save(json, &d, &err) != TUNA_OK) {
        fprintf(stderr, "tuna restore detect: %s\n", err.message);
        rc = 1;
    }
    tuna_restore_detection_free(&d);
    tuna_checkpoint_close(ck);
    return rc;
}

/* ---- damage ---------------------------------------------------------------- */

typedef struct {
    tuna_param_table *params;
    tuna_tensor *views;
} views;

static tuna_tensor *find_view(void *ctx, const char *name) {
    views *v = ctx;
    for (int i = 0; i < v->params->count; i++)
        if (!strcmp(v->params->items[i].name, name)) return &v->views[i];
    return NULL;
}

static int split_layers(char *list, const char **out, int cap) {
    int n = 0;
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p && n < cap; p = strtok_r(NULL, ",", &save)) out[n++] = p;
    return n;
}

static int cmd_damage(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *layers[TUNA_RESTORE_MAX_UNITS];
    char *layer_arg = NULL;
    int layer_count = 0;
    tuna_init_rule rule = TUNA_INIT_MIXED;
    unsigned long long seed = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        if (!v) return fprintf(stderr, "tuna restore damage: '%s' needs a value\n", a), 2;
        if (!strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--layers")) layer_arg = argv[i + 1];
        else if (!strcmp(a, "--rule") && !tuna_init_rule_from_name(v, &rule))
            return fprintf(stderr, "tuna restore damage: unknown rule '%s'\n", v), 2;
        else if (!strcmp(a, "--seed") && cli_seed("restore damage", a, v, &seed))
            return 2;
        else if (strcmp(a, "--rule") && strcmp(a, "--seed"))
            return fprintf(stderr, "tuna restore damage: unexpected argument '%s'\n", a), 2;
        i++;
    }
    if (!model || !out || !layer_arg) return fprintf(stderr, "tuna restore damage: -m, -o and --layers are required\n"), 2;
    layer_count = split_layers(layer_arg, layers, TUNA_RESTORE_MAX_UNITS);
    tuna_error err = {0};
    tuna_checkpoint *ck = NULL;
    tuna_config config;
    const char *source;
    tuna_param_table params = {0};
    int rc = 1;
    if (tuna_checkpoint_open(model, &ck, &err) != TUNA_OK || tuna_config_for_checkpoint(ck, &config, &source, &err) ||
        tuna_param_table_from_checkpoint(&params, ck, &err) != TUNA_OK)
        goto done;
    views v = {&params, calloc((size_t)params.count, sizeof(tuna_tensor))};
    const char **names = calloc((size_t)params.count, sizeof *names);
    if (!v.views || !names) {
        free(v.views), free(names);
        tuna_fail(&err, TUNA_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < params.count; i++) {
        tuna_tensor_init_view(&v.views[i], TUNA_F32, params.items[i].ndim, params.items[i].shape, params.items[i].weight);
        names[i] = params.items[i].name;
    }
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    int ok = 1;
    for (int i = 0; i < layer_count && ok; i++)
        if (!(ok = tuna_restore_damage(&config, layers[i], rule, &rng, find_view, &v) > 0))
            tuna_fail(&err, TUNA_ERR_INVALID, "no tensor of the model is under '%s'", layers[i]);
    char path[4200], tok_buf[4096];
    if (ok && mkdir(out, 0755) != 0 && errno != EEXIST) ok = 0, tuna_fail(&err, TUNA_ERR_IO, "cannot create %s", out);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    if (ok && tuna_safetensors_write(path, v.views, names, (size_t)params.count, NULL, &err) != TUNA_OK) ok = 0;
    snprintf(path, sizeof path, "%s/config.json", out);
    if (ok && tuna_config_save(path, &config, &err) != TUNA_OK) ok = 0;
    const char *tok = ok ? tuna_tokenizer_for_model(NULL, tuna_checkpoint_dir(ck), tok_buf, sizeof tok_buf) : NULL;
    if (tok) {
        size_t n = strlen(tok);
        snprintf(path, sizeof path, "%s/%s", out, n > 3 && !strcmp(tok + n - 3, ".gz") ? "tokenizer.json.gz" : "tokenizer.json");
        if (tuna_copy_file_atomic(tok, path, &err) != TUNA_OK) ok = 0;
    }
    free(v.views);
    free(names);
    if (ok) {
        fprintf(stderr, "re-initialised %d unit(s) by rule %s (seed %llu) into %s\n", layer_count,
                tuna_init_rule_name(rule), seed, out);
        rc = 0;
    }
done:
    if (rc) fprintf(stderr, "tuna restore damage: %s\n", err.message);
    if (ck) tuna_checkpoint_close(ck);
    tuna_param_table_free(&params);
    return rc;
}

/* ---- restore ----------------------------------------------------------------- */

static int cmd_run(int argc, char **argv) {
    tuna_restore_options o;
    tuna_restore_options_default(&o);
    char *layer_arg = NULL;
    /* the restore keys out, the rest to tuna train's parser (argv[0] is skipped there) */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) return fprintf(stderr, "tuna restore: out of memory\n"), 1;
    int n = 0;
    rest[n++] = "restore";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if ((!strcmp(a, "--layers")) && has_value) layer_arg = argv[++i];
        else if ((!strcmp(a, "--max_minutes") || !strcmp(a, "--max-minutes")) && has_value) {
            float minutes;
            if (cli_float("restore", a, argv[++i], 1e-3, 1e7, &minutes)) return free(rest), 2;
            o.max_minutes = minutes;
        } else if (!strcmp(a, "--no-neutralize") || !strcmp(a, "--no_neutralize")) o.neutralize = 0;
        else if ((!strcmp(a, "--probe_samples") || !strcmp(a, "--probe-samples")) && has_value) {
            if (cli_int("restore", a, argv[++i], 1, 4096, &o.probe_samples)) return free(rest), 2;
        } else rest[n++] = argv[i];
    }
    tuna_error err = {0};
    int help = 0, rc = 1;
    o.train.trainer.output_dir = NULL;
    if (tuna_train_options_parse(&o.train, n, rest, &help, &err) != TUNA_OK) {
        fprintf(stderr, "tuna restore: %s\n", err.message);
        rc = 2;
        goto out;
    }
    if (help) {
        usage(stdout);
        rc = 0;
        goto out;
    }
    if (!o.train.model || !o.train.trainer.output_dir) {
        fprintf(stderr, "tuna restore: -m DAMAGED and -o OUT are required\n");
        rc = 2;
        goto out;
    }
    if (layer_arg) o.layer_count = split_layers(layer_arg, o.layers, TUNA_RESTORE_MAX_UNITS);
    struct stat sb;
    char dir[4096], tok_buf[4096];
    snprintf(dir, sizeof dir, "%s", o.train.model);
    const char *model_dir = stat(o.train.model, &sb) == 0 && S_ISDIR(sb.st_mode) ? o.train.model : dirname(dir);
    const char *tok_path = tuna_tokenizer_for_model(o.train.tokenizer, model_dir, tok_buf, sizeof tok_buf);
    tuna_tokenizer *tok = NULL;
    tuna_restore_result r;
    if (!tok_path) tuna_fail(&err, TUNA_ERR_IO, "no tokenizer found (give --tokenizer)");
    else if (tuna_tokenizer_load(tok_path, &tok, &err) == TUNA_OK &&
             tuna_restore_run(&o, tok, tok_path, &r, &err) == TUNA_OK) {
        fprintf(stderr, "restored %d unit(s) in %lld steps, %.0f s: probe loss %.4f (damaged) -> %.4f (start) -> %.4f\n",
                r.unit_count, (long long)r.steps, r.seconds, r.loss_damaged, r.loss_start, r.loss_restored);
        rc = 0;
    }
    if (rc) fprintf(stderr, "tuna restore: %s\n", err.message);
    tuna_tokenizer_free(tok);
out:
    tuna_train_options_free(&o.train);
    free(rest);
    return rc;
}

int cli_cmd_restore(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "detect")) return cmd_detect(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "damage")) return cmd_damage(argc - 2, argv + 2);
    return cmd_run(argc - 1, argv + 1);
}
