/* Restoring a foundation checkpoint: find the parts that were re-initialised
 * in place (detection from the weights alone), and the damage itself, for
 * tests and benchmarks (`tuna restore damage`).
 *
 * Units are the parts a release would re-initialise as a whole: the LLM
 * layers (tuna.model.layers.N), the flow-head blocks (diffusion_head_a.N),
 * the final layer (diffusion_head_b), the time embedder (time_embed), the
 * patch embedding (vision_encoder), the token embeddings, the LM head and the
 * final LLM norm (mask_token, one vector, carries no evidence either way).
 *
 * The statistic (docs/restoration.md): a freshly initialised matrix has
 * i.i.d. entries, whatever their law (normal, kaiming- or xavier-uniform), and
 * the largest singular value of an i.i.d. m x n matrix with entries of rms s
 * is s (sqrt m + sqrt n) (the Marchenko-Pastur edge; universal). Training
 * builds correlated directions, so a trained matrix's top singular value
 * stands well above that edge. The spectral excess
 *     e(W) = sigma_max(W) / (rms(W) (sqrt m + sqrt n))
 * is ~1 for a fresh matrix, 0 for a zeroed one (adaLN zero-init) and > 1.4 for
 * every trained matrix measured. Vectors (norms, biases) count as fresh
 * evidence when constant (norms exactly 1, biases exactly 0). A unit's score
 * is the median of its tensors' evidence; it is damaged below the threshold. */
#ifndef TUNA_TRAIN_RESTORE_H
#define TUNA_TRAIN_RESTORE_H

#include "core/rng.h"
#include "model/config.h"
#include "model/tuna2.h"
#include "train/train_options.h"

#define TUNA_RESTORE_THRESHOLD 1.2 /* spectral excess between fresh (~1) and trained (> 1.4) */

typedef struct {
    char prefix[64];      /* "tuna.model.layers.3", "diffusion_head_a.1", "time_embed", ... */
    int damaged;
    double score;         /* median evidence: spectral excess of matrices, 0 for constant vectors */
    double margin;        /* |score - threshold| / threshold */
    int matrices, fresh_matrices;   /* fresh: excess < threshold */
    int vectors, constant_vectors;
    double min_excess, max_excess;  /* over the unit's matrices */
} tuna_restore_unit;

typedef struct {
    tuna_restore_unit *units; /* owned */
    int count;
    double threshold;
} tuna_restore_detection;

/* Score every unit of the model described by c; find(ctx, name) returns each
 * official tensor (any dtype the engine reads, block-quantised included).
 * Deterministic; reads at most 512 x 512 evenly spaced entries per matrix. */
tuna_status tuna_restore_detect(const tuna_config *c, tuna_tensor_lookup_fn find, void *ctx,
                                tuna_restore_detection *out, tuna_error *err);
void tuna_restore_detection_free(tuna_restore_detection *d);

/* Every unit's verdict, score, margin and evidence as a JSON array (cJSON
 * object, caller deletes), and the whole detection written atomically to path. */
struct cJSON *tuna_restore_units_json(const tuna_restore_detection *d);
tuna_status tuna_restore_detection_save(const char *path, const tuna_restore_detection *d, tuna_error *err);
/* root printed and written atomically to path, then deleted. */
tuna_status tuna_restore_json_save(const char *path, struct cJSON *root, tuna_error *err);

/* The spectral excess of a [rows, cols] f32 matrix (power iteration on W^T W). */
double tuna_spectral_excess(const float *w, int64_t rows, int64_t cols);

/* ---- damage: what a foundation release does, for tests and benchmarks ---- */

typedef enum {
    TUNA_INIT_NORMAL = 0,  /* matrices N(0, 0.02), biases 0, norms 1 (HF init) */
    TUNA_INIT_KAIMING,     /* PyTorch Linear default: W, b ~ U(+-1/sqrt(fan_in)), norms 1 */
    TUNA_INIT_XAVIER,      /* W ~ U(+-sqrt(6/(fan_in+fan_out))), biases 0, norms 1 (DiT blocks) */
    TUNA_INIT_ADALN_ZERO,  /* xavier, with adaLN weights and biases zeroed (DiT) */
    TUNA_INIT_MIXED,       /* each tensor draws one of the above */
    TUNA_INIT_RULE_COUNT
} tuna_init_rule;

const char *tuna_init_rule_name(tuna_init_rule r);
int tuna_init_rule_from_name(const char *name, tuna_init_rule *out); /* 1 on success */

/* Re-initialise in place every f32 tensor whose name starts with "prefix."
 * (or equals prefix) by rule; get(ctx, name) returns a writable f32 tensor
 * or NULL. Returns the number of tensors re-initialised (0: unknown prefix). */
typedef tuna_tensor *(*tuna_tensor_mut_lookup_fn)(void *ctx, const char *name);
int tuna_restore_damage(const tuna_config *c, const char *prefix, tuna_init_rule rule, tuna_rng *rng,
                        tuna_tensor_mut_lookup_fn get, void *ctx);

/* The unit prefixes of a model, in order (LLM layers, head blocks, then the
 * other parts); *count of them. The array is owned by the caller. */
tuna_status tuna_restore_units(const tuna_config *c, char (**prefixes)[64], int *count, tuna_error *err);

/* 1 when name belongs to unit prefix ("prefix." or exactly prefix). */
int tuna_restore_in_unit(const char *name, const char *prefix);

/* ---- the restoration run (restore_run.c) ---- */

#define TUNA_RESTORE_MAX_UNITS 64

typedef struct {
    tuna_train_options train;   /* tuna train's keys; train.model = the damaged model, trainer.output_dir = OUT */
    const char *layers[TUNA_RESTORE_MAX_UNITS]; /* given units (skip detection) */
    int layer_count;
    int neutralize;             /* 1: zero the damaged units' output projections and adaLN first */
    double max_minutes;         /* wall-clock budget of the training (0: max_steps only) */
    int probe_samples;          /* sequences of the probe loss (drawn with a seed of their own) */
} tuna_restore_options;

/* Restoration defaults on top of tuna train's: lr from the model's width
 * (learning_rate -1 until the model is known), warmup 10, no EMA, a
 * checkpoint every 50 steps (resumable), max_steps unbounded (the budget). */
void tuna_restore_options_default(tuna_restore_options *o);

typedef struct {
    char units[TUNA_RESTORE_MAX_UNITS][64]; /* restored unit prefixes */
    int unit_count;
    double learning_rate;
    int64_t trainable, steps, tokens;
    double seconds, cpu_seconds, peak_rss_mib; /* wall clock and CPU time (user + system) of the whole run */
    double master_mib, state_mib; /* f32 masters (trained units only) and gradient + AdamW state */
    int probe_samples;
    double loss_damaged, loss_start, loss_restored; /* probe loss: as given, after neutralising, at the end */
} tuna_restore_result;

/* Detect (or take) the units, neutralise them, train only them (everything
 * else frozen: no gradient or optimizer state) on the streams of o->train
 * within the budget, and write OUT: model.safetensors, config.json, the
 * tokenizer (copied from tokenizer_path when given), restore_report.json, and
 * run/ (the resumable training checkpoints: running again continues). */
tuna_status tuna_restore_run(tuna_restore_options *o, const tuna_tokenizer *tok, const char *tokenizer_path,
                             tuna_restore_result *r, tuna_error *err);

#endif
