/* `tuna init`: a freshly initialised checkpoint for training from scratch. */
#include "cli/commands.h"
#include "model/config_json.h"
#include "train/init.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "usage: tuna init --config config.json -o DIR [--seed N]\n\n"
                 "Writes DIR/model.safetensors (F32) and DIR/config.json: a Tuna-2 model of the given\n"
                 "configuration (SPEC section 8) initialised as the reference does (docs/training.md).\n"
                 "--seed N (default 0) decides every value: the same seed gives the same file.\n");
}

int cli_cmd_init(int argc, char **argv) {
    static const struct option longs[] = {{"config", required_argument, 0, 'c'}, {"output", required_argument, 0, 'o'},
                                          {"seed", required_argument, 0, 's'},   {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    const char *config_path = NULL, *out = NULL;
    unsigned long long seed = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:o:s:h", longs, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'o': out = optarg; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config_path || !out) {
        usage(stderr);
        return 2;
    }
    tuna_config config;
    tuna_error err = {0};
    if (tuna_config_load(config_path, &config, &err) != TUNA_OK ||
        tuna_init_checkpoint(&config, seed, out, &err) != TUNA_OK) {
        fprintf(stderr, "tuna init: %s\n", err.message);
        return 1;
    }
    fprintf(stderr, "wrote %s/model.safetensors and %s/config.json\n", out, out);
    return 0;
}
