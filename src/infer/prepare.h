/* Preparation of a request's inputs, shared by the CLI and the HTTP server:
 * where the model and its tokenizer are, loading both, and images decoded and
 * resized into the [3,H,W] tensors the model reads (SPEC section 4). Nothing
 * here prints: every failure is a tuna_status with its message in err. */
#ifndef TUNA_INFER_PREPARE_H
#define TUNA_INFER_PREPARE_H

#include "core/status.h"
#include "model/tuna2.h"
#include "text/tokenizer.h"

#include <stddef.h>

/* The model directory: the given one, else $TUNA_MODEL, else the bundled model
 * (models/tuna2-small next to the executable's directory, else in the working
 * directory). Returns given, the environment's value or buf. */
const char *tuna_model_dir(const char *given, char *buf, size_t cap);

/* The tokenizer of a model: the given path, else tokenizer.json (or
 * tokenizer.json.gz) in model_dir, else the bundled Qwen2.5 one. NULL when
 * none is found. Returns given or buf. */
const char *tuna_tokenizer_for_model(const char *given, const char *model_dir, char *buf, size_t cap);

/* Load the model at model_dir (tuna_model_load) and its tokenizer (as
 * tuna_tokenizer_for_model finds it). On failure nothing is left loaded. */
tuna_status tuna_load_model_and_tokenizer(const char *model_dir, const char *tokenizer_path, tuna_model *model,
                                          tuna_tokenizer **tokenizer, tuna_error *err);

/* "f32" or "bf16" -> TUNA_F32 / TUNA_BF16: the weight-matrix precision of
 * tuna_model_set_weight_dtype. */
tuna_status tuna_weight_dtype_from_name(const char *name, tuna_dtype *dtype, tuna_error *err);

/* How an input image is sized for the model. */
typedef struct {
    int height, width; /* > 0: exactly this size (resize + centre crop) */
    int native;        /* 1: the image's own size rounded down to the patch (for models that support it) */
} tuna_image_request;

/* The size an image of image_h x image_w is given to the model:
 *   an explicit size when asked;
 *   native: the image's size rounded down to a multiple of the patch (at
 *           least one patch a side);
 *   else the size the model was trained for (config "image_sizes") nearest
 *        the image's aspect ratio; a model that records none gets, for patch
 *        16, the 512-class buckets of SPEC section 4, else native. */
void tuna_pick_image_size(const tuna_config *c, int image_h, int image_w, const tuna_image_request *want,
                          int *height, int *width);

/* The size a generated image gets when none is asked for: the first trained
 * size; else 512x512 for patch 16; else 8 patches a side. */
void tuna_default_generation_size(const tuna_config *c, int *height, int *width);

/* The negative prompt of the unconditional branch when none is given: the one
 * the model records (config "negative_prompt"), else the reference's for
 * text-to-image (edit = 0) or editing (edit = 1). One rule for every command. */
const char *tuna_default_negative(const tuna_config *c, int edit);

/* Decode an image file, pick its size (tuna_pick_image_size; want may be
 * NULL), resize + centre-crop as the reference's inference transform, and
 * return it as a malloc'd [3,H,W] tensor in [-1, 1] (*chw, freed by the
 * caller). Fails when the size is not a positive multiple of the patch. */
tuna_status tuna_prepare_image(const char *path, const tuna_config *c, const tuna_image_request *want, float **chw,
                               int *height, int *width, tuna_error *err);

#endif
