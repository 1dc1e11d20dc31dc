/* config.json of SPEC section 8 <-> tuna_config (model/config.h), and the
 * check of a checkpoint's tensor shapes against a configuration.
 *
 * Parsing is strict: unknown keys (at every level) and wrong types are errors;
 * "patch_norm_eps": null selects the compute dtype's machine epsilon. Missing
 * keys are errors too, except "architecture" (must be "tuna2" when present) and
 * "head.text_rope_scaling" (null or absent = no scaling). */
#ifndef TUNA_MODEL_CONFIG_JSON_H
#define TUNA_MODEL_CONFIG_JSON_H

#include "core/status.h"
#include "io/checkpoint.h"
#include "model/config.h"

tuna_status tuna_config_parse_json(const char *text, size_t len, tuna_config *c, tuna_error *err);
tuna_status tuna_config_load(const char *path, tuna_config *c, tuna_error *err);

/* Sizes that make no sense (zero heads, head_dim not matching, ...). */
tuna_status tuna_config_validate(const tuna_config *c, tuna_error *err);

/* Serialise (malloc'd, NUL-terminated; caller frees) / write atomically. */
tuna_status tuna_config_to_json(const tuna_config *c, char **json, tuna_error *err);
tuna_status tuna_config_save(const char *path, const tuna_config *c, tuna_error *err);

/* The tensors a configuration requires, with their shapes (torch layout:
 * Linear weight [out, in]). tuna.lm_head.weight is left out when tied. */
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
} tuna_expected_tensor;
tuna_status tuna_config_expected_tensors(const tuna_config *c, tuna_expected_tensor **list, size_t *count,
                                         tuna_error *err);

/* Every required tensor present with the right shape, and no other tensor
 * (one the configuration does not use means the config does not describe the
 * weights); the first mismatch or unexpected tensor is reported by name.
 * Dtypes must be floating (F32/BF16/F16; matrices may also be
 * block-quantised: Q8_0, Q4_K, ...). *extra (may be NULL) is set to 0. */
tuna_status tuna_config_verify_checkpoint(const tuna_config *c, const tuna_checkpoint *ck, size_t *extra,
                                          tuna_error *err);

/* 1 if the shapes say "official Tuna-2 7B" (embedding [151669,3584], 28 LLM
 * layers, 16 head blocks, and the attention/MLP/output shapes of that model). */
int tuna_checkpoint_is_official_7b(const tuna_checkpoint *ck);

/* The configuration for a checkpoint: config.json in its directory when
 * present, else the official 7B values when the shapes are official, else an
 * error asking for config.json. Then verified against the shapes.
 * *source (may be NULL) is set to "config.json" or "official 7B (from shapes)". */
tuna_status tuna_config_for_checkpoint(const tuna_checkpoint *ck, tuna_config *c, const char **source,
                                       tuna_error *err);

#endif
