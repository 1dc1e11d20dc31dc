/* Image understanding and text chat (SPEC section 3): the conversation in the
 * Qwen2.5 chat template, each `<image>` placeholder replaced by an image
 * segment [BOI][t=1][N patches][EOI] of a clean image, then autoregressive
 * decoding with a KV cache.
 *
 * A session keeps the ids and the cache between turns: a new turn re-encodes
 * the conversation, keeps the cache for the longest common prefix and
 * computes only what is new. */
#ifndef TUNA_INFER_UNDERSTAND_H
#define TUNA_INFER_UNDERSTAND_H

#include "core/rng.h"
#include "core/threads.h"
#include "infer/sampler.h"
#include "model/kv_cache.h"
#include "model/sequence.h"
#include "ops/workspace.h"
#include "text/chat.h"

#include <signal.h>

#define TUNA_CHAT_MAX_IMAGES 16

typedef struct {
    const tuna_model *model;
    const tuna_tokenizer *tokenizer;
    tuna_backend backend;       /* the CPU backend on the session's pool */
    tuna_workspace workspace;   /* activations of prefill and decode, sized by the first */
    tuna_kv_cache cache;
    int32_t *ids;               /* the sequence so far, capacity cache.capacity */
    int length;
    int image_count;            /* images of the conversation, in order */
    float *images[TUNA_CHAT_MAX_IMAGES]; /* owned [C, H, W] */
    int heights[TUNA_CHAT_MAX_IMAGES], widths[TUNA_CHAT_MAX_IMAGES];
    float t[TUNA_CHAT_MAX_IMAGES];
    tuna_image_segment *segments;
    int32_t stop_ids[2];
} tuna_chat_session;

/* capacity: the most positions the conversation may reach (prompt + replies). */
tuna_status tuna_chat_session_init(tuna_chat_session *s, const tuna_model *model, const tuna_tokenizer *tokenizer,
                                   int capacity, const tuna_threads *pool, tuna_error *err);
void tuna_chat_session_free(tuna_chat_session *s);

/* Attach an image [C, H, W] in [-1, 1] (copied) for the next `<image>` placeholder. */
tuna_status tuna_chat_session_add_image(tuna_chat_session *s, const float *chw, int height, int width, tuna_error *err);

/* Called with each printable piece of the reply as it is decoded. */
typedef void (*tuna_text_fn)(void *ctx, const char *piece, size_t len);

typedef struct {
    tuna_token_sampling sampling; /* temperature <= 0: greedy */
    int max_tokens;
    tuna_text_fn on_text;         /* may be NULL */
    void *on_text_ctx;
    const volatile sig_atomic_t *stop; /* may be NULL; non-zero (e.g. set by a SIGINT handler) ends the
                                          reply after the token being decoded: what came so far is kept */
} tuna_reply_params;

/* Encode the conversation (with the generation prompt), run what is not yet
 * cached, decode a reply until <|im_end|>, <|endoftext|> or max_tokens.
 * *reply (malloc'd UTF-8, may be NULL) receives the whole reply text;
 * *reply_tokens (may be NULL) its token count. */
tuna_status tuna_chat_session_reply(tuna_chat_session *s, const tuna_chat_message *messages, size_t count,
                                    const tuna_reply_params *params, tuna_rng *rng, char **reply, int *reply_tokens,
                                    tuna_error *err);

/* The token ids of a conversation with image segments spliced in (exposed for
 * tests and the trainer). *ids is malloc'd. */
tuna_status tuna_chat_build_ids(const tuna_model *model, const tuna_tokenizer *tokenizer,
                                const tuna_chat_message *messages, size_t count, int add_generation_prompt,
                                const int *heights, const int *widths, int image_count, int32_t **ids, int *length,
                                tuna_error *err);

#endif
