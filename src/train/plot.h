/* `tuna plot`: loss curves of a metrics.jsonl (src/train/trainer.c) drawn
 * into an RGB image: axes, a grid with numeric labels (a built-in 5x7 font),
 * total loss (blue), CE (red) and flow (green) against the step, and a legend
 * of coloured boxes. Null values (a step without CE or flow) break the line. */
#ifndef TUNA_TRAIN_PLOT_H
#define TUNA_TRAIN_PLOT_H

#include "core/status.h"
#include "io/image.h"

typedef struct {
    int width, height;  /* 900 x 540 */
    double smooth;      /* EMA smoothing of each curve, 0 = raw (0 <= smooth < 1) */
} tuna_plot_options;

typedef struct {
    double *step, *loss, *ce, *flow; /* NAN where absent */
    int count;
} tuna_metrics;

tuna_status tuna_metrics_read(const char *path, tuna_metrics *m, tuna_error *err);
void tuna_metrics_free(tuna_metrics *m);

tuna_status tuna_plot_render(const tuna_metrics *m, const tuna_plot_options *opt, tuna_image *img, tuna_error *err);

#endif
