/* The training loop: see trainer.h. */
#include "train/trainer.h"
#include "core/clock.h"

#include "core/mapped_file.h"
#include "train/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void tuna_trainer_config_default(tuna_trainer_config *c) {
    memset(c, 0, sizeof *c);
    tuna_optimizer_config_default(&c->optim);
    c->max_steps = 1000;
    c->grad_accum = 1;
    c->save_every = 500;
    c->keep_last = 3;
    c->output_dir = "outputs/train";
    c->log_every = 1;
    c->resume = 1;
}

static tuna_status make_dirs(const char *path, tuna_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return tuna_fail(err, TUNA_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return tuna_fail(err, TUNA_ERR_IO, "mkdir %s: %s", buf, strerror(errno));
    return TUNA_OK;
}

/* metrics.jsonl keeps only the steps <= keep_step (a killed run may have
 * logged steps past its last checkpoint; they are redone). Rewritten
 * atomically: a kill during the rewrite leaves the old file. */
typedef struct {
    const char *text;
    size_t size;
    int64_t keep_step;
} metrics_trim;

static tuna_status write_trimmed_metrics(FILE *out, void *ctx, tuna_error *err) {
    const metrics_trim *t = ctx;
    const char *text = t->text;
    for (const char *line = text; line < text + t->size;) {
        const char *nl = memchr(line, '\n', (size_t)(text + t->size - line));
        if (!nl) break; /* a torn last line is dropped */
        long long step = -1;
        if (sscanf(line, "{\"step\": %lld", &step) == 1 && step <= t->keep_step &&
            fwrite(line, 1, (size_t)(nl - line + 1), out) != (size_t)(nl - line + 1))
            return tuna_fail(err, TUNA_ERR_IO, "write failed");
        line = nl + 1;
    }
    return TUNA_OK;
}

static tuna_status trim_metrics(const char *path, int64_t keep_step, tuna_error *err) {
    char *text = NULL;
    size_t size = 0;
    if (access(path, F_OK) != 0) return TUNA_OK;
    TUNA_TRY(tuna_read_file(path, (size_t)1 << 32, &text, &size, err));
    metrics_trim t = {text, size, keep_step};
    tuna_status s = tuna_write_file_atomic(path, write_trimmed_metrics, &t, err);
    free(text);
    return s;
}

static void format_duration(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

typedef struct {
    double loss, ce, flow;
    int ce_seen, flow_seen;
    int64_t tokens;
    tuna_task task;
} step_stats;

tuna_status tuna_trainer_run(const tuna_trainer_config *config, tuna_param_table *params, tuna_train_model *model,
                             const tuna_data_config *data_config, const tuna_config *model_config,
                             tuna_trainer_result *result, tuna_error *err) {
    tuna_trainer_result res = {0};
    if (!model || !model->loss_and_grad) return tuna_fail(err, TUNA_ERR_INVALID, "trainer: no model");
    if (config->max_steps <= 0 || config->grad_accum <= 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "trainer: max_steps and gradient_accumulation_steps must be > 0");
    if (!config->output_dir || !*config->output_dir) return tuna_fail(err, TUNA_ERR_INVALID, "trainer: no output_dir");
    TUNA_TRY(make_dirs(config->output_dir, err));

    /* the cosine schedule runs over the whole run unless told otherwise */
    tuna_optimizer_config optim = config->optim;
    if (optim.total_steps <= 0) optim.total_steps = config->max_steps;
    tuna_optimizer opt;
    tuna_optimizer_init(&opt, &optim);
    opt.pool = config->threads;
    tuna_train_state state = {0};
    char ckpt[4096];
    int64_t start = 0;
    if (config->resume && tuna_train_checkpoint_latest(config->output_dir, ckpt, sizeof ckpt) > 0) {
        TUNA_TRY(tuna_train_checkpoint_load(ckpt, params, &state, err));
        start = state.step;
        opt.step = state.step - state.skipped_updates;
        opt.ema_updates = state.ema_updates;
        if (!config->quiet) fprintf(stderr, "resuming from %s (step %" PRId64 ")\n", ckpt, start);
    }
    tuna_train_checkpoint_prune(config->output_dir, 0); /* leftovers of a killed save */
    res.start_step = start;
    res.skipped_updates = state.skipped_updates;

    char metrics_path[4200];
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", config->output_dir);
    TUNA_TRY(trim_metrics(metrics_path, start, err));
    FILE *metrics = fopen(metrics_path, "a");
    if (!metrics) return tuna_fail(err, TUNA_ERR_IO, "cannot open %s: %s", metrics_path, strerror(errno));

    tuna_data *data = NULL;
    tuna_status st = tuna_data_open(data_config, start > 0 ? &state.data : NULL, &data, err);
    if (st != TUNA_OK) {
        fclose(metrics);
        return st;
    }
    tuna_data_state data_state = state.data;
    double t0 = tuna_now_seconds();
    int64_t done_here = 0;
    for (int64_t step = start; step < config->max_steps; step++) {
        double step_t0 = tuna_now_seconds();
        tuna_param_table_zero_grad(params);
        step_stats ss = {0};
        for (int a = 0; a < config->grad_accum && st == TUNA_OK; a++) {
            tuna_train_batch *batch = NULL;
            st = tuna_data_next(data, &batch, err);
            if (st != TUNA_OK) break;
            float scale = 1.0f / (float)(batch->count * config->grad_accum);
            ss.task = batch->task;
            tuna_loss_values values[TUNA_BATCH_MAX] = {0};
            if (batch->count > TUNA_BATCH_MAX) {
                st = tuna_fail(err, TUNA_ERR_LIMIT, "trainer: at most %d sequences per micro-batch", TUNA_BATCH_MAX);
            } else if (model->loss_and_grad_batch && batch->count > 1) {
                st = model->loss_and_grad_batch(model->ctx, batch->samples, batch->count, scale, values, err);
            } else {
                for (int i = 0; i < batch->count && st == TUNA_OK; i++)
                    st = model->loss_and_grad(model->ctx, &batch->samples[i], scale, &values[i], err);
            }
            for (int i = 0; i < batch->count && st == TUNA_OK; i++) {
                const tuna_loss_values lv = values[i];
                double w = 1.0 / (double)(batch->count * config->grad_accum);
                ss.loss += w * lv.loss;
                ss.ce += w * lv.ce;
                ss.flow += w * lv.flow;
                ss.ce_seen |= lv.ce_tokens > 0;
                ss.flow_seen |= lv.flow_elements > 0;
                ss.tokens += batch->samples[i].length;
            }
            data_state = batch->state_after;
            tuna_train_batch_free(batch);
        }
        if (st != TUNA_OK) break;
        double norm = tuna_clip_grad_norm(params, config->optim.max_grad_norm, config->threads);
        double lr = tuna_lr_at(&optim, step);
        int skipped = !isfinite(norm) || !isfinite(ss.loss);
        if (skipped) {
            res.skipped_updates++;
            fprintf(stderr, "warning: step %" PRId64 ": non-finite loss or gradient norm, update skipped\n", step + 1);
        } else {
            tuna_adamw_step(&opt, params, lr);
            tuna_ema_update(&opt, params);
        }
        int64_t step_done = step + 1;
        double t1 = tuna_now_seconds();
        double tps = ss.tokens / fmax(t1 - step_t0, 1e-9);
        char ce[32] = "null", flow[32] = "null";
        if (ss.ce_seen) snprintf(ce, sizeof ce, "%.9g", ss.ce);
        if (ss.flow_seen) snprintf(flow, sizeof flow, "%.9g", ss.flow);
        fprintf(metrics,
                "{\"step\": %" PRId64 ", \"task\": \"%s\", \"loss\": %.9g, \"ce\": %s, \"flow\": %s, \"lr\": %.9g, "
                "\"grad_norm\": %.9g, \"tokens\": %" PRId64 ", \"tokens_per_s\": %.1f, \"elapsed_s\": %.3f, "
                "\"skipped\": %s}\n",
                step_done, tuna_task_name(ss.task), ss.loss, ce, flow, lr, norm, ss.tokens, tps, t1 - t0,
                skipped ? "true" : "false");
        fflush(metrics);
        done_here++;
        if (!config->quiet && (config->log_every <= 1 || step_done % config->log_every == 0 ||
                               step_done == config->max_steps)) {
            char eta[32];
            double left = (t1 - t0) / (double)done_here * (double)(config->max_steps - step_done);
            if (config->max_seconds > 0) left = fmin(left, fmax(config->max_seconds - (t1 - t0), 0));
            format_duration(left, eta, sizeof eta);
            fprintf(stderr,
                    "step %" PRId64 "/%" PRId64 " | %-4s | loss %.4f (ce %s flow %s) | lr %.3g | gnorm %.3g | "
                    "%.0f tok/s | eta %s\n",
                    step_done, config->max_steps, tuna_task_name(ss.task), ss.loss, ce, flow, lr, norm, tps, eta);
        }
        res.last_loss = ss.loss;
        res.tokens += ss.tokens;
        res.final_step = step_done;
        int out_of_time = config->max_seconds > 0 && t1 - t0 >= config->max_seconds;
        int save = (config->save_every > 0 && step_done % config->save_every == 0) || step_done == config->max_steps ||
                   out_of_time;
        if (save) {
            tuna_train_state cs = {step_done, opt.ema_updates, res.skipped_updates, data_state};
            st = tuna_train_checkpoint_save(config->output_dir, params, &cs, model_config, config->save_bf16,
                                            config->keep_last, err);
            if (st != TUNA_OK) break;
            if (config->tokenizer_path) { /* a checkpoint loads as a complete model */
                size_t n = strlen(config->tokenizer_path);
                char to[4300];
                snprintf(to, sizeof to, "%s/checkpoint-%08" PRId64 "/%s", config->output_dir, step_done,
                         n > 3 && !strcmp(config->tokenizer_path + n - 3, ".gz") ? "tokenizer.json.gz"
                                                                                 : "tokenizer.json");
                st = tuna_copy_file_atomic(config->tokenizer_path, to, err);
                if (st != TUNA_OK) break;
            }
            if (!config->quiet) fprintf(stderr, "saved %s/checkpoint-%08" PRId64 "\n", config->output_dir, step_done);
        }
        if (config->stop_after > 0 && done_here >= config->stop_after) break;
        if (out_of_time) {
            if (!config->quiet) fprintf(stderr, "time budget of %.0f s reached at step %" PRId64 "\n", config->max_seconds, step_done);
            break;
        }
    }
    tuna_data_close(data);
    fclose(metrics);
    if (result) *result = res;
    return st;
}
