/* `tuna inspect FILE_OR_DIR`: list a checkpoint's tensors, count parameters per
 * part of the model (SPEC section 1) and print the configuration it implies
 * (config.json beside the weights, or the official 7B values inferred from the
 * shapes; SPEC section 8). Exit 1 on a bad file, 2 on bad usage. */
#include "cli/commands.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "model/config_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *prefix;
    const char *part;
} parts[] = {
    {"tuna.", "LLM"},
    {"vision_encoder.", "patch embedding"},
    {"time_embed.", "time embedding"},
    {"mask_token", "mask token"},
    {"diffusion_head_", "flow head"},
};
#define PART_COUNT (sizeof parts / sizeof parts[0])

static size_t part_of(const char *name) {
    for (size_t i = 0; i < PART_COUNT; i++)
        if (strncmp(name, parts[i].prefix, strlen(parts[i].prefix)) == 0) return i;
    return PART_COUNT; /* other */
}

static void print_usage(FILE *out) {
    fprintf(out, "usage: tuna inspect FILE_OR_DIR [--quiet]\n"
                 "  FILE_OR_DIR: model.safetensors, model.safetensors.index.json, a .pt/.pth/.bin,\n"
                 "               or a directory holding one of them (and optionally config.json)\n"
                 "  --quiet      totals and configuration only, no per-tensor lines\n");
}

int cli_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { print_usage(stdout); return 0; }
        if (strcmp(argv[i], "--quiet") == 0) { quiet = 1; continue; }
        if (argv[i][0] == '-' || path) { print_usage(stderr); return 2; }
        path = argv[i];
    }
    if (!path) { print_usage(stderr); return 2; }

    tuna_error err = {0};
    tuna_checkpoint *ck;
    if (tuna_checkpoint_open(path, &ck, &err) != TUNA_OK) {
        fprintf(stderr, "tuna inspect: %s\n", err.message);
        return 1;
    }
    size_t n = tuna_checkpoint_count(ck);
    printf("%s: %zu tensors (%s)\n", path, n, tuna_checkpoint_format(ck));
    int64_t params[PART_COUNT + 1] = {0};
    size_t bytes[PART_COUNT + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        const char *name = tuna_checkpoint_name(ck, i);
        const tuna_tensor *t = tuna_checkpoint_tensor(ck, i);
        char shape[160];
        size_t nbytes = tuna_tensor_nbytes(t);
        if (!quiet)
            printf("  %-60s %-5s %-24s %zu bytes\n", name, tuna_dtype_name(t->dtype),
                   tuna_tensor_shape_string(t, shape, sizeof shape), nbytes);
        size_t p = part_of(name);
        params[p] += tuna_tensor_numel(t);
        bytes[p] += nbytes;
    }
    int64_t total = 0;
    size_t total_bytes = 0;
    printf("parameters:\n");
    for (size_t p = 0; p <= PART_COUNT; p++) {
        printf("  %-16s %15lld  (%.3f B, %zu bytes)\n", p < PART_COUNT ? parts[p].part : "other", (long long)params[p],
               (double)params[p] / 1e9, bytes[p]);
        total += params[p];
        total_bytes += bytes[p];
    }
    printf("  %-16s %15lld  (%.3f B, %zu bytes)\n", "total", (long long)total, (double)total / 1e9, total_bytes);

    tuna_config config;
    const char *source = NULL;
    int rc = 0;
    int64_t tuna_params = total - params[PART_COUNT];
    if (tuna_config_for_checkpoint(ck, &config, &source, &err) != TUNA_OK) {
        if (tuna_params == 0 && n > 0) {
            /* no Tuna-2 tensor at all: a plain state dict, listed above; nothing to derive */
            printf("configuration: none (not a Tuna-2 checkpoint: no tuna.*, vision_encoder.*, time_embed.*, "
                   "mask_token or diffusion_head_* tensors)\n");
        } else {
            fprintf(stderr, "tuna inspect: configuration: %s\n", err.message);
            rc = 1;
        }
    } else {
        char *json;
        if (tuna_config_to_json(&config, &json, &err) == TUNA_OK) {
            printf("configuration (%s; every required tensor present with the right shape):\n%s", source, json);
            free(json);
        }
    }
    tuna_checkpoint_close(ck);
    return rc;
}
