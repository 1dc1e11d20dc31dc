/* `tuna init`: a freshly initialised checkpoint for training from scratch. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/mapped_file.h"
#include "model/layout.h"
#include "model/config_json.h"
#include "train/init.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "usage: tuna init --config config.json -o DIR [-t TOKENIZER] [--seed N]\n\n"
                 "Writes DIR/model.safetensors (F32), DIR/config.json and DIR/tokenizer.json[.gz]: a\n"
                 "complete Tuna-2 model of the given configuration (SPEC section 8) initialised as the\n"
                 "reference does (docs/training.md), ready for tuna train and every other command.\n"
                 "  -t, --tokenizer FILE  the tokenizer the model will use (default: tokenizer.json[.gz]\n"
                 "                        beside the config, else the bundled Qwen2.5 one); refused when\n"
                 "                        its ids do not fit the configuration's vocabulary\n"
                 "  --seed N              decides every value (default 0): the same seed gives the same file\n"
                 "  -q, --quiet           say nothing on success\n");
}

int cli_cmd_init(int argc, char **argv) {
    static const struct option longs[] = {{"config", required_argument, 0, 'c'}, {"output", required_argument, 0, 'o'},
                                          {"seed", required_argument, 0, 's'},   {"tokenizer", required_argument, 0, 't'},
                                          {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    const char *config_path = NULL, *out = NULL, *tokenizer = NULL;
    unsigned long long seed = 0;
    int c, quiet = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:o:t:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'o': out = optarg; break;
        case 't': tokenizer = optarg; break;
        case 'q': quiet = 1; break;
        case 's': if (cli_seed("init", "--seed", optarg, &seed)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "tuna init: see tuna init --help\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tuna init: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!config_path || !out) {
        fprintf(stderr, "tuna init: --config FILE and -o DIR are required\n");
        usage(stderr);
        return 2;
    }
    tuna_config config;
    tuna_error err = {0};
    if (tuna_config_load(config_path, &config, &err) != TUNA_OK) {
        fprintf(stderr, "tuna init: %s\n", err.message);
        return 1;
    }
    /* the tokenizer first: a model directory is written only when it will be complete */
    char dir[4096], buf[4096];
    snprintf(dir, sizeof dir, "%s", config_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    const char *tp = tuna_tokenizer_for_model(tokenizer, dir, buf, sizeof buf);
    tuna_tokenizer *tok = NULL;
    if (!tp) {
        fprintf(stderr, "tuna init: no tokenizer found: give one with -t FILE\n");
        return 1;
    }
    if (tuna_tokenizer_load(tp, &tok, &err) != TUNA_OK || tuna_tokenizer_check_model(tok, &config, &err) != TUNA_OK) {
        fprintf(stderr, "tuna init: %s: %s\n", tp, err.message);
        tuna_tokenizer_free(tok);
        return 1;
    }
    tuna_tokenizer_free(tok);
    size_t n = strlen(tp);
    char to[4200];
    snprintf(to, sizeof to, "%s/%s", out, n > 3 && !strcmp(tp + n - 3, ".gz") ? "tokenizer.json.gz" : "tokenizer.json");
    if (tuna_init_checkpoint(&config, seed, out, &err) != TUNA_OK || tuna_copy_file_atomic(tp, to, &err) != TUNA_OK) {
        fprintf(stderr, "tuna init: %s\n", err.message);
        return 1;
    }
    if (!quiet) fprintf(stderr, "wrote %s/model.safetensors, %s/config.json and %s\n", out, out, to);
    return 0;
}
