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

/* Strict option values (docs/cli.md): the whole text must be a number of the
 * kind asked for, finite, inside [min, max]. Otherwise "tuna COMMAND: OPTION
 * TEXT: what is wrong" is printed and non-zero returned (a usage error). */
int cli_int(const char *command, const char *option, const char *text, long long min, long long max, int *out);
int cli_i64(const char *command, const char *option, const char *text, long long min, long long max,
            long long *out);
/* A seed: decimal digits only, 0 .. 2^64-1. */
int cli_seed(const char *command, const char *option, const char *text, unsigned long long *out);
int cli_float(const char *command, const char *option, const char *text, double min, double max, float *out);

/* Largest image side any command accepts (SPEC section 4's buckets are <= 1344). */
#define CLI_MAX_SIDE 4096

/* --size: "WxH" (width first, as -W/-H) or "native". native: *native = 1 and
 * the sizes are left alone. 0 on success, else prints and returns non-zero. */
int cli_size(const char *command, const char *text, int *width, int *height, int *native);
/* "WxH" (width first) -> height, width, each in [1, CLI_MAX_SIDE]. 0 on success; prints nothing. */
int cli_parse_size(const char *text, int *height, int *width);

/* tuna_prepare_image, printing the error. 0 on success. */
int cli_load_image(const char *path, const tuna_config *config, const tuna_image_request *want, float **chw,
                   int *height, int *width, const char *command);

/* An output path checked before any work: "-" (standard output), or a path
 * whose directory exists and is writable and which is not a directory. Prints
 * and returns non-zero otherwise. */
int cli_check_output(const char *command, const char *path);
/* The same for an output directory (created when missing). */
int cli_check_output_dir(const char *command, const char *dir);

/* Seconds on a monotonic clock (timing summaries). */
double cli_now(void);

/* Write a [3,H,W] tensor in [-1, 1] as PNG (atomically). 0 on success. */
int cli_save_image(const char *path, const float *chw, int height, int width, const char *command);

/* "out.png" with index k of n: out.png when n == 1, else out-k.png. */
void cli_indexed_path(const char *path, int k, int n, char *buf, size_t cap);

/* Progress on stderr: on a terminal a bar redrawn in place (\r), in a log
 * (stderr not a terminal) a plain line every 10% or 5 s. cli_progress_begin
 * sets it up; quiet: nothing is printed. */
typedef struct {
    const char *label;
    double total_seconds;
    int quiet, tty, last_percent;
    double last_print;
} cli_progress;
void cli_progress_begin(cli_progress *p, int quiet);
void cli_progress_step(void *ctx, int step, int steps, double step_seconds);

#endif
