/* `tuna plot metrics.jsonl -o loss.png`: the loss curves of a training run. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "train/plot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out, "usage: tuna plot METRICS.jsonl -o OUT.png [-W/--width 64..8192] [-H/--height 64..8192] [--smooth A]\n"
                 "\n"
                 "Draws total loss (blue), CE (red) and flow (green) against the step.\n"
                 "--smooth A: exponential moving average with factor A in [0, 1) (default 0, raw).\n");
}

int cli_cmd_plot(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    tuna_plot_options opt = {900, 540, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int has_value = i + 1 < argc;
        if (!strcmp(a, "-o") && has_value) out = argv[++i];
        else if ((!strcmp(a, "--width") || !strcmp(a, "-W")) && has_value) {
            if (cli_int("plot", a, argv[++i], 64, 8192, &opt.width)) return 2;
        } else if ((!strcmp(a, "--height") || !strcmp(a, "-H")) && has_value) {
            if (cli_int("plot", a, argv[++i], 64, 8192, &opt.height)) return 2;
        } else if (!strcmp(a, "--smooth") && has_value) {
            float smooth;
            if (cli_float("plot", a, argv[++i], 0, 0.999999, &smooth)) return 2;
            opt.smooth = smooth;
        }
        else if (a[0] != '-' && !in) in = a;
        else {
            fprintf(stderr, "tuna plot: unexpected argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!in || !out) {
        usage(stderr);
        return 2;
    }
    if (cli_check_output("plot", out)) return 1;
    tuna_error err = {0};
    tuna_metrics m;
    tuna_image img = {0};
    if (tuna_metrics_read(in, &m, &err) != TUNA_OK) {
        fprintf(stderr, "tuna plot: %s\n", err.message);
        return 1;
    }
    int rc = 0;
    if (tuna_plot_render(&m, &opt, &img, &err) != TUNA_OK || tuna_image_write_png(out, &img, &err) != TUNA_OK) {
        fprintf(stderr, "tuna plot: %s\n", err.message);
        rc = 1;
    }
    tuna_image_free(&img);
    tuna_metrics_free(&m);
    return rc;
}
