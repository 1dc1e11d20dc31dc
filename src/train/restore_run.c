/* `tuna restore`: detect (or take) the damaged units, make them harmless,
 * train only them, write a complete model and a report (restore.h). */
#include "train/restore.h"
#include "core/clock.h"
#include "core/mapped_file.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "model/config_json.h"
#include "train/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

void tuna_restore_options_default(tuna_restore_options *o) {
    memset(o, 0, sizeof *o);
    tuna_train_options_default(&o->train);
    o->neutralize = 1;
    o->probe_samples = 16;
    /* restoring fresh layers: no EMA (it would lag the short run), a short
     * warmup, constant rate, frequent resumable checkpoints, keep one */
    o->train.trainer.optim.learning_rate = -1; /* -1: picked from the model's width */
    o->train.trainer.optim.warmup_steps = 10;
    o->train.trainer.optim.ema_decay = 0;
    o->train.trainer.max_steps = 1000000000;
    o->train.trainer.save_every = 50;
    o->train.trainer.keep_last = 1;
}

/* lr 1e-3 at width 192 (the bundled model's own peak), scaled by 1/sqrt(width)
 * like the usual muP-style width rule: 2.3e-4 at Qwen2.5-7B's 3584. */
static double default_learning_rate(const tuna_config *c) { return 1e-3 * sqrt(192.0 / (double)c->hidden_size); }

static const tuna_tensor *find_in_checkpoint(void *ctx, const char *name) { return tuna_checkpoint_find(ctx, name); }

/* ---- neutralising ------------------------------------------------------------
 * A damaged unit's random weights inject noise into the residual stream. With
 * its output projections zeroed an LLM layer is x + 0 + 0 (attention o_proj,
 * MLP down_proj), and with its adaLN zeroed a head block's gates are 0: each
 * starts as an identity, the model at "layer skipped" quality, and the first
 * gradients reach exactly the zeroed matrices (then the rest, as they grow).
 * The final layer with adaLN and linear zeroed predicts 0. */
static int neutralize_unit(tuna_param_table *params, const char *prefix) {
    static const char *const outputs[] = {".self_attn.o_proj.weight", ".mlp.down_proj.weight",
                                          ".adaLN_modulation.1.weight", ".adaLN_modulation.1.bias"};
    static const char *const final_layer[] = {".adaLN_modulation.1.weight", ".adaLN_modulation.1.bias",
                                              ".linear.weight", ".linear.bias"};
    int final = strcmp(prefix, "diffusion_head_b") == 0;
    const char *const *names = final ? final_layer : outputs;
    int zeroed = 0;
    for (int k = 0; k < 4; k++) {
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, names[k]);
        tuna_param *p = tuna_param_table_find(params, name);
        if (!p) continue;
        memset(p->weight, 0, sizeof(float) * (size_t)p->numel);
        zeroed++;
    }
    return zeroed;
}

/* ---- probe losses --------------------------------------------------------------- */

/* Mean loss over the probe samples (drawn once, before training). */
static tuna_status probe_loss(tuna_train_model *model, tuna_train_batch **batches, int batch_count, double *mean,
                              tuna_error *err) {
    double sum = 0;
    int n = 0;
    for (int b = 0; b < batch_count; b++)
        for (int i = 0; i < batches[b]->count; i++) {
            tuna_loss_values v;
            TUNA_TRY(model->loss(model->ctx, &batches[b]->samples[i], &v, err));
            sum += v.loss, n++;
        }
    *mean = n ? sum / n : NAN;
    return TUNA_OK;
}

/* probe_samples sequences from the streams with a seed of their own. */
static tuna_status draw_probe(const tuna_restore_options *o, tuna_train_batch ***out, int *count, tuna_error *err) {
    tuna_data_config dc = o->train.data;
    dc.seed = o->train.data.seed + 0x5eed;
    dc.quiet = 1;
    tuna_data *data;
    TUNA_TRY(tuna_data_open(&dc, NULL, &data, err));
    int cap = o->probe_samples > 0 ? o->probe_samples : 1, n = 0, samples = 0;
    tuna_train_batch **batches = calloc((size_t)cap, sizeof *batches);
    tuna_status s = batches ? TUNA_OK : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    while (s == TUNA_OK && samples < o->probe_samples && n < cap) {
        s = tuna_data_next(data, &batches[n], err);
        if (s == TUNA_OK) samples += batches[n++]->count;
    }
    tuna_data_close(data);
    *out = batches, *count = n;
    return s;
}

/* ---- output ------------------------------------------------------------------------ */

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec + 1e-6 * ru.ru_stime.tv_usec;
}

static tuna_status write_report(const char *path, const tuna_restore_options *o, const tuna_restore_detection *d,
                                const tuna_restore_result *r, tuna_error *err) {
    cJSON *root = cJSON_CreateObject();
    if (d) cJSON_AddItemToObject(root, "units", tuna_restore_units_json(d));
    cJSON *restored = cJSON_AddArrayToObject(root, "restored");
    for (int i = 0; i < r->unit_count; i++) cJSON_AddItemToArray(restored, cJSON_CreateString(r->units[i]));
    cJSON_AddStringToObject(root, "found_by", o->layer_count ? "--layers" : "detection");
    cJSON_AddNumberToObject(root, "threshold", TUNA_RESTORE_THRESHOLD);
    cJSON_AddBoolToObject(root, "neutralized", o->neutralize);
    cJSON_AddNumberToObject(root, "learning_rate", r->learning_rate);
    cJSON_AddNumberToObject(root, "trainable_parameters", (double)r->trainable);
    cJSON_AddNumberToObject(root, "steps", (double)r->steps);
    cJSON_AddNumberToObject(root, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON_AddNumberToObject(root, "cpu_seconds", r->cpu_seconds);
    cJSON_AddNumberToObject(root, "peak_rss_mib", r->peak_rss_mib);
    cJSON_AddNumberToObject(root, "master_weights_mib", r->master_mib);
    cJSON_AddNumberToObject(root, "optimizer_state_mib", r->state_mib);
    cJSON_AddNumberToObject(root, "probe_samples", r->probe_samples);
    cJSON_AddNumberToObject(root, "probe_loss_damaged", r->loss_damaged);
    cJSON_AddNumberToObject(root, "probe_loss_start", r->loss_start);
    cJSON_AddNumberToObject(root, "probe_loss_restored", r->loss_restored);
    return tuna_restore_json_save(path, root, err);
}

/* OUT = the last checkpoint's weights + config.json + the tokenizer: a complete model. */
static tuna_status write_model(const tuna_restore_options *o, const char *run_dir, const char *tokenizer_path,
                               const tuna_config *c, tuna_error *err) {
    const char *out = o->train.trainer.output_dir;
    char ckpt[4096], from[4200], to[4200];
    if (tuna_train_checkpoint_latest(run_dir, ckpt, sizeof ckpt) <= 0)
        return tuna_fail(err, TUNA_ERR_INTERNAL, "no checkpoint in %s", run_dir);
    snprintf(from, sizeof from, "%s/model.safetensors", ckpt);
    snprintf(to, sizeof to, "%s/model.safetensors", out);
    TUNA_TRY(tuna_copy_file_atomic(from, to, err));
    snprintf(to, sizeof to, "%s/config.json", out);
    TUNA_TRY(tuna_config_save(to, c, err));
    if (!tokenizer_path) return TUNA_OK;
    size_t n = strlen(tokenizer_path);
    snprintf(to, sizeof to, "%s/%s", out, n > 3 && !strcmp(tokenizer_path + n - 3, ".gz") ? "tokenizer.json.gz"
                                                                                          : "tokenizer.json");
    return tuna_copy_file_atomic(tokenizer_path, to, err);
}

/* ---- the run ---------------------------------------------------------------------------- */

static tuna_status pick_units(tuna_restore_options *o, tuna_checkpoint *ck, const tuna_config *c,
                              tuna_restore_detection *d, tuna_restore_result *r, tuna_error *err) {
    if (o->layer_count == 0) {
        TUNA_TRY(tuna_restore_detect(c, find_in_checkpoint, ck, d, err));
        for (int i = 0; i < d->count && r->unit_count < TUNA_RESTORE_MAX_UNITS; i++)
            if (d->units[i].damaged) snprintf(r->units[r->unit_count++], 64, "%s", d->units[i].prefix);
        return TUNA_OK;
    }
    for (int i = 0; i < o->layer_count && i < TUNA_RESTORE_MAX_UNITS; i++) {
        int found = 0;
        for (size_t k = 0; k < tuna_checkpoint_count(ck) && !found; k++)
            found = tuna_restore_in_unit(tuna_checkpoint_name(ck, k), o->layers[i]);
        if (!found) return tuna_fail(err, TUNA_ERR_INVALID, "--layers: no tensor of the model is under '%s'", o->layers[i]);
        snprintf(r->units[r->unit_count++], 64, "%s", o->layers[i]);
    }
    return TUNA_OK;
}

tuna_status tuna_restore_run(tuna_restore_options *o, const tuna_tokenizer *tok, const char *tokenizer_path,
                             tuna_restore_result *r, tuna_error *err) {
    memset(r, 0, sizeof *r);
    double t0 = tuna_now_seconds();
    const char *out = o->train.trainer.output_dir;
    if (!o->train.model || !out) return tuna_fail(err, TUNA_ERR_INVALID, "restore needs -m MODEL and -o OUT");
    if (mkdir(out, 0755) != 0 && errno != EEXIST) return tuna_fail(err, TUNA_ERR_IO, "cannot create %s", out);

    tuna_checkpoint *ck = NULL; /* open for the whole run: frozen weights are read in place */
    tuna_config config;
    const char *source;
    tuna_param_table params = {0};
    tuna_restore_detection d = {0};
    tuna_train_model model = {0};
    tuna_train_batch **probe = NULL;
    int probe_batches = 0;
    tuna_status s = tuna_checkpoint_open(o->train.model, &ck, err);
    if (s == TUNA_OK) s = tuna_config_for_checkpoint(ck, &config, &source, err);
    if (s == TUNA_OK) s = pick_units(o, ck, &config, &d, r, err);
    if (s == TUNA_OK && r->unit_count == 0) s = tuna_fail(err, TUNA_ERR_INVALID, "no damaged unit found: nothing to restore");

    /* train only the damaged units, from a harmless start; the rest stays as stored */
    const char *patterns[2 * TUNA_RESTORE_MAX_UNITS]; /* "P" (a tensor named so) and "P.*" */
    char globs[TUNA_RESTORE_MAX_UNITS][70];
    for (int i = 0; s == TUNA_OK && i < r->unit_count; i++) {
        snprintf(globs[i], sizeof globs[i], "%s.*", r->units[i]);
        patterns[2 * i] = r->units[i];
        patterns[2 * i + 1] = globs[i];
    }
    tuna_freeze_rules rules = {NULL, 0, patterns, 2 * r->unit_count};
    if (s == TUNA_OK) s = tuna_param_table_from_checkpoint_frozen_in_place(&params, ck, &rules, err);
    if (s == TUNA_OK) {
        o->train.data.tokenizer = tok;
        o->train.data.tokens = config.tokens;
        o->train.data.patch_size = config.patch_size;
        if (!o->train.data_noise_scale_set) o->train.data.noise_scale = (float)config.noise_scale;
        r->probe_samples = o->probe_samples;
        s = draw_probe(o, &probe, &probe_batches, err);
    }
    if (s == TUNA_OK) s = tuna_param_table_setup_training(&params, &rules, o->train.trainer.optim.ema_decay > 0, err);
    tuna_threads threads;
    tuna_threads_init(&threads, o->train.threads);
    if (s == TUNA_OK) s = tuna_train_model_bind(&config, &params, &threads, &model, err);
    if (s == TUNA_OK) s = probe_loss(&model, probe, probe_batches, &r->loss_damaged, err);
    for (int i = 0; s == TUNA_OK && o->neutralize && i < r->unit_count; i++) neutralize_unit(&params, r->units[i]);
    if (s == TUNA_OK) s = probe_loss(&model, probe, probe_batches, &r->loss_start, err);

    if (s == TUNA_OK) {
        tuna_param_stats ps = tuna_param_table_stats(&params);
        r->trainable = ps.trainable;
        r->master_mib = (double)ps.master_bytes / 1048576.0;
        r->state_mib = (double)ps.state_bytes / 1048576.0;
        if (o->train.trainer.optim.learning_rate < 0) o->train.trainer.optim.learning_rate = default_learning_rate(&config);
        r->learning_rate = o->train.trainer.optim.learning_rate;
        tuna_trainer_config tc = o->train.trainer;
        char run_dir[4200];
        snprintf(run_dir, sizeof run_dir, "%s/run", out);
        tc.output_dir = run_dir;
        tc.threads = &threads;
        tc.max_seconds = o->max_minutes * 60.0;
        if (!tc.quiet)
            fprintf(stderr,
                    "restoring %d unit(s): %.3fM of %.3fM parameters trained (f32 masters %.1f MiB, gradients and "
                    "AdamW %.1f MiB), the rest frozen as stored; lr %.3g\n",
                    r->unit_count, ps.trainable / 1e6, ps.total / 1e6, r->master_mib, r->state_mib, r->learning_rate);
        tuna_trainer_result tr;
        s = tuna_trainer_run(&tc, &params, &model, &o->train.data, &config, &tr, err);
        r->steps = tr.final_step;
        if (s == TUNA_OK) s = probe_loss(&model, probe, probe_batches, &r->loss_restored, err);
        if (s == TUNA_OK) s = write_model(o, run_dir, tokenizer_path, &config, err);
        r->tokens = tr.tokens;
    }
    r->seconds = tuna_now_seconds() - t0;
    r->cpu_seconds = cpu_seconds();
    r->peak_rss_mib = peak_rss_mib();
    if (s == TUNA_OK) {
        char path[4200];
        snprintf(path, sizeof path, "%s/restore_report.json", out);
        s = write_report(path, o, o->layer_count ? NULL : &d, r, err);
    }
    for (int i = 0; i < probe_batches; i++) tuna_train_batch_free(probe[i]);
    free(probe);
    if (model.destroy) model.destroy(model.ctx);
    tuna_restore_detection_free(&d);
    tuna_param_table_free(&params);
    if (ck) tuna_checkpoint_close(ck);
    return s;
}
