/* Qwen2.5 ChatML (SPEC section 3). Each turn is "<|im_start|>" role "\n" content
 * "<|im_end|>" "\n". Encoding goes turn by turn: the special tokens around each
 * turn are split off first by the tokenizer anyway (no added token of this
 * family can straddle them), so the ids are those of the whole rendered text,
 * and we learn which ids belong to which turn. */
#include "text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tuna_chat_role_name(tuna_chat_role role) {
    switch (role) {
    case TUNA_ROLE_SYSTEM: return "system";
    case TUNA_ROLE_USER: return "user";
    case TUNA_ROLE_ASSISTANT: return "assistant";
    }
    return NULL;
}

/* One turn of the conversation as the template writes it. */
typedef struct {
    const char *role;
    const char *content; /* NULL for the generation prompt (an open assistant turn) */
    int assistant;
} turn;

static tuna_status list_turns(const tuna_chat_message *msgs, size_t n, const tuna_chat_options *opts, turn **out,
                              size_t *n_out, tuna_error *err) {
    turn *t = malloc((n + 2) * sizeof *t);
    if (!t) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for %zu chat turns", n);
    size_t k = 0;
    if (n == 0 || msgs[0].role != TUNA_ROLE_SYSTEM) {
        const char *sys = opts && opts->default_system ? opts->default_system : TUNA_CHAT_DEFAULT_SYSTEM;
        t[k++] = (turn){"system", sys, 0};
    }
    for (size_t i = 0; i < n; i++) {
        const char *role = tuna_chat_role_name(msgs[i].role);
        if (!role || !msgs[i].content) {
            free(t);
            return tuna_fail(err, TUNA_ERR_INVALID, "chat message %zu has a bad role or no content", i);
        }
        t[k++] = (turn){role, msgs[i].content, msgs[i].role == TUNA_ROLE_ASSISTANT};
    }
    if (opts && opts->add_generation_prompt) t[k++] = (turn){"assistant", NULL, 1};
    *out = t;
    *n_out = k;
    return TUNA_OK;
}

tuna_status tuna_chat_render(const tuna_chat_message *msgs, size_t n, const tuna_chat_options *opts, char **text,
                             size_t *text_len, tuna_error *err) {
    turn *t;
    size_t nt;
    TUNA_TRY(list_turns(msgs, n, opts, &t, &nt, err));
    size_t total = 1;
    for (size_t i = 0; i < nt; i++)
        total += strlen("<|im_start|>\n<|im_end|>\n") + strlen(t[i].role) + (t[i].content ? strlen(t[i].content) : 0);
    char *s = malloc(total);
    if (!s) {
        free(t);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory rendering a chat");
    }
    size_t len = 0;
    for (size_t i = 0; i < nt; i++) {
        len += (size_t)sprintf(s + len, "<|im_start|>%s\n", t[i].role);
        if (t[i].content) len += (size_t)sprintf(s + len, "%s<|im_end|>\n", t[i].content);
    }
    free(t);
    *text = s;
    if (text_len) *text_len = len;
    return TUNA_OK;
}

void tuna_chat_tokens_free(tuna_chat_tokens *t) {
    tuna_ids_free(&t->ids);
    free(t->assistant);
    free(t->image_pos);
    memset(t, 0, sizeof *t);
}

static tuna_status special_id(const tuna_tokenizer *tok, const char *name, int32_t *id, tuna_error *err) {
    *id = tuna_tokenizer_token_id(tok, name);
    if (*id < 0) return tuna_fail(err, TUNA_ERR_FORMAT, "the tokenizer has no %s token", name);
    return TUNA_OK;
}

/* Grow the assistant mask to ids->len, marking the new ids with `value`. */
static tuna_status mark(tuna_chat_tokens *out, size_t *mask_cap, size_t from, uint8_t value, tuna_error *err) {
    if (out->ids.len > *mask_cap) {
        size_t cap = out->ids.cap;
        uint8_t *m = realloc(out->assistant, cap);
        if (!m) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the assistant mask");
        out->assistant = m;
        *mask_cap = cap;
    }
    memset(out->assistant + from, value, out->ids.len - from);
    return TUNA_OK;
}

static tuna_status encode_turns(const tuna_tokenizer *tok, const turn *t, size_t nt, tuna_chat_tokens *out,
                                tuna_error *err) {
    int32_t im_start, im_end;
    TUNA_TRY(special_id(tok, "<|im_start|>", &im_start, err));
    TUNA_TRY(special_id(tok, "<|im_end|>", &im_end, err));
    size_t mask_cap = 0;
    char *body = NULL;
    size_t body_cap = 0;
    tuna_status s = TUNA_OK;
    for (size_t i = 0; i < nt && s == TUNA_OK; i++) {
        size_t role_len = strlen(t[i].role), content_len = t[i].content ? strlen(t[i].content) : 0;
        size_t need = role_len + 1 + content_len + 1;
        if (need > body_cap) {
            char *b = realloc(body, need);
            if (!b) { s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory encoding a chat"); break; }
            body = b;
            body_cap = need;
        }
        memcpy(body, t[i].role, role_len);
        body[role_len] = '\n';
        if (content_len) memcpy(body + role_len + 1, t[i].content, content_len);
        size_t from = out->ids.len;
        s = tuna_ids_push(&out->ids, im_start, err);
        if (s == TUNA_OK) s = tuna_tokenizer_encode(tok, body, role_len + 1 + content_len, &out->ids, err);
        if (s == TUNA_OK) s = mark(out, &mask_cap, from, 0, err);
        if (s != TUNA_OK || !t[i].content) break;
        if (t[i].assistant) {
            /* the reply: every id holding a byte past "assistant\n" */
            size_t bytes = 0, k = from + 1;
            for (; k < out->ids.len; k++) {
                size_t n = 0;
                tuna_tokenizer_token_bytes(tok, out->ids.data[k], &n);
                if (bytes + n > role_len + 1) break;
                bytes += n;
            }
            memset(out->assistant + k, 1, out->ids.len - k);
        }
        from = out->ids.len;
        s = tuna_ids_push(&out->ids, im_end, err);
        if (s == TUNA_OK) s = mark(out, &mask_cap, from, (uint8_t)t[i].assistant, err);
        from = out->ids.len;
        if (s == TUNA_OK) s = tuna_tokenizer_encode(tok, "\n", 1, &out->ids, err);
        if (s == TUNA_OK) s = mark(out, &mask_cap, from, 0, err);
    }
    free(body);
    return s;
}

static tuna_status find_images(const tuna_tokenizer *tok, tuna_chat_tokens *out, tuna_error *err) {
    int32_t image = tuna_tokenizer_token_id(tok, "<image>");
    if (image < 0) return TUNA_OK;
    size_t n = 0;
    for (size_t i = 0; i < out->ids.len; i++) n += out->ids.data[i] == image;
    if (n == 0) return TUNA_OK;
    out->image_pos = malloc(n * sizeof *out->image_pos);
    if (!out->image_pos) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for image positions");
    for (size_t i = 0; i < out->ids.len; i++)
        if (out->ids.data[i] == image) out->image_pos[out->n_images++] = i;
    return TUNA_OK;
}

tuna_status tuna_chat_encode(const tuna_tokenizer *tok, const tuna_chat_message *msgs, size_t n,
                             const tuna_chat_options *opts, tuna_chat_tokens *out, tuna_error *err) {
    memset(out, 0, sizeof *out);
    turn *t;
    size_t nt;
    TUNA_TRY(list_turns(msgs, n, opts, &t, &nt, err));
    tuna_status s = encode_turns(tok, t, nt, out, err);
    free(t);
    if (s == TUNA_OK) s = find_images(tok, out, err);
    if (s != TUNA_OK) tuna_chat_tokens_free(out);
    return s;
}

tuna_status tuna_chat_encode_understanding(const tuna_tokenizer *tok, const char *prompt, tuna_chat_tokens *out,
                                           tuna_error *err) {
    size_t len = strlen(prompt);
    char *content = malloc(len + sizeof "<image>\n");
    if (!content) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    memcpy(content, "<image>\n", 8);
    memcpy(content + 8, prompt, len + 1);
    tuna_chat_message m = {TUNA_ROLE_USER, content};
    tuna_chat_options opts = {NULL, 1};
    tuna_status s = tuna_chat_encode(tok, &m, 1, &opts, out, err);
    free(content);
    return s;
}
