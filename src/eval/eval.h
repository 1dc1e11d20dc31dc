/* `tuna eval`: a Tuna-2 checkpoint measured on a task file (docs/eval.md).
 *
 *  understand   the model's greedy answer, exact match after normalisation,
 *               accuracy per question type;
 *  generate     text to image, each image judged by eval_judge.h (never by the
 *               model under test), accuracy per category (GenEval style), and a
 *               Frechet distance between the generated Fashion-MNIST items and
 *               the task file's real "reference" images in the classifier's
 *               hidden-layer features;
 *  edit         success rate of the requested change, by the same judges;
 *  reconstruct  PSNR and SSIM of the reconstruction mode (as `tuna reconstruct`).
 *
 * With ground_truth set there is no model: the task file's own ground truth
 * ("image" of a generate task, "target" of an edit) is judged, which measures
 * the judges themselves. */
#ifndef TUNA_EVAL_EVAL_H
#define TUNA_EVAL_EVAL_H

#include "core/threads.h"
#include "eval/eval_judge.h"
#include "eval/eval_tasks.h"
#include "model/tuna2.h"
#include "text/tokenizer.h"

#include <stdio.h>

typedef void (*tuna_eval_progress_fn)(void *ctx, int done, int total, const char *id);

typedef struct {
    const char *negative;       /* prompt of the unconditional branch (NULL: tuna_default_negative, as every command) */
    int steps;                  /* Euler steps (default 50) */
    float cfg_generate, cfg_edit; /* guidance scales (3, 2); 0: no guidance */
    int samples;                /* images per generate prompt (1) */
    unsigned long long seed;    /* image noise of task i, sample k: seed + 1000 i + k */
    int max_tokens;             /* longest answer (32) */
    int ground_truth;           /* judge the task file's ground truth instead of a model */
    const char *save_dir;       /* write every generated image there as ID[-k].png (NULL: no) */
    int height, width;          /* size of generated images of tasks without "image" (0: 32x32) */
    float position_tolerance;   /* edits: most pixels between expected and found centres (0: side * 0.15) */
    tuna_eval_progress_fn progress;
    void *progress_ctx;
} tuna_eval_options;

void tuna_eval_options_default(tuna_eval_options *o);

#define TUNA_EVAL_MAX_GROUPS 64

typedef struct {
    tuna_task_kind kind;
    char name[32];
    int correct, total, unjudged;
} tuna_eval_group;

typedef struct {
    int ok, judged;             /* judged = 0: no judge could decide */
    char *output;               /* owned: the answer (understand), or NULL */
    char *error;                /* owned: why the task could not run (then it counts nowhere), or NULL */
} tuna_eval_result;

typedef struct {
    int task_count;
    tuna_eval_result *results;  /* per task (generate: ok = every sample correct) */
    tuna_eval_group groups[TUNA_EVAL_MAX_GROUPS];
    int group_count;
    int reconstructions;
    double psnr_sum, ssim_sum;  /* PSNR capped at 100 dB (identical images) */
    int has_frechet;
    double frechet;
    int frechet_generated, frechet_real, feature_dims;
    double judge_test_accuracy; /* of the Fashion-MNIST classifier, as recorded (-1: none) */
    int ground_truth;
    double seconds;
    int errors;                 /* tasks that could not run (a bad image path, ...): the run went on */
} tuna_eval_report;

/* model/tokenizer may be NULL when o->ground_truth. A task that fails (an
 * unreadable image, a question too long for the context) is recorded in its
 * result's error and the run goes on; only running out of memory stops it. */
tuna_status tuna_eval_run(const tuna_model *model, const tuna_tokenizer *tokenizer, const tuna_judges *judges,
                          const tuna_eval_tasks *tasks, const tuna_eval_options *o, const tuna_threads *pool,
                          tuna_eval_report *report, tuna_error *err);
void tuna_eval_report_free(tuna_eval_report *r);

/* Accuracy of a section: the mean of its groups' accuracies (GenEval's overall);
 * -1 when the section has no judged task. */
double tuna_eval_section_score(const tuna_eval_report *r, tuna_task_kind kind);

void tuna_eval_report_print(FILE *out, const tuna_eval_report *r);
/* The report as JSON (malloc'd); tasks (may be NULL) adds per-task results. */
char *tuna_eval_report_json(const tuna_eval_report *r, const tuna_eval_tasks *tasks);

#endif
