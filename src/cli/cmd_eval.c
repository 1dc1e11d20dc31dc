/* `tuna eval`: measure a checkpoint on a task file (docs/eval.md), or train the
 * Fashion-MNIST judge (--train-judge). */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/mapped_file.h"
#include "eval/eval.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_FASHION_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    const char *model, *tokenizer, *json, *judge_dir, *fashion_dir, *tasks;
    int threads, train_judge, epochs, hidden, quiet, max_per_group;
    unsigned kinds;
    tuna_eval_options eval;
} eval_cli;

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna eval [-m MODEL] TASKS.jsonl [--json FILE] [options]\n"
            "       tuna eval --ground-truth TASKS.jsonl      (no model: score the judges on the ground truth)\n"
            "       tuna eval --train-judge [--fashion-dir DIR] (train the Fashion-MNIST judge, in C)\n\n"
            "Understanding: exact match per question type. Generation and editing: images judged by\n"
            "independent detectors (scenes, text) and a Fashion-MNIST classifier; GenEval-style accuracy\n"
            "per category and a Frechet distance in the classifier's features. Reconstruction: PSNR, SSIM.\n\n"
            "  -m, --model DIR       model directory (default: $TUNA_MODEL or the bundled model)\n"
            "  -t, --tokenizer FILE  tokenizer.json (default: the model's)\n"
            "      --json FILE       also write the report (with per-task results) as JSON\n"
            "      --ground-truth    judge the task file's own images instead of running a model\n"
            "      --judge-dir DIR   judges' weights (default: models/judge)\n"
            "      --steps N         Euler steps (default 50)\n"
            "      --cfg S           text-to-image guidance (default 3; 0: off)\n"
            "      --edit-cfg S      editing guidance (default 2; 0: off)\n"
            "      --negative TEXT   unconditional prompt (default: the model's recorded one, else the\n"
            "                        reference's: the same default as generate and demo)\n"
            "  -n N                  images per generation prompt (default 1)\n"
            "      --seed N          seed (default 0): task i, image k uses noise seed + 1000 i + k\n"
            "      --max-tokens N    longest answer (default 32)\n"
            "      --size WxH        size of generated images when a task gives none (default 32x32)\n"
            "      --tolerance PX    edits: largest distance of an object from where it should be\n"
            "                        (default 15%% of the side)\n"
            "      --save DIR        write the generated images there\n"
            "      --only KINDS      run only these task kinds (comma list of understand, generate,\n"
            "                        edit, reconstruct)\n"
            "      --max-per-group N at most N tasks of each type / category / edit kind\n"
            "      --threads N       threads (default: TUNA_THREADS or all cores)\n"
            "  -q, --quiet           no progress on stderr\n"
            "judge training:\n"
            "      --train-judge     train models/judge/fashion_mlp.safetensors on the real images\n"
            "      --fashion-dir DIR Fashion-MNIST IDX files (default " DEFAULT_FASHION_DIR ")\n"
            "      --epochs N        (default 12)   --hidden N (default 64)\n");
}

/* "understand,edit" -> kind bits; 1 on an unknown name. */
static int parse_kinds(const char *text, unsigned *kinds) {
    *kinds = 0;
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, ",");
        int k = 0;
        while (k < TUNA_TASK_REFERENCE && !(strlen(tuna_task_kind_names[k]) == n && strncmp(p, tuna_task_kind_names[k], n) == 0)) k++;
        if (k == TUNA_TASK_REFERENCE) return 1;
        *kinds |= 1u << k;
        p += n + (p[n] == ',');
    }
    return *kinds == 0;
}

static int parse(int argc, char **argv, eval_cli *o) {
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},      {"tokenizer", required_argument, 0, 't'},
        {"json", required_argument, 0, 'j'},       {"ground-truth", no_argument, 0, 'G'},
        {"judge-dir", required_argument, 0, 'J'},  {"steps", required_argument, 0, 's'},
        {"cfg", required_argument, 0, 'c'},        {"edit-cfg", required_argument, 0, 'e'},
        {"negative", required_argument, 0, 'N'},   {"seed", required_argument, 0, 'r'},
        {"max-tokens", required_argument, 0, 'x'}, {"size", required_argument, 0, 'S'},
        {"tolerance", required_argument, 0, 'p'},  {"save", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 'T'},    {"quiet", no_argument, 0, 'q'},
        {"train-judge", no_argument, 0, 'R'},      {"fashion-dir", required_argument, 0, 'F'},
        {"epochs", required_argument, 0, 'E'},     {"hidden", required_argument, 0, 'H'},
        {"only", required_argument, 0, 'O'},       {"max-per-group", required_argument, 0, 'M'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:n:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'j': o->json = optarg; break;
        case 'G': o->eval.ground_truth = 1; break;
        case 'J': o->judge_dir = optarg; break;
        case 's': if (cli_int("eval", "--steps", optarg, 1, 10000, &o->eval.steps)) return 2; break;
        case 'c': if (cli_float("eval", "--cfg", optarg, 0, 100, &o->eval.cfg_generate)) return 2; break;
        case 'e': if (cli_float("eval", "--edit-cfg", optarg, 0, 100, &o->eval.cfg_edit)) return 2; break;
        case 'N': o->eval.negative = optarg; break;
        case 'n': if (cli_int("eval", "-n", optarg, 1, 1000, &o->eval.samples)) return 2; break;
        case 'r': if (cli_seed("eval", "--seed", optarg, &o->eval.seed)) return 2; break;
        case 'x': if (cli_int("eval", "--max-tokens", optarg, 1, 4096, &o->eval.max_tokens)) return 2; break;
        case 'S':
            if (cli_parse_size(optarg, &o->eval.height, &o->eval.width)) {
                fprintf(stderr, "tuna eval: --size '%s': use WxH, each side 1..%d\n", optarg, CLI_MAX_SIDE);
                return 2;
            }
            break;
        case 'p': if (cli_float("eval", "--tolerance", optarg, 0, 1e6, &o->eval.position_tolerance)) return 2; break;
        case 'o': o->eval.save_dir = optarg; break;
        case 'T': if (cli_int("eval", "--threads", optarg, 1, 4096, &o->threads)) return 2; break;
        case 'q': o->quiet = 1; break;
        case 'R': o->train_judge = 1; break;
        case 'F': o->fashion_dir = optarg; break;
        case 'E': if (cli_int("eval", "--epochs", optarg, 1, 1000, &o->epochs)) return 2; break;
        case 'H': if (cli_int("eval", "--hidden", optarg, 1, 4096, &o->hidden)) return 2; break;
        case 'O':
            if (parse_kinds(optarg, &o->kinds)) {
                fprintf(stderr, "tuna eval: --only wants a comma list of understand, generate, edit, reconstruct\n");
                return 2;
            }
            break;
        case 'M': if (cli_int("eval", "--max-per-group", optarg, 0, 1 << 30, &o->max_per_group)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "tuna eval: see tuna eval --help\n"); return 2;
        }
    }
    if (optind < argc) o->tasks = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "tuna eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->train_judge && !o->tasks) {
        fprintf(stderr, "tuna eval: a task file is required\n");
        usage(stderr);
        return 2;
    }
    if (o->train_judge && (o->tasks || o->model || o->json || o->eval.ground_truth)) {
        fprintf(stderr, "tuna eval: --train-judge takes no task file, -m, --json or --ground-truth\n");
        return 2;
    }
    if (o->eval.ground_truth && o->model) {
        fprintf(stderr, "tuna eval: --ground-truth runs no model: remove -m\n");
        return 2;
    }
    return -1;
}

/* models/judge next to the executable (build/../models/judge), else in the working directory. */
static const char *judge_dir(const char *given, char *buf, size_t cap) {
    if (given) return given;
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    struct stat st;
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        int len = snprintf(buf, cap, "%s/../models/judge", exe);
        if (len > 0 && (size_t)len < cap && stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) return buf;
    }
    return "models/judge";
}

static int load_idx_pair(const char *dir, const char *prefix, uint8_t **images, uint8_t **labels, int *n) {
    char path[4096];
    int dims[3], nd;
    tuna_error err = {0};
    *images = *labels = NULL;
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    if (tuna_idx_load(path, images, dims, &nd, &err) != TUNA_OK || nd != 3 || dims[1] != TUNA_FASHION_SIDE ||
        dims[2] != TUNA_FASHION_SIDE) {
        fprintf(stderr, "tuna eval: %s\n", err.message[0] ? err.message : "images are not N x 28 x 28");
        free(*images);
        return 1;
    }
    *n = dims[0];
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    if (tuna_idx_load(path, labels, dims, &nd, &err) != TUNA_OK || nd != 1 || dims[0] != *n) {
        fprintf(stderr, "tuna eval: %s\n", err.message[0] ? err.message : "labels do not match the images");
        free(*images), free(*labels);
        return 1;
    }
    for (int i = 0; i < *n; i++)
        if ((*labels)[i] >= TUNA_FASHION_CLASSES) {
            fprintf(stderr, "tuna eval: label %d out of range\n", (*labels)[i]);
            free(*images), free(*labels);
            return 1;
        }
    return 0;
}

static int train_judge(const eval_cli *o) {
    const char *dir = o->fashion_dir ? o->fashion_dir : DEFAULT_FASHION_DIR;
    uint8_t *xtr, *ytr, *xte, *yte;
    int ntr, nte;
    if (load_idx_pair(dir, "train", &xtr, &ytr, &ntr)) return 1;
    if (load_idx_pair(dir, "t10k", &xte, &yte, &nte)) {
        free(xtr), free(ytr);
        return 1;
    }
    tuna_fashion_mlp m;
    tuna_error err = {0};
    tuna_fashion_train_params p = {.epochs = o->epochs, .batch = 128, .learning_rate = 1e-3f,
                                   .seed = o->eval.seed, .verbose = !o->quiet};
    int rc = 0;
    if (tuna_fashion_mlp_init(&m, o->hidden, o->eval.seed + 1, &err) != TUNA_OK ||
        tuna_fashion_mlp_train(&m, xtr, ytr, ntr, &p, &err) != TUNA_OK) {
        fprintf(stderr, "tuna eval: %s\n", err.message);
        rc = 1;
    } else {
        m.train_accuracy = tuna_fashion_mlp_accuracy(&m, xtr, ytr, ntr);
        m.test_accuracy = tuna_fashion_mlp_accuracy(&m, xte, yte, nte);
        char buf[4096], path[4200];
        const char *jd = judge_dir(o->judge_dir, buf, sizeof buf);
        mkdir(jd, 0755);
        snprintf(path, sizeof path, "%s/fashion_mlp.safetensors", jd);
        if (tuna_fashion_mlp_save(path, &m, &err) != TUNA_OK) {
            fprintf(stderr, "tuna eval: %s\n", err.message);
            rc = 1;
        } else {
            printf("Fashion-MNIST judge (784-%d-10 MLP, %d epochs): train accuracy %.2f%% (%d images), "
                   "test accuracy %.2f%% (%d real test images)\nwrote %s\n",
                   m.hidden, o->epochs, 100 * m.train_accuracy, ntr, 100 * m.test_accuracy, nte, path);
        }
        tuna_fashion_mlp_free(&m);
    }
    free(xtr), free(ytr), free(xte), free(yte);
    return rc;
}

/* On a terminal a line redrawn in place; in a log a line every 10%. */
static void progress(void *ctx, int done, int total, const char *id) {
    int *last_tenth = ctx;
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\reval %d/%d %-40.40s", done, total, id);
        if (done == total) fputc('\n', stderr);
    } else if (done * 10 / total > *last_tenth || done == total) {
        *last_tenth = done * 10 / total;
        fprintf(stderr, "eval: %d/%d tasks\n", done, total);
    }
}

static tuna_status write_text(FILE *out, void *ctx, tuna_error *err) {
    const char *text = ctx;
    if (fputs(text, out) < 0 || fputc('\n', out) < 0) return tuna_fail(err, TUNA_ERR_IO, "write failed");
    return TUNA_OK;
}

static int evaluate(eval_cli *o) {
    tuna_error err = {0};
    /* outputs checked before any work, so a typo does not cost the whole run */
    if ((o->json && cli_check_output("eval", o->json)) || (o->eval.save_dir && cli_check_output_dir("eval", o->eval.save_dir)))
        return 1;
    tuna_eval_tasks tasks;
    if (tuna_eval_tasks_load_lenient(o->tasks, &tasks, &err) != TUNA_OK) {
        fprintf(stderr, "tuna eval: %s\n", err.message);
        return 1;
    }
    for (int i = 0; i < tasks.bad_count; i++) fprintf(stderr, "tuna eval: %s: %s (skipped)\n", o->tasks, tasks.bad_lines[i]);
    tuna_eval_tasks_filter(&tasks, o->kinds ? o->kinds : ~0u, o->max_per_group);
    if (tasks.count == 0) {
        fprintf(stderr, "tuna eval: no task left after --only / --max-per-group\n");
        tuna_eval_tasks_free(&tasks);
        return 1;
    }
    char buf[4096];
    tuna_judges judges;
    if (tuna_judges_load(judge_dir(o->judge_dir, buf, sizeof buf), &judges, &err) != TUNA_OK) {
        fprintf(stderr, "tuna eval: judges: %s\n", err.message);
        tuna_eval_tasks_free(&tasks);
        return 1;
    }
    if (!judges.has_fashion || !judges.has_text)
        fprintf(stderr, "tuna eval: warning: no %s judge in %s; those tasks count as unjudged\n",
                !judges.has_fashion ? "Fashion-MNIST" : "text", judge_dir(o->judge_dir, buf, sizeof buf));
    tuna_model model;
    tuna_tokenizer *tok = NULL;
    int have_model = 0, rc = 0;
    if (!o->eval.ground_truth) {
        if (cli_load_model(o->model, o->tokenizer, &model, &tok, "eval")) rc = 1;
        else have_model = 1;
    }
    tuna_threads pool;
    tuna_threads_init(&pool, o->threads);
    int last_tenth = -1;
    if (!o->quiet) {
        o->eval.progress = progress;
        o->eval.progress_ctx = &last_tenth;
    }
    tuna_eval_report report;
    if (!rc && tuna_eval_run(have_model ? &model : NULL, tok, &judges, &tasks, &o->eval, &pool, &report, &err) != TUNA_OK) {
        fprintf(stderr, "\ntuna eval: %s\n", err.message);
        rc = 1;
    }
    if (!rc) {
        printf("tuna eval: %s (%d tasks)%s%s\n", o->tasks, tasks.count, have_model ? ", model " : "",
               have_model ? tuna_model_dir(o->model, buf, sizeof buf) : "");
        tuna_eval_report_print(stdout, &report);
        for (int i = 0; i < report.task_count && i < tasks.count; i++)
            if (report.results[i].error) fprintf(stderr, "tuna eval: task %s failed: %s\n", tasks.tasks[i].id, report.results[i].error);
        if (report.errors || tasks.bad_count) {
            fprintf(stderr, "tuna eval: %d task%s failed and %d line%s of the task file were skipped: the scores "
                            "leave them out (exit status 1)\n",
                    report.errors, report.errors == 1 ? "" : "s", tasks.bad_count, tasks.bad_count == 1 ? "" : "s");
            rc = 1;
        }
        if (o->json) {
            char *json = tuna_eval_report_json(&report, &tasks);
            if (!json || tuna_write_file_atomic(o->json, write_text, json, &err) != TUNA_OK) {
                fprintf(stderr, "tuna eval: %s: %s\n", o->json, json ? err.message : "out of memory");
                rc = 1;
            }
            free(json);
        }
        tuna_eval_report_free(&report);
    }
    if (have_model) {
        tuna_tokenizer_free(tok);
        tuna_model_free(&model);
    }
    tuna_judges_free(&judges);
    tuna_eval_tasks_free(&tasks);
    return rc;
}

int cli_cmd_eval(int argc, char **argv) {
    eval_cli o;
    memset(&o, 0, sizeof o);
    tuna_eval_options_default(&o.eval);
    o.epochs = 12;
    o.hidden = 64;
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    return o.train_judge ? train_judge(&o) : evaluate(&o);
}
