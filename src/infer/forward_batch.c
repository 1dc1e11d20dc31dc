#include "infer/forward_batch.h"
#include "core/tensor.h"
#include "model/forward.h"
#include "model/gradients.h"
#include "model/train_step.h"
#include "ops/ops.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>

static tuna_status require_dtype(const tuna_tensor *t, tuna_dtype dtype, const char *name, tuna_error *err) {
    if (t->dtype != dtype)
        return tuna_fail(err, TUNA_ERR_FORMAT, "batch tensor '%s' is %s, expected %s", name, tuna_dtype_name(t->dtype),
                         tuna_dtype_name(dtype));
    return TUNA_OK;
}

static tuna_status read_ids(tuna_forward_batch *b, tuna_error *err) {
    const tuna_tensor *ids = tuna_safetensors_find(&b->file, "input_ids");
    if (!ids) return tuna_fail(err, TUNA_ERR_FORMAT, "batch has no 'input_ids'");
    TUNA_TRY(require_dtype(ids, TUNA_I32, "input_ids", err));
    if (ids->ndim != 1 || ids->shape[0] < 1 || ids->shape[0] > (1 << 24))
        return tuna_fail(err, TUNA_ERR_FORMAT, "'input_ids' must be I32 [L] with 1 <= L <= 2^24");
    b->input_ids = ids->data;
    b->length = (int)ids->shape[0];
    const tuna_tensor *labels = tuna_safetensors_find(&b->file, "labels");
    if (labels) {
        TUNA_TRY(require_dtype(labels, TUNA_I32, "labels", err));
        if (labels->ndim != 1 || labels->shape[0] != b->length)
            return tuna_fail(err, TUNA_ERR_FORMAT, "'labels' must be I32 [%d] like input_ids", b->length);
        b->labels = labels->data;
    }
    return TUNA_OK;
}

/* images [K,C,H,W] (with targets [K,C,H,W], mask [K,N]) */
static tuna_status read_stacked_images(tuna_forward_batch *b, const tuna_tensor *images, tuna_error *err) {
    TUNA_TRY(require_dtype(images, TUNA_F32, "images", err));
    if (images->ndim != 4 || images->shape[1] != b->channels || images->shape[0] > TUNA_BATCH_MAX_IMAGES ||
        images->shape[2] < 1 || images->shape[3] < 1 || images->shape[2] > 65536 || images->shape[3] > 65536)
        return tuna_fail(err, TUNA_ERR_FORMAT, "'images' must be F32 [K,%d,H,W] with K <= %d", b->channels,
                         TUNA_BATCH_MAX_IMAGES);
    b->stacked = 1;
    b->image_count = (int)images->shape[0];
    size_t per_image = (size_t)b->channels * images->shape[2] * images->shape[3];
    const tuna_tensor *targets = tuna_safetensors_find(&b->file, "targets");
    if (targets) {
        TUNA_TRY(require_dtype(targets, TUNA_F32, "targets", err));
        if (targets->ndim != 4 || memcmp(targets->shape, images->shape, 4 * sizeof(int64_t)))
            return tuna_fail(err, TUNA_ERR_FORMAT, "'targets' must have the shape of 'images'");
    }
    const tuna_tensor *mask = tuna_safetensors_find(&b->file, "mask");
    if (mask) {
        TUNA_TRY(require_dtype(mask, TUNA_U8, "mask", err));
        if (mask->ndim != 2 || mask->shape[0] != images->shape[0])
            return tuna_fail(err, TUNA_ERR_FORMAT, "'mask' must be U8 [K,N]");
    }
    for (int k = 0; k < b->image_count; k++) {
        b->heights[k] = (int)images->shape[2];
        b->widths[k] = (int)images->shape[3];
        b->images[k] = (const float *)images->data + k * per_image;
        if (targets) b->targets[k] = (const float *)targets->data + k * per_image;
        if (mask) b->masks[k] = (const uint8_t *)mask->data + k * mask->shape[1];
    }
    return TUNA_OK;
}

/* images.k [C,H,W] (targets.k, mask.k [N]) for k = 0, 1, ... */
static tuna_status read_image_list(tuna_forward_batch *b, tuna_error *err) {
    char name[32];
    for (int k = 0; k < TUNA_BATCH_MAX_IMAGES; k++) {
        snprintf(name, sizeof name, "images.%d", k);
        const tuna_tensor *img = tuna_safetensors_find(&b->file, name);
        if (!img) break;
        TUNA_TRY(require_dtype(img, TUNA_F32, name, err));
        if (img->ndim != 3 || img->shape[0] != b->channels || img->shape[1] < 1 || img->shape[2] < 1 ||
            img->shape[1] > 65536 || img->shape[2] > 65536)
            return tuna_fail(err, TUNA_ERR_FORMAT, "'%s' must be F32 [%d,H,W]", name, b->channels);
        b->heights[k] = (int)img->shape[1];
        b->widths[k] = (int)img->shape[2];
        b->images[k] = img->data;
        snprintf(name, sizeof name, "targets.%d", k);
        const tuna_tensor *target = tuna_safetensors_find(&b->file, name);
        if (target) {
            TUNA_TRY(require_dtype(target, TUNA_F32, name, err));
            if (target->ndim != 3 || memcmp(target->shape, img->shape, 3 * sizeof(int64_t)))
                return tuna_fail(err, TUNA_ERR_FORMAT, "'%s' must have the shape of images.%d", name, k);
            b->targets[k] = target->data;
        }
        snprintf(name, sizeof name, "mask.%d", k);
        const tuna_tensor *mask = tuna_safetensors_find(&b->file, name);
        if (mask) {
            TUNA_TRY(require_dtype(mask, TUNA_U8, name, err));
            b->masks[k] = mask->data;
        }
        b->image_count = k + 1;
    }
    return TUNA_OK;
}

static tuna_status read_per_image_scalars(tuna_forward_batch *b, tuna_error *err) {
    if (b->image_count == 0) return TUNA_OK;
    const tuna_tensor *t = tuna_safetensors_find(&b->file, "t");
    if (!t) return tuna_fail(err, TUNA_ERR_FORMAT, "batch has images but no 't'");
    TUNA_TRY(require_dtype(t, TUNA_F32, "t", err));
    if (t->ndim != 1 || t->shape[0] != b->image_count)
        return tuna_fail(err, TUNA_ERR_FORMAT, "'t' must be F32 [%d]", b->image_count);
    b->t = t->data;
    const tuna_tensor *flow = tuna_safetensors_find(&b->file, "flow_images");
    if (flow) {
        TUNA_TRY(require_dtype(flow, TUNA_U8, "flow_images", err));
        if (flow->ndim != 1 || flow->shape[0] != b->image_count)
            return tuna_fail(err, TUNA_ERR_FORMAT, "'flow_images' must be U8 [%d]", b->image_count);
        b->flow_images = flow->data;
        for (int k = 0; k < b->image_count; k++)
            if (b->flow_images[k] && !b->targets[k])
                return tuna_fail(err, TUNA_ERR_FORMAT, "image %d is in the flow loss but has no target", k);
    }
    return TUNA_OK;
}

tuna_status tuna_forward_batch_open(const char *path, int channels, tuna_forward_batch *b, tuna_error *err) {
    memset(b, 0, sizeof *b);
    b->channels = channels;
    tuna_status s = tuna_safetensors_open(path, &b->file, err);
    if (s == TUNA_OK) s = read_ids(b, err);
    if (s == TUNA_OK) {
        const tuna_tensor *images = tuna_safetensors_find(&b->file, "images");
        s = images ? read_stacked_images(b, images, err) : read_image_list(b, err);
    }
    if (s == TUNA_OK) s = read_per_image_scalars(b, err);
    if (s != TUNA_OK) {
        tuna_forward_batch_close(b);
        return tuna_fail_context(err, s, "reading batch %s", path);
    }
    return TUNA_OK;
}

void tuna_forward_batch_close(tuna_forward_batch *b) {
    tuna_safetensors_close(&b->file);
    memset(b, 0, sizeof *b);
}

/* ---- running a batch --------------------------------------------------- */

/* Everything the result file holds; freed by result_free. */
typedef struct {
    tuna_tensor *tensors;
    char **names;
    size_t count, capacity;
} result_set;

static tuna_status result_reserve(result_set *rs, tuna_error *err) {
    if (rs->count < rs->capacity) return TUNA_OK;
    size_t capacity = rs->capacity ? 2 * rs->capacity : 64;
    tuna_tensor *tensors = realloc(rs->tensors, capacity * sizeof *tensors);
    if (tensors) rs->tensors = tensors;
    char **names = realloc(rs->names, capacity * sizeof *names);
    if (names) rs->names = names;
    if (!tensors || !names) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    rs->capacity = capacity;
    return TUNA_OK;
}

static tuna_status result_add(result_set *rs, const char *name, int ndim, const int64_t *shape, float **data,
                              tuna_error *err) {
    TUNA_TRY(result_reserve(rs, err));
    tuna_tensor *t = &rs->tensors[rs->count];
    TUNA_TRY(tuna_tensor_alloc(t, TUNA_F32, ndim, shape, err));
    rs->names[rs->count] = strdup(name);
    if (!rs->names[rs->count]) {
        tuna_tensor_free(t);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    rs->count++;
    *data = t->data;
    return TUNA_OK;
}

static void result_free(result_set *rs) {
    for (size_t i = 0; i < rs->count; i++) {
        tuna_tensor_free(&rs->tensors[i]);
        free(rs->names[i]);
    }
    free(rs->tensors);
    free(rs->names);
}

/* --grads: grad.NAME for every parameter, from the training step (SPEC section 9). */
static tuna_status add_gradients(result_set *rs, const tuna_model *m, const tuna_forward_batch *b,
                                 const tuna_sequence *seq, const tuna_threads *pool, tuna_error *err) {
    tuna_gradients grads;
    TUNA_TRY(tuna_gradients_init(&grads, &m->config, NULL, NULL, err));
    tuna_train_example ex = {.sequence = seq, .labels = b->labels, .targets = b->targets, .flow_images = b->flow_images};
    int has_targets = 0;
    for (int k = 0; k < b->image_count; k++) has_targets |= b->targets[k] != NULL;
    if (!has_targets) ex.targets = NULL;
    tuna_losses losses;
    tuna_backend be = tuna_backend_cpu(pool);
    tuna_status s = tuna_model_loss_and_gradients(m, &grads.model, &ex, 1.0f, NULL, &be, NULL, &losses, err);
    for (size_t i = 0; s == TUNA_OK && i < grads.count; i++) {
        char name[160];
        snprintf(name, sizeof name, "grad.%s", grads.list[i].name);
        float *data;
        s = result_add(rs, name, grads.tensors[i].ndim, grads.tensors[i].shape, &data, err);
        if (s == TUNA_OK) memcpy(data, grads.tensors[i].data, tuna_tensor_nbytes(&grads.tensors[i]));
    }
    tuna_gradients_free(&grads);
    return s;
}

/* Each given mask must have one entry per patch of its image. */
static tuna_status check_masks(const tuna_forward_batch *b, const tuna_sequence *seq, tuna_error *err) {
    for (int k = 0; k < b->image_count; k++) {
        if (!b->masks[k]) continue;
        char name[32];
        snprintf(name, sizeof name, b->stacked ? "mask" : "mask.%d", k);
        const tuna_tensor *m = tuna_safetensors_find(&b->file, name);
        int64_t n = m->shape[m->ndim - 1], patches = seq->segments[k].length - 1;
        if ((b->stacked ? m->ndim != 2 : m->ndim != 1) || n != patches)
            return tuna_fail(err, TUNA_ERR_INVALID, "'%s' must hold %lld entries per image", name, (long long)patches);
    }
    return TUNA_OK;
}

/* x_pred of every image, unpatchified from the head rows of its segment. */
static tuna_status add_images(result_set *rs, const tuna_forward_batch *b, const tuna_sequence *seq,
                              const float *head_out, int out_width, float **x_pred, tuna_error *err) {
    float *stacked = NULL;
    if (b->stacked && b->image_count > 0) {
        int64_t shape[4] = {b->image_count, b->channels, b->heights[0], b->widths[0]};
        TUNA_TRY(result_add(rs, "x_pred", 4, shape, &stacked, err));
    }
    for (int k = 0; k < b->image_count; k++) {
        size_t plane = (size_t)b->channels * b->heights[k] * b->widths[k];
        if (stacked) {
            x_pred[k] = stacked + k * plane;
        } else {
            char name[32];
            snprintf(name, sizeof name, "x_pred.%d", k);
            int64_t shape[3] = {b->channels, b->heights[k], b->widths[k]};
            TUNA_TRY(result_add(rs, name, 3, shape, &x_pred[k], err));
        }
        const float *slots = head_out + (size_t)(seq->segments[k].offset + 1) * out_width;
        tuna_unpatchify(x_pred[k], slots, b->channels, b->heights[k], b->widths[k]);
    }
    return TUNA_OK;
}

static tuna_status add_losses(result_set *rs, const tuna_forward_batch *b, const tuna_config *c,
                              const float *logits, float *const *x_pred, tuna_error *err) {
    int has_targets = 0;
    for (int k = 0; k < b->image_count; k++) has_targets |= b->targets[k] != NULL;
    if (!b->labels && !has_targets) return TUNA_OK;
    float ce = 0, flow = 0;
    if (b->labels) {
        int invalid = 0;
        ce = tuna_cross_entropy_shifted_forward(logits, b->labels, b->length, c->vocab_size, NULL, &invalid);
        if (invalid) return tuna_fail(err, TUNA_ERR_INVALID, "%d labels lie outside the vocabulary", invalid);
    }
    if (has_targets && b->flow_images) {
        long count[TUNA_BATCH_MAX_IMAGES];
        for (int k = 0; k < b->image_count; k++) count[k] = (long)b->channels * b->heights[k] * b->widths[k];
        flow = tuna_flow_loss_forward((const float *const *)x_pred, b->targets, b->t, b->flow_images, count,
                                      b->image_count, (float)c->t_eps);
    }
    int64_t one = 1;
    float *p;
    TUNA_TRY(result_add(rs, "loss_ce", 1, &one, &p, err));
    *p = ce;
    TUNA_TRY(result_add(rs, "loss_flow", 1, &one, &p, err));
    *p = flow;
    TUNA_TRY(result_add(rs, "loss", 1, &one, &p, err));
    *p = ce + flow;
    return TUNA_OK;
}

tuna_status tuna_forward_batch_run(const tuna_model *m, const tuna_forward_batch *b, const tuna_threads *pool,
                               const char *out_path, int with_gradients, tuna_error *err) {
    const tuna_config *c = &m->config;
    tuna_sequence seq = {.ids = b->input_ids, .length = b->length, .image_count = b->image_count,
                         .images = b->images, .t = b->t, .masks = b->masks};
    int found = 0;
    TUNA_TRY(tuna_find_segments(b->input_ids, b->length, c, b->image_count, b->heights, b->widths, &seq.segments,
                                &found, err));
    tuna_status s = check_masks(b, &seq, err);
    if (s != TUNA_OK) {
        free(seq.segments);
        return s;
    }
    tuna_kv_cache cache;
    s = tuna_kv_cache_init(&cache, c, b->length, b->image_count > 0, err);
    if (s != TUNA_OK) {
        free(seq.segments);
        return s;
    }
    result_set rs = {0};
    int out_width = c->patch_size * c->patch_size * c->image_channels;
    float *hidden = NULL, *logits = NULL, *head_out = NULL;
    int64_t hidden_shape[2] = {b->length, c->hidden_size}, logits_shape[2] = {b->length, c->vocab_size};
    s = result_add(&rs, "hidden", 2, hidden_shape, &hidden, err);
    if (s == TUNA_OK) s = result_add(&rs, "logits", 2, logits_shape, &logits, err);
    if (s == TUNA_OK && b->image_count > 0) {
        head_out = malloc(sizeof(float) * (size_t)b->length * out_width);
        if (!head_out) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    tuna_forward_request request = {.sequence = &seq, .cache = &cache, .row_begin = 0, .row_end = b->length,
                                     .run_head = b->image_count > 0, .logits_mode = TUNA_LOGITS_ALL,
                                     .hidden = hidden, .logits = logits, .head_out = head_out};
    tuna_backend be = tuna_backend_cpu(pool);
    if (s == TUNA_OK) s = tuna_model_forward(m, &request, 1, &be, NULL, err);
    float *x_pred[TUNA_BATCH_MAX_IMAGES] = {0};
    if (s == TUNA_OK && head_out) s = add_images(&rs, b, &seq, head_out, out_width, x_pred, err);
    if (s == TUNA_OK) s = add_losses(&rs, b, c, logits, x_pred, err);
    if (s == TUNA_OK && with_gradients) s = add_gradients(&rs, m, b, &seq, pool, err);
    if (s == TUNA_OK)
        s = tuna_safetensors_write(out_path, rs.tensors, (const char *const *)rs.names, rs.count, NULL, err);
    result_free(&rs);
    free(head_out);
    tuna_kv_cache_free(&cache);
    free(seq.segments);
    return s;
}

