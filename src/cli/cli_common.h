/* Helpers shared by the `tuna` commands: printing wrappers around the library's
 * preparation of inputs (src/infer/prepare.h), option parsing, progress display. */
#ifndef TUNA_CLI_COMMON_H
#define TUNA_CLI_COMMON_H

#include "core/threads.h"
#include "infer/prepare.h"
#include "model/tuna2.h"
#include "text/tokenizer.h"

#include <stdio.h>

/* Load the model and its tokenizer (tuna_load_model_and_tokenizer). Prints the
 * error and returns non-zero on failure. */
int cli_load_model(const char *model_arg, const char *tokenizer_arg, tuna_model *model, tuna_tokenizer **tokenizer,
                   const char *command);

/* --dtype NAME: NULL keeps the checkpoint's dtypes; "f32" or "bf16" converts
 * every weight matrix (tuna_model_set_weight_dtype). Prints the error and
 * returns non-zero on failure (the model is left loaded; the caller frees it). */
int cli_apply_dtype(tuna_model *model, const char *dtype_name, const char *command);

/* "HxW" -> height, width. 0 on success. */
int cli_parse_size(const char *text, int *height, int *width);

/* tuna_prepare_image, printing the error. 0 on success. */
int cli_load_image(const char *path, int patch, int want_h, int want_w, float **chw, int *height, int *width,
                   const char *command);

/* Write a [3,H,W] tensor in [-1, 1] as PNG (atomically). 0 on success. */
int cli_save_image(const char *path, const float *chw, int height, int width, const char *command);

/* "out.png" with index k of n: out.png when n == 1, else out-k.png. */
void cli_indexed_path(const char *path, int k, int n, char *buf, size_t cap);

/* A progress bar on stderr: step, time per step, ETA. */
typedef struct {
    const char *label;
    double total_seconds;
} cli_progress;
void cli_progress_step(void *ctx, int step, int steps, double step_seconds);

#endif
