/* `tuna eval` runner: each task through the engine (understand, generate, edit,
 * reconstruct), judged, aggregated into a report. See eval.h, docs/eval.md. */
#include "eval/eval.h"
#include "core/clock.h"
#include "core/rng.h"
#include "eval/eval_stats.h"
#include "infer/generate.h"
#include "infer/metrics.h"
#include "infer/prepare.h"
#include "infer/prompts.h"
#include "infer/sampler.h"
#include "infer/understand.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tuna_eval_options_default(tuna_eval_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 50;
    o->cfg_generate = 3.0f;
    o->cfg_edit = 2.0f;
    o->samples = 1;
    o->max_tokens = 32;
}

/* ---- report bookkeeping ------------------------------------------------------ */
static tuna_eval_group *group_of(tuna_eval_report *r, tuna_task_kind kind, const char *name) {
    for (int i = 0; i < r->group_count; i++)
        if (r->groups[i].kind == kind && strcmp(r->groups[i].name, name) == 0) return &r->groups[i];
    if (r->group_count == TUNA_EVAL_MAX_GROUPS) return NULL;
    tuna_eval_group *g = &r->groups[r->group_count++];
    memset(g, 0, sizeof *g);
    g->kind = kind;
    snprintf(g->name, sizeof g->name, "%s", name);
    return g;
}

static void count(tuna_eval_report *r, const tuna_eval_task *t, int ok, int judged) {
    tuna_eval_group *g = group_of(r, t->kind, t->group);
    if (!g) return;
    if (!judged) g->unjudged++;
    else g->total++, g->correct += ok != 0;
}

double tuna_eval_section_score(const tuna_eval_report *r, tuna_task_kind kind) {
    double sum = 0;
    int n = 0;
    for (int i = 0; i < r->group_count; i++)
        if (r->groups[i].kind == kind && r->groups[i].total) sum += (double)r->groups[i].correct / r->groups[i].total, n++;
    return n ? sum / n : -1;
}

void tuna_eval_report_free(tuna_eval_report *r) {
    for (int i = 0; r->results && i < r->task_count; i++) {
        free(r->results[i].output);
        free(r->results[i].error);
    }
    free(r->results);
    memset(r, 0, sizeof *r);
}

/* ---- images -------------------------------------------------------------------- */
/* Decode an image file; *chw (malloc'd, may be NULL) gets the model tensor at the
 * size the model reads it at (tuna_pick_image_size: a trained size when the
 * model records them, else the image's size cut down to a multiple of patch;
 * resize + centre crop when needed). config may be NULL (no model: patch 1). */
static tuna_status load_image(const char *path, const tuna_config *config, tuna_image *img, float **chw, int *h,
                              int *w, tuna_error *err) {
    memset(img, 0, sizeof *img);
    TUNA_TRY(tuna_image_decode_file(path, NULL, img, err));
    if (!chw) return TUNA_OK;
    int patch = config ? config->patch_size : 1;
    int H = img->height / patch * patch, W = img->width / patch * patch;
    if (config && config->image_size_count > 0) tuna_pick_image_size(config, img->height, img->width, NULL, &H, &W);
    if (H < patch || W < patch) {
        tuna_image_free(img);
        return tuna_fail(err, TUNA_ERR_INVALID, "%s: %dx%d is smaller than a patch (%d)", path, img->height,
                         img->width, patch);
    }
    if (H != img->height || W != img->width) {
        tuna_image sized = {0};
        tuna_status s = tuna_image_resize_crop(img, H, W, &sized, err);
        tuna_image_free(img);
        TUNA_TRY(s);
        *img = sized;
    }
    *chw = malloc(sizeof(float) * 3 * (size_t)H * W);
    if (!*chw) {
        tuna_image_free(img);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    tuna_image_to_tensor(img, *chw);
    *h = H, *w = W;
    return TUNA_OK;
}

static tuna_status save_output(const tuna_eval_options *o, const char *id, int k, int samples, const tuna_image *img,
                               tuna_error *err) {
    if (!o->save_dir) return TUNA_OK;
    char path[4096], name[256];
    size_t n = 0;
    for (const char *p = id; *p && n + 1 < sizeof name; p++) /* ids become file names: keep it tame */
        name[n++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                                   *p == '-' || *p == '_'
                               ? *p
                               : '_');
    name[n] = '\0';
    if (samples > 1) snprintf(path, sizeof path, "%s/%s-%d.png", o->save_dir, name, k);
    else snprintf(path, sizeof path, "%s/%s.png", o->save_dir, name);
    return tuna_image_write_png(path, img, err);
}

/* ---- features for the Frechet distance --------------------------------------------- */
typedef struct {
    float *data;
    int count, cap, dims;
} feature_set;

static tuna_status feature_add(feature_set *f, const tuna_judges *j, const tuna_image *img, tuna_error *err) {
    if (!j->has_fashion) return TUNA_OK;
    f->dims = j->fashion.hidden;
    if (f->count == f->cap) {
        int cap = f->cap ? 2 * f->cap : 256;
        float *grown = realloc(f->data, sizeof(float) * (size_t)cap * f->dims);
        if (!grown) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        f->data = grown, f->cap = cap;
    }
    float x[TUNA_FASHION_INPUTS];
    TUNA_TRY(tuna_fashion_input(img, x, err));
    tuna_fashion_mlp_classify(&j->fashion, x, f->data + (size_t)f->count * f->dims);
    f->count++;
    return TUNA_OK;
}

/* ---- the model's side --------------------------------------------------------------- */
typedef struct {
    const tuna_model *model;
    const tuna_tokenizer *tok;
    const tuna_threads *pool;
    const tuna_eval_options *o;
} engine;

/* Longest understanding sequence (question, image and answer) a task may use. */
#define EVAL_MAX_CONTEXT 16384

static tuna_status answer(const engine *e, const float *chw, int h, int w, const char *question, char **reply,
                          tuna_error *err) {
    size_t qlen = strlen(question);
    char *content = malloc(qlen + 9);
    if (!content) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    memcpy(content, "<image>\n", 8);
    memcpy(content + 8, question, qlen + 1);
    tuna_chat_message msg = {TUNA_ROLE_USER, content};
    int32_t *ids = NULL;
    int length = 0;
    tuna_status s = tuna_chat_build_ids(e->model, e->tok, &msg, 1, 1, &h, &w, 1, &ids, &length, err);
    free(ids);
    /* checked before the session allocates its cache for the whole question */
    if (s == TUNA_OK && length + e->o->max_tokens > EVAL_MAX_CONTEXT)
        s = tuna_fail(err, TUNA_ERR_LIMIT, "the question is %d tokens: over the limit of %d with the answer", length,
                      EVAL_MAX_CONTEXT);
    tuna_chat_session session;
    /* a fresh session per question: a reused cache could keep another image's rows */
    if (s == TUNA_OK) s = tuna_chat_session_init(&session, e->model, e->tok, length + e->o->max_tokens + 1, e->pool, err);
    if (s != TUNA_OK) {
        free(content);
        return s;
    }
    s = tuna_chat_session_add_image(&session, chw, h, w, err);
    tuna_reply_params p = {.sampling = {.temperature = 0, .top_k = 0, .top_p = 1.0f}, .max_tokens = e->o->max_tokens};
    tuna_rng rng;
    tuna_rng_seed(&rng, e->o->seed);
    if (s == TUNA_OK) s = tuna_chat_session_reply(&session, &msg, 1, &p, &rng, reply, NULL, err);
    tuna_chat_session_free(&session);
    free(content);
    return s;
}

/* Run the sampler for a text-to-image, editing or reconstruction sequence pair. */
static tuna_status sample_image(const engine *e, const tuna_ids *cond, const tuna_ids *uncond, float cfg,
                                const float *source, int sh, int sw, const float *clean, int h, int w,
                                unsigned long long seed, tuna_image *out, tuna_error *err) {
    const tuna_config *c = &e->model->config;
    size_t n = 3 * (size_t)h * w;
    float *z = malloc(sizeof(float) * n);
    if (!z) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    if (clean) {
        for (size_t i = 0; i < n; i++) z[i] = (float)c->noise_scale * clean[i]; /* reca: z = s * image */
    } else {
        tuna_rng rng;
        tuna_rng_seed(&rng, seed);
        tuna_euler_initial_noise(&rng, z, (long)n, (float)c->noise_scale);
    }
    int guided = uncond && cfg != 0;
    tuna_generate_params p = {
        .cond_ids = cond->data, .cond_length = (int)cond->len,
        .uncond_ids = guided ? uncond->data : NULL, .uncond_length = guided ? (int)uncond->len : 0,
        .source = source, .source_height = sh, .source_width = sw, .height = h, .width = w,
        .clean_image = clean, .clean_offset = clean ? 1 : 0, .steps = e->o->steps, .cfg_scale = guided ? cfg : 0,
    };
    tuna_status s = tuna_generate(e->model, &p, z, e->pool, err);
    if (s == TUNA_OK) s = tuna_image_from_tensor(z, h, w, out, err);
    free(z);
    return s;
}

/* ---- one task --------------------------------------------------------------------- */
typedef struct {
    const tuna_judges *judges;
    feature_set generated, real;
    tuna_eval_report *report;
} eval_state;

static int is_fashion_group(const char *group) { return strncmp(group, "fashion", 7) == 0; }

static tuna_status run_understand(const engine *e, eval_state *st, const tuna_eval_task *t, tuna_eval_result *res,
                                  tuna_error *err) {
    if (e->o->ground_truth) {
        res->output = malloc(strlen(t->answer) + 1);
        if (!res->output) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        strcpy(res->output, t->answer);
    } else {
        tuna_image img;
        float *chw = NULL;
        int h = 0, w = 0;
        TUNA_TRY(load_image(t->image, &e->model->config, &img, &chw, &h, &w, err));
        tuna_image_free(&img);
        tuna_status s = answer(e, chw, h, w, t->text, &res->output, err);
        free(chw);
        TUNA_TRY(s);
    }
    res->ok = tuna_answer_matches(res->output, t->answer);
    res->judged = 1;
    count(st->report, t, res->ok, 1);
    return TUNA_OK;
}

static void generation_size(const tuna_eval_options *o, const tuna_eval_task *t, int *h, int *w) {
    *h = o->height > 0 ? o->height : 32;
    *w = o->width > 0 ? o->width : 32;
    if (o->height > 0 || !t->image) return;
    tuna_image img = {0};
    if (tuna_image_decode_file(t->image, NULL, &img, NULL) == TUNA_OK) *h = img.height, *w = img.width;
    tuna_image_free(&img);
}

static tuna_status judge_one(eval_state *st, const tuna_eval_task *t, const tuna_image *img, float tolerance, int *ok,
                             int *judged, tuna_error *err) {
    TUNA_TRY(tuna_judge_image(st->judges, img, &t->expect, tolerance, ok, judged, err));
    if (t->kind == TUNA_TASK_GENERATE && is_fashion_group(t->group))
        TUNA_TRY(feature_add(&st->generated, st->judges, img, err));
    return TUNA_OK;
}

static tuna_status run_generate(const engine *e, eval_state *st, const tuna_eval_task *t, int index,
                                tuna_eval_result *res, tuna_error *err) {
    const tuna_eval_options *o = e->o;
    int samples = o->ground_truth ? 1 : o->samples, all_ok = 1, any_judged = 0;
    if (o->ground_truth && !t->image)
        return tuna_fail(err, TUNA_ERR_INVALID, "task %s: --ground-truth needs its \"image\"", t->id);
    tuna_ids cond = {0}, uncond = {0};
    int h = 0, w = 0, p = e->model ? e->model->config.patch_size : 1;
    tuna_status s = TUNA_OK;
    if (!o->ground_truth) {
        generation_size(o, t, &h, &w);
        if (h % p || w % p) return tuna_fail(err, TUNA_ERR_INVALID, "task %s: size %dx%d is not a multiple of the patch %d", t->id, h, w, p);
        s = tuna_t2i_ids(e->tok, &e->model->config, t->text, h, w, 0, &cond, err);
        if (s == TUNA_OK && o->cfg_generate != 0)
            s = tuna_t2i_ids(e->tok, &e->model->config, o->negative ? o->negative : tuna_default_negative(&e->model->config, 0), h, w, 0, &uncond, err);
    }
    for (int k = 0; s == TUNA_OK && k < samples; k++) {
        tuna_image img = {0};
        if (o->ground_truth) s = load_image(t->image, NULL, &img, NULL, NULL, NULL, err);
        else
            s = sample_image(e, &cond, o->cfg_generate != 0 ? &uncond : NULL, o->cfg_generate, NULL, 0, 0, NULL, h, w,
                             o->seed + 1000ull * (unsigned long long)index + (unsigned long long)k, &img, err);
        int ok = 0, judged = 0;
        if (s == TUNA_OK && !o->ground_truth) s = save_output(o, t->id, k, samples, &img, err);
        if (s == TUNA_OK) s = judge_one(st, t, &img, 0, &ok, &judged, err);
        if (s == TUNA_OK) {
            count(st->report, t, ok, judged);
            all_ok = all_ok && ok;
            any_judged = any_judged || judged;
        }
        tuna_image_free(&img);
    }
    tuna_ids_free(&cond);
    tuna_ids_free(&uncond);
    res->ok = all_ok && any_judged;
    res->judged = any_judged;
    return s;
}

static tuna_status run_edit(const engine *e, eval_state *st, const tuna_eval_task *t, int index, tuna_eval_result *res,
                            tuna_error *err) {
    const tuna_eval_options *o = e->o;
    tuna_image img = {0};
    tuna_status s;
    if (o->ground_truth) {
        if (!t->target) return tuna_fail(err, TUNA_ERR_INVALID, "task %s: --ground-truth needs its \"target\"", t->id);
        s = load_image(t->target, NULL, &img, NULL, NULL, NULL, err);
    } else {
        const tuna_config *c = &e->model->config;
        tuna_image src;
        float *chw = NULL;
        int h = 0, w = 0;
        TUNA_TRY(load_image(t->image, c, &src, &chw, &h, &w, err));
        tuna_image_free(&src);
        tuna_ids cond = {0}, uncond = {0};
        s = tuna_edit_ids(e->tok, c, t->text, h, w, h, w, &cond, err);
        if (s == TUNA_OK && o->cfg_edit != 0)
            s = tuna_edit_ids(e->tok, c, o->negative ? o->negative : tuna_default_negative(c, 1), h, w, h, w, &uncond, err);
        if (s == TUNA_OK)
            s = sample_image(e, &cond, o->cfg_edit != 0 ? &uncond : NULL, o->cfg_edit, chw, h, w, NULL, h, w,
                             o->seed + 1000ull * (unsigned long long)index, &img, err);
        if (s == TUNA_OK) s = save_output(o, t->id, 0, 1, &img, err);
        tuna_ids_free(&cond);
        tuna_ids_free(&uncond);
        free(chw);
    }
    if (s == TUNA_OK) {
        float tol = o->position_tolerance > 0 ? o->position_tolerance
                                              : 0.15f * (img.width < img.height ? img.width : img.height);
        s = judge_one(st, t, &img, tol, &res->ok, &res->judged, err);
        if (s == TUNA_OK) count(st->report, t, res->ok, res->judged);
    }
    tuna_image_free(&img);
    return s;
}

static tuna_status run_reconstruct(const engine *e, eval_state *st, const tuna_eval_task *t, tuna_eval_result *res,
                                   tuna_error *err) {
    tuna_image src = {0}, out = {0};
    float *chw = NULL;
    int h = 0, w = 0;
    TUNA_TRY(load_image(t->image, e->model ? &e->model->config : NULL, &src, &chw, &h, &w, err));
    tuna_status s = TUNA_OK;
    if (e->o->ground_truth) {
        s = tuna_image_from_tensor(chw, h, w, &out, err);
    } else {
        /* as `tuna reconstruct`: empty prompt, N [PAD] rows replaced by the clean image */
        const tuna_config *c = &e->model->config;
        int pads = (h / c->patch_size) * (w / c->patch_size);
        tuna_ids cond = {0}, uncond = {0};
        const char *negative = e->o->negative ? e->o->negative : tuna_default_negative(c, 0);
        s = tuna_t2i_ids(e->tok, c, "", h, w, pads, &cond, err);
        int guided = *negative && e->o->cfg_generate != 0; /* same text both sides: guidance is a no-op */
        if (s == TUNA_OK && guided) s = tuna_t2i_ids(e->tok, c, negative, h, w, pads, &uncond, err);
        if (s == TUNA_OK)
            s = sample_image(e, &cond, guided ? &uncond : NULL, e->o->cfg_generate, NULL, 0, 0, chw, h, w, 0, &out,
                             err);
        if (s == TUNA_OK) s = save_output(e->o, t->id, 0, 1, &out, err);
        tuna_ids_free(&cond);
        tuna_ids_free(&uncond);
    }
    tuna_image ref = {0};
    double psnr = 0, ssim = 0;
    if (s == TUNA_OK) s = tuna_image_from_tensor(chw, h, w, &ref, err);
    if (s == TUNA_OK) s = tuna_psnr(&out, &ref, &psnr, err);
    if (s == TUNA_OK) s = tuna_ssim(&out, &ref, &ssim, err);
    if (s == TUNA_OK) {
        st->report->reconstructions++;
        st->report->psnr_sum += psnr > 100 ? 100 : psnr;
        st->report->ssim_sum += ssim;
        res->judged = 1;
        res->ok = 1;
    }
    tuna_image_free(&ref);
    tuna_image_free(&src);
    tuna_image_free(&out);
    free(chw);
    return s;
}

static tuna_status run_reference(eval_state *st, const tuna_eval_task *t, tuna_error *err) {
    tuna_image img;
    TUNA_TRY(load_image(t->image, NULL, &img, NULL, NULL, NULL, err));
    tuna_status s = feature_add(&st->real, st->judges, &img, err);
    tuna_image_free(&img);
    return s;
}

tuna_status tuna_eval_run(const tuna_model *model, const tuna_tokenizer *tokenizer, const tuna_judges *judges,
                          const tuna_eval_tasks *tasks, const tuna_eval_options *o, const tuna_threads *pool,
                          tuna_eval_report *report, tuna_error *err) {
    memset(report, 0, sizeof *report);
    if (!o->ground_truth && (!model || !tokenizer))
        return tuna_fail(err, TUNA_ERR_INVALID, "eval: a model and tokenizer are needed (or ground_truth)");
    if (!o->ground_truth && tuna_tokenizer_vocab_size(tokenizer) > model->config.vocab_size)
        return tuna_fail(err, TUNA_ERR_INVALID, "eval: the tokenizer has %d tokens but the model only %d (wrong -t?)",
                         (int)tuna_tokenizer_vocab_size(tokenizer), model->config.vocab_size);
    if (o->samples < 1 || o->steps < 1 || o->max_tokens < 1)
        return tuna_fail(err, TUNA_ERR_INVALID, "eval: samples, steps and max_tokens must be >= 1");
    double start = tuna_now_seconds();
    report->task_count = tasks->count;
    report->ground_truth = o->ground_truth;
    report->judge_test_accuracy = judges->has_fashion ? judges->fashion.test_accuracy : -1;
    report->results = calloc((size_t)(tasks->count ? tasks->count : 1), sizeof *report->results);
    if (!report->results) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    engine e = {model, tokenizer, pool, o};
    eval_state st = {.judges = judges, .report = report};
    tuna_status s = TUNA_OK;
    for (int i = 0; i < tasks->count && s == TUNA_OK; i++) {
        const tuna_eval_task *t = &tasks->tasks[i];
        tuna_eval_result *res = &report->results[i];
        switch (t->kind) {
        case TUNA_TASK_UNDERSTAND: s = run_understand(&e, &st, t, res, err); break;
        case TUNA_TASK_GENERATE: s = run_generate(&e, &st, t, i, res, err); break;
        case TUNA_TASK_EDIT: s = run_edit(&e, &st, t, i, res, err); break;
        case TUNA_TASK_RECONSTRUCT: s = run_reconstruct(&e, &st, t, res, err); break;
        default: s = run_reference(&st, t, err); break;
        }
        if (s != TUNA_OK) tuna_fail_context(err, s, "task %s (line %d)", t->id, t->line);
        if (s != TUNA_OK && s != TUNA_ERR_NOMEM && s != TUNA_ERR_INTERNAL) {
            /* this task only: recorded, and the run goes on */
            free(res->output);
            res->output = NULL;
            res->ok = res->judged = 0;
            res->error = strdup(err ? err->message : "failed");
            report->errors++;
            s = res->error ? TUNA_OK : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        }
        if (o->progress) o->progress(o->progress_ctx, i + 1, tasks->count, t->id);
    }
    if (s == TUNA_OK && st.generated.count >= 2 && st.real.count >= 2) {
        s = tuna_frechet_distance(st.generated.data, st.generated.count, st.real.data, st.real.count, st.real.dims,
                                  &report->frechet, err);
        report->has_frechet = s == TUNA_OK;
        report->frechet_generated = st.generated.count;
        report->frechet_real = st.real.count;
        report->feature_dims = st.real.dims;
    }
    free(st.generated.data);
    free(st.real.data);
    report->seconds = tuna_now_seconds() - start;
    if (s != TUNA_OK) tuna_eval_report_free(report);
    return s;
}

/* ---- output --------------------------------------------------------------------- */
static const char *const section_titles[TUNA_TASK_KINDS] = {"understanding (exact match)",
                                                            "generation (judged, GenEval-style)",
                                                            "editing (judged)", "reconstruction", "reference"};

void tuna_eval_report_print(FILE *out, const tuna_eval_report *r) {
    if (r->ground_truth) fprintf(out, "(ground truth: the judges scored on the task file's own images)\n");
    for (int kind = 0; kind < TUNA_TASK_EDIT + 1; kind++) {
        double score = tuna_eval_section_score(r, (tuna_task_kind)kind);
        int any = 0;
        for (int i = 0; i < r->group_count; i++) any |= r->groups[i].kind == (tuna_task_kind)kind;
        if (!any) continue;
        fprintf(out, "\n%s\n  %-16s %8s %8s %9s\n", section_titles[kind], "group", "correct", "total", "accuracy");
        for (int i = 0; i < r->group_count; i++) {
            const tuna_eval_group *g = &r->groups[i];
            if (g->kind != (tuna_task_kind)kind) continue;
            if (g->total)
                fprintf(out, "  %-16s %8d %8d %8.1f%%", g->name, g->correct, g->total, 100.0 * g->correct / g->total);
            else
                fprintf(out, "  %-16s %8s %8s %9s", g->name, "-", "-", "-");
            if (g->unjudged) fprintf(out, "  (%d without a judge)", g->unjudged);
            fputc('\n', out);
        }
        if (score >= 0) fprintf(out, "  %-16s %8s %8s %8.1f%%\n", "overall (mean)", "", "", 100 * score);
    }
    if (r->reconstructions)
        fprintf(out, "\nreconstruction\n  PSNR %.2f dB  SSIM %.4f  (%d images)\n", r->psnr_sum / r->reconstructions,
                r->ssim_sum / r->reconstructions, r->reconstructions);
    if (r->has_frechet)
        fprintf(out, "\nFrechet distance (judge features, %d dims): %.3f  (%d generated vs %d real)\n",
                r->feature_dims, r->frechet, r->frechet_generated, r->frechet_real);
    if (r->judge_test_accuracy >= 0)
        fprintf(out, "judge: Fashion-MNIST classifier accuracy on the 10k real test images %.2f%%\n",
                100 * r->judge_test_accuracy);
    fprintf(out, "%d tasks in %.1f s\n", r->task_count, r->seconds);
}

char *tuna_eval_report_json(const tuna_eval_report *r, const tuna_eval_tasks *tasks) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddBoolToObject(root, "ground_truth", r->ground_truth);
    cJSON_AddNumberToObject(root, "tasks", r->task_count);
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON_AddNumberToObject(root, "errors", r->errors);
    for (int kind = 0; kind <= TUNA_TASK_EDIT; kind++) {
        cJSON *sec = cJSON_CreateObject(), *groups = cJSON_CreateObject();
        for (int i = 0; i < r->group_count; i++) {
            const tuna_eval_group *g = &r->groups[i];
            if (g->kind != (tuna_task_kind)kind) continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "correct", g->correct);
            cJSON_AddNumberToObject(o, "total", g->total);
            cJSON_AddNumberToObject(o, "unjudged", g->unjudged);
            if (g->total) cJSON_AddNumberToObject(o, "accuracy", (double)g->correct / g->total);
            else cJSON_AddNullToObject(o, "accuracy");
            cJSON_AddItemToObject(groups, g->name, o);
        }
        double score = tuna_eval_section_score(r, (tuna_task_kind)kind);
        cJSON_AddItemToObject(sec, "groups", groups);
        if (score >= 0) cJSON_AddNumberToObject(sec, "overall", score);
        else cJSON_AddNullToObject(sec, "overall");
        cJSON_AddItemToObject(root, tuna_task_kind_names[kind], sec);
    }
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "count", r->reconstructions);
    if (r->reconstructions) {
        cJSON_AddNumberToObject(rec, "psnr", r->psnr_sum / r->reconstructions);
        cJSON_AddNumberToObject(rec, "ssim", r->ssim_sum / r->reconstructions);
    }
    cJSON_AddItemToObject(root, "reconstruct", rec);
    if (r->has_frechet) {
        cJSON *fd = cJSON_CreateObject();
        cJSON_AddNumberToObject(fd, "value", r->frechet);
        cJSON_AddNumberToObject(fd, "generated", r->frechet_generated);
        cJSON_AddNumberToObject(fd, "real", r->frechet_real);
        cJSON_AddNumberToObject(fd, "dims", r->feature_dims);
        cJSON_AddItemToObject(root, "frechet", fd);
    } else {
        cJSON_AddNullToObject(root, "frechet");
    }
    if (r->judge_test_accuracy >= 0) cJSON_AddNumberToObject(root, "judge_test_accuracy", r->judge_test_accuracy);
    if (tasks && r->results) {
        cJSON *list = cJSON_CreateArray();
        for (int i = 0; i < r->task_count && i < tasks->count; i++) {
            const tuna_eval_task *t = &tasks->tasks[i];
            if (t->kind == TUNA_TASK_REFERENCE) continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", t->id);
            cJSON_AddStringToObject(o, "task", tuna_task_kind_names[t->kind]);
            cJSON_AddStringToObject(o, "group", t->group);
            if (r->results[i].judged) cJSON_AddBoolToObject(o, "ok", r->results[i].ok);
            else cJSON_AddNullToObject(o, "ok");
            if (r->results[i].output) cJSON_AddStringToObject(o, "output", r->results[i].output);
            if (r->results[i].error) cJSON_AddStringToObject(o, "error", r->results[i].error);
            cJSON_AddItemToArray(list, o);
        }
        cJSON_AddItemToObject(root, "results", list);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}
