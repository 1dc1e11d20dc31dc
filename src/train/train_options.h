/* `tuna train` options: command-line flags and a JSON config file share one
 * set of keys, named as the reference's configs/train/train.yaml (training.*
 * and the data streams' fields). Flags may use '-' or '_' (--learning-rate =
 * --learning_rate); the JSON file is one flat object of the same keys (lists
 * for freeze/train_only); unknown keys are an error. Flags override the file. */
#ifndef TUNA_TRAIN_TRAIN_OPTIONS_H
#define TUNA_TRAIN_TRAIN_OPTIONS_H

#include "train/data.h"
#include "train/trainer.h"

#include <stdio.h>

#define TUNA_TRAIN_MAX_PATTERNS 64

typedef struct {
    const char *model;          /* -m / load_stage1_model: weights to start from */
    const char *tokenizer;      /* NULL: the bundled one */
    int threads;
    tuna_trainer_config trainer;
    tuna_data_config data;
    const char *freeze[TUNA_TRAIN_MAX_PATTERNS];
    int freeze_count;
    const char *train_only[TUNA_TRAIN_MAX_PATTERNS];
    int train_only_count;
    int data_noise_scale_set;   /* noise_scale given explicitly (else the model's) */
    char *owned[256];           /* strings owned by the options (from the JSON file) */
    int owned_count;
} tuna_train_options;

void tuna_train_options_default(tuna_train_options *o);
/* Apply one key = value (value as text). */
tuna_status tuna_train_options_set(tuna_train_options *o, const char *key, const char *value, tuna_error *err);
/* A JSON object of keys (strings, numbers, booleans, null, arrays of strings for patterns). */
tuna_status tuna_train_options_load_json(tuna_train_options *o, const char *text, size_t len, tuna_error *err);
/* argv after the command name; --config FILE is applied first wherever it appears.
 * Returns TUNA_OK, or an error (a bad flag or value); *help set for --help. */
tuna_status tuna_train_options_parse(tuna_train_options *o, int argc, char **argv, int *help, tuna_error *err);
void tuna_train_options_free(tuna_train_options *o);
/* The keys, one per line with a description, for --help. */
void tuna_train_options_print_keys(FILE *out);

#endif
