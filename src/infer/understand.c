#include "infer/understand.h"
#include "model/layout.h"
#include "model/forward.h"

#include <stdlib.h>
#include <string.h>

tuna_status tuna_chat_build_ids(const tuna_model *m, const tuna_tokenizer *tok, const tuna_chat_message *messages,
                                size_t count, int add_generation_prompt, const int *heights, const int *widths,
                                int image_count, int32_t **ids_out, int *length, tuna_error *err) {
    tuna_chat_options opts = {.default_system = NULL, .add_generation_prompt = add_generation_prompt};
    tuna_chat_tokens chat;
    memset(&chat, 0, sizeof chat);
    TUNA_TRY(tuna_chat_encode(tok, messages, count, &opts, &chat, err));
    tuna_status s = TUNA_OK;
    if ((int)chat.n_images != image_count)
        s = tuna_fail(err, TUNA_ERR_INVALID, "the conversation has %d <image> tokens but %d images",
                      (int)chat.n_images, image_count);
    /* each <image> token becomes the segment of its image */
    int *patches = s == TUNA_OK ? malloc(sizeof(int) * (size_t)(image_count > 0 ? image_count : 1)) : NULL;
    if (s == TUNA_OK && !patches) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    for (int k = 0; s == TUNA_OK && k < image_count; k++)
        s = tuna_layout_patches(heights[k], widths[k], m->config.patch_size, &patches[k], err);
    tuna_ids ids = {0};
    tuna_layout l = {&m->config.tokens, &ids, NULL};
    if (s == TUNA_OK) s = tuna_layout_chat(&l, chat.ids.data, chat.ids.len, chat.image_pos, chat.n_images, patches, err);
    free(patches);
    tuna_chat_tokens_free(&chat);
    if (s != TUNA_OK) {
        tuna_ids_free(&ids);
        return s;
    }
    *ids_out = ids.data; /* the vector's buffer is a plain malloc'd array: the caller frees it */
    *length = (int)ids.len;
    return TUNA_OK;
}

tuna_status tuna_chat_session_init(tuna_chat_session *s, const tuna_model *m, const tuna_tokenizer *tok, int capacity,
                                   const tuna_threads *pool, tuna_error *err) {
    memset(s, 0, sizeof *s);
    s->model = m;
    s->tokenizer = tok;
    s->backend = tuna_backend_cpu(pool);
    tuna_workspace_init(&s->workspace, &s->backend);
    s->ids = malloc(sizeof(int32_t) * (size_t)(capacity > 0 ? capacity : 1));
    if (!s->ids) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    s->stop_ids[0] = m->config.tokens.eos;
    s->stop_ids[1] = tuna_tokenizer_token_id(tok, "<|endoftext|>");
    tuna_status st = tuna_kv_cache_init(&s->cache, &m->config, capacity, 0, err);
    if (st != TUNA_OK) tuna_chat_session_free(s);
    return st;
}

void tuna_chat_session_free(tuna_chat_session *s) {
    tuna_kv_cache_free(&s->cache);
    tuna_workspace_free(&s->workspace);
    for (int k = 0; k < s->image_count; k++) free(s->images[k]);
    free(s->segments);
    free(s->ids);
    memset(s, 0, sizeof *s);
}

tuna_status tuna_chat_session_add_image(tuna_chat_session *s, const float *chw, int height, int width,
                                        tuna_error *err) {
    if (s->image_count >= TUNA_CHAT_MAX_IMAGES)
        return tuna_fail(err, TUNA_ERR_LIMIT, "at most %d images per conversation", TUNA_CHAT_MAX_IMAGES);
    size_t n = (size_t)s->model->config.image_channels * height * width;
    float *copy = malloc(sizeof(float) * n);
    if (!copy) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    memcpy(copy, chw, sizeof(float) * n);
    int k = s->image_count++;
    s->images[k] = copy;
    s->heights[k] = height;
    s->widths[k] = width;
    s->t[k] = 1.0f; /* understanding reads clean images (SPEC section 5: no noise at inference) */
    return TUNA_OK;
}

/* Cached rows that stay valid: the common prefix of old and new ids, cut back
 * to the start of an image segment it would split (segments attend both ways). */
static int reusable_prefix(const tuna_chat_session *s, const int32_t *ids, int length) {
    int common = 0;
    int cached = s->cache.llm_length;
    while (common < cached && common < length && s->ids[common] == ids[common]) common++;
    for (int k = 0; k < s->image_count && s->segments; k++) {
        const tuna_image_segment *sg = &s->segments[k];
        if (common > sg->offset - 1 && common < sg->offset + sg->length + 1) common = sg->offset - 1;
    }
    return common < 0 ? 0 : common;
}

static tuna_status set_sequence(tuna_chat_session *s, const int32_t *ids, int length, tuna_sequence *seq,
                                tuna_error *err) {
    if (length > s->cache.capacity)
        return tuna_fail(err, TUNA_ERR_LIMIT, "the conversation (%d tokens) exceeds the context of %d", length,
                         s->cache.capacity);
    int keep = reusable_prefix(s, ids, length);
    tuna_kv_cache_truncate(&s->cache, keep);
    memcpy(s->ids, ids, sizeof(int32_t) * length);
    s->length = length;
    free(s->segments);
    s->segments = NULL;
    int found = 0;
    TUNA_TRY(tuna_find_segments(s->ids, length, &s->model->config, s->image_count, s->heights, s->widths,
                                &s->segments, &found, err));
    *seq = (tuna_sequence){.ids = s->ids, .length = length, .image_count = s->image_count, .segments = s->segments,
                           .images = (const float *const *)s->images, .t = s->t};
    return TUNA_OK;
}

static int is_stop(const tuna_chat_session *s, int id) { return id == s->stop_ids[0] || id == s->stop_ids[1]; }

/* Decode until a stop token; each step appends one token and runs one row. */
static tuna_status decode(tuna_chat_session *s, tuna_sequence *seq, float *logits, const tuna_reply_params *p,
                          tuna_rng *rng, tuna_ids *reply, tuna_error *err) {
    int V = s->model->config.vocab_size;
    float *scratch = malloc(sizeof(float) * 2 * (size_t)V);
    tuna_token_streamer streamer;
    tuna_token_streamer_init(&streamer, s->tokenizer, 1);
    tuna_status st = scratch ? TUNA_OK : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    for (int i = 0; st == TUNA_OK && i < p->max_tokens && !(p->stop && *p->stop); i++) {
        int next = tuna_sample_token(logits, V, &p->sampling, rng, scratch);
        if (is_stop(s, next)) break;
        st = tuna_ids_push(reply, next, err);
        const char *piece;
        size_t len;
        if (st == TUNA_OK) st = tuna_token_streamer_put(&streamer, next, &piece, &len, err);
        if (st == TUNA_OK && len && p->on_text) p->on_text(p->on_text_ctx, piece, len);
        if (st != TUNA_OK || s->length >= s->cache.capacity) break;
        s->ids[s->length++] = next;
        seq->length = s->length;
        tuna_forward_request rq = {.sequence = seq, .cache = &s->cache, .row_begin = s->length - 1,
                                   .row_end = s->length, .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
        st = tuna_model_forward(s->model, &rq, 1, &s->backend, &s->workspace, err);
    }
    const char *piece;
    size_t len;
    if (st == TUNA_OK && tuna_token_streamer_flush(&streamer, &piece, &len, err) == TUNA_OK && len && p->on_text)
        p->on_text(p->on_text_ctx, piece, len);
    tuna_token_streamer_free(&streamer);
    free(scratch);
    return st;
}

tuna_status tuna_chat_session_reply(tuna_chat_session *s, const tuna_chat_message *messages, size_t count,
                                    const tuna_reply_params *p, tuna_rng *rng, char **reply_text, int *reply_tokens,
                                    tuna_error *err) {
    int32_t *ids = NULL;
    int length = 0;
    TUNA_TRY(tuna_chat_build_ids(s->model, s->tokenizer, messages, count, 1, s->heights, s->widths, s->image_count,
                                 &ids, &length, err));
    tuna_sequence seq;
    tuna_status st = set_sequence(s, ids, length, &seq, err);
    free(ids);
    TUNA_TRY(st);
    float *logits = malloc(sizeof(float) * (size_t)s->model->config.vocab_size);
    if (!logits) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_forward_request rq = {.sequence = &seq, .cache = &s->cache, .row_begin = s->cache.llm_length,
                               .row_end = length, .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
    if (rq.row_begin == length) rq.row_begin = length - 1, tuna_kv_cache_truncate(&s->cache, length - 1);
    st = tuna_model_forward(s->model, &rq, 1, &s->backend, &s->workspace, err);
    tuna_ids reply = {0};
    if (st == TUNA_OK) st = decode(s, &seq, logits, p, rng, &reply, err);
    if (st == TUNA_OK && reply_text)
        st = tuna_tokenizer_decode(s->tokenizer, reply.data, reply.len, 1, reply_text, NULL, err);
    if (reply_tokens) *reply_tokens = (int)reply.len;
    tuna_ids_free(&reply);
    free(logits);
    return st;
}
