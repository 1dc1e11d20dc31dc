/* The Qwen2.5 ChatML template (SPEC section 3):
 *
 *   <|im_start|>system\n{system}<|im_end|>\n
 *   <|im_start|>user\n{user}<|im_end|>\n
 *   <|im_start|>assistant\n{reply}<|im_end|>\n ...
 *   <|im_start|>assistant\n                      (the generation prompt)
 *
 * When the first message is not a system message, a system turn with the
 * default text ("You are Qwen, created by Alibaba Cloud. You are a helpful
 * assistant.") comes first, as Qwen2.5's chat_template does. A `<image>` in a
 * message is the placeholder (id 151666) that the model replaces with an image
 * segment [BOI][t][N patches][EOI]; understanding uses user content
 * "<image>\n" + prompt. */
#ifndef TUNA_TEXT_CHAT_H
#define TUNA_TEXT_CHAT_H

#include "text/tokenizer.h"

#define TUNA_CHAT_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

typedef enum { TUNA_ROLE_SYSTEM = 0, TUNA_ROLE_USER, TUNA_ROLE_ASSISTANT } tuna_chat_role;

typedef struct {
    tuna_chat_role role;
    const char *content; /* UTF-8, NUL-terminated */
} tuna_chat_message;

typedef struct {
    const char *default_system; /* NULL: TUNA_CHAT_DEFAULT_SYSTEM */
    int add_generation_prompt;  /* end with "<|im_start|>assistant\n" */
} tuna_chat_options;

/* The conversation as template text; *text is malloc'd, NUL-terminated. opts may be NULL
 * (defaults: Qwen's system text, no generation prompt). */
tuna_status tuna_chat_render(const tuna_chat_message *msgs, size_t n, const tuna_chat_options *opts, char **text,
                             size_t *text_len, tuna_error *err);

/* The conversation as token ids, identical to encoding tuna_chat_render's text. */
typedef struct {
    tuna_ids ids;
    uint8_t *assistant; /* per id: 1 for the tokens of an assistant reply and its closing
                           <|im_end|> (the CE targets of SFT), 0 elsewhere */
    size_t *image_pos;  /* index into ids of each <image> placeholder, in order */
    size_t n_images;
} tuna_chat_tokens;

tuna_status tuna_chat_encode(const tuna_tokenizer *tok, const tuna_chat_message *msgs, size_t n,
                             const tuna_chat_options *opts, tuna_chat_tokens *out, tuna_error *err);

/* Understanding inference: one user turn "<image>\n" + prompt after the default
 * system turn, then the generation prompt. */
tuna_status tuna_chat_encode_understanding(const tuna_tokenizer *tok, const char *prompt, tuna_chat_tokens *out,
                                           tuna_error *err);

void tuna_chat_tokens_free(tuna_chat_tokens *t);

const char *tuna_chat_role_name(tuna_chat_role role);

#endif
