/* `tuna forward`: the test contract of SPEC section 9. One forward pass over
 * one sequence with every input explicit, all in f32. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "infer/forward_batch.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna forward -m MODEL_DIR --in batch.safetensors --out result.safetensors [--grads]\n"
            "\n"
            "One forward pass in f32 (SPEC section 9). batch.safetensors holds input_ids I32 [L],\n"
            "images F32 [K,3,H,W] (or images.k F32 [3,H_k,W_k] when sizes differ), t F32 [K], and\n"
            "optionally mask U8 [K,N], labels I32 [L], targets, flow_images U8 [K].\n"
            "result.safetensors gets hidden, logits, x_pred (or x_pred.k), and loss_ce, loss_flow, loss\n"
            "when labels or targets are given.\n"
            "\n"
            "  -m, --model DIR     weights + config.json\n"
            "      --in FILE       the batch\n"
            "      --out FILE      the result (written atomically)\n"
            "      --grads         also write grad.NAME (F32) of every parameter: the gradient of loss\n"
            "      --threads N     threads (default: TUNA_THREADS or all cores)\n");
}

typedef struct {
    const char *model, *in, *out;
    int threads, grads;
} forward_options;

static int parse_options(int argc, char **argv, forward_options *o) {
    static const struct option longs[] = {{"model", required_argument, 0, 'm'}, {"in", required_argument, 0, 'i'},
                                          {"out", required_argument, 0, 'o'},   {"threads", required_argument, 0, 'T'}, {"grads", no_argument, 0, 'g'},
                                          {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'i': o->in = optarg; break;
        case 'o': o->out = optarg; break;
        case 'T': if (cli_int("forward", "--threads", optarg, 1, 4096, &o->threads)) return 2; break;
        case 'g': o->grads = 1; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "tuna forward: see tuna forward --help\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tuna forward: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->model || !o->in || !o->out) {
        fprintf(stderr, "tuna forward: -m, --in and --out are required\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

int cli_cmd_forward(int argc, char **argv) {
    forward_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    tuna_error err = {0};
    tuna_threads pool;
    tuna_threads_init(&pool, o.threads);
    tuna_model model;
    if (tuna_model_load(o.model, &model, &err) != TUNA_OK) {
        fprintf(stderr, "tuna forward: %s\n", err.message);
        return 1;
    }
    tuna_forward_batch batch;
    tuna_status s = tuna_forward_batch_open(o.in, model.config.image_channels, &batch, &err);
    if (s == TUNA_OK) {
        s = tuna_forward_batch_run(&model, &batch, &pool, o.out, o.grads, &err);
        tuna_forward_batch_close(&batch);
    }
    tuna_model_free(&model);
    if (s != TUNA_OK) {
        fprintf(stderr, "tuna forward: %s\n", err.message);
        return 1;
    }
    return 0;
}
