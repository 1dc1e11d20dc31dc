/* Chat requests to ids in Qwen2.5's template, replies to tool calls (see chat_prompt.h). */
#include "serve/chat_prompt.h"

#include "model/layout.h"
#include "text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOOLS_HEADER                                                                                    \
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided " \
    "with function signatures within <tools></tools> XML tags:\n<tools>"
#define TOOLS_FOOTER                                                                                    \
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within " \
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "       \
    "<args-json-object>}\n</tool_call>"

/* Text is gathered while it is of one kind (the template's or the client's)
 * and encoded as one piece, as the whole rendered string would be. */
typedef struct {
    const tuna_tokenizer *tok;
    tuna_ids *ids;
    char *text;
    size_t len, cap;
    int plain;
    size_t image_pos[TUNA_SERVE_MAX_IMAGES];
    int images;
    tuna_status status;
    tuna_serve_error *e;
} builder;

static void flush(builder *b) {
    if (b->status != TUNA_OK || b->len == 0) return;
    tuna_error err = {0};
    tuna_status s = b->plain ? tuna_tokenizer_encode_plain(b->tok, b->text, b->len, b->ids, &err)
                             : tuna_tokenizer_encode(b->tok, b->text, b->len, b->ids, &err);
    if (s != TUNA_OK) b->status = tuna_serve_fail(b->e, 500, "server_error", NULL, NULL, "%s", err.message);
    b->len = 0;
}

static void put(builder *b, const char *text, size_t n, int plain) {
    if (b->status != TUNA_OK || n == 0) return;
    if (plain != b->plain) flush(b);
    b->plain = plain;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *t = realloc(b->text, cap);
        if (!t) {
            b->status = tuna_serve_fail(b->e, 500, "server_error", NULL, NULL, "out of memory");
            return;
        }
        b->text = t;
        b->cap = cap;
    }
    memcpy(b->text + b->len, text, n);
    b->len += n;
}

static void tmpl(builder *b, const char *text) { put(b, text, strlen(text), 0); }
static void user(builder *b, const char *text) { put(b, text, strlen(text), 1); }

static void push_id(builder *b, int32_t id) {
    flush(b);
    if (b->status != TUNA_OK) return;
    tuna_error err = {0};
    if (tuna_ids_push(b->ids, id, &err) != TUNA_OK)
        b->status = tuna_serve_fail(b->e, 500, "server_error", NULL, NULL, "out of memory");
}

char *tuna_serve_tools_block(const tuna_serve_chat_request *r) {
    size_t cap = sizeof TOOLS_HEADER + sizeof TOOLS_FOOTER + 16, len = 0;
    char **dumps = calloc((size_t)(r->tool_count ? r->tool_count : 1), sizeof *dumps);
    if (!dumps) return NULL;
    int ok = 1;
    for (int i = 0; i < r->tool_count && ok; i++) {
        dumps[i] = tuna_serve_json_dumps(cJSON_GetArrayItem(r->tools, i));
        ok = dumps[i] != NULL;
        if (ok) cap += strlen(dumps[i]) + 1;
    }
    char *s = ok ? malloc(cap) : NULL;
    if (s) {
        len += (size_t)sprintf(s, "%s", TOOLS_HEADER);
        for (int i = 0; i < r->tool_count; i++) len += (size_t)sprintf(s + len, "\n%s", dumps[i]);
        sprintf(s + len, "%s", TOOLS_FOOTER);
    }
    for (int i = 0; i < r->tool_count; i++) free(dumps[i]);
    free(dumps);
    return s;
}

static void render_tool_call(builder *b, const tuna_serve_tool_call *c) {
    tmpl(b, "\n<tool_call>\n{\"name\": \"");
    user(b, c->name);
    tmpl(b, "\", \"arguments\": ");
    cJSON *args = cJSON_Parse(c->arguments);
    char *dumped = args ? tuna_serve_json_dumps(args) : NULL;
    user(b, dumped ? dumped : c->arguments);
    free(dumped);
    cJSON_Delete(args);
    tmpl(b, "}\n</tool_call>");
}

tuna_status tuna_serve_chat_ids(const tuna_model *model, const tuna_tokenizer *tok, const tuna_serve_chat_request *r,
                                const int *heights, const int *widths, tuna_ids *out, tuna_serve_error *e) {
    int32_t im_start = tuna_tokenizer_token_id(tok, "<|im_start|>"), im_end = tuna_tokenizer_token_id(tok, "<|im_end|>");
    int32_t image = tuna_tokenizer_token_id(tok, "<image>");
    if (im_start < 0 || im_end < 0)
        return tuna_serve_fail(e, 500, "server_error", NULL, NULL, "the tokenizer has no <|im_start|> / <|im_end|>");
    if (r->image_count > 0 && image < 0)
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "messages", "this model's tokenizer has no <image>");
    tuna_ids chat = {0};
    builder b = {.tok = tok, .ids = &chat, .status = TUNA_OK, .e = e};
    int tools = r->tool_choice != TUNA_TOOLS_NONE && r->tool_count > 0;
    int first = 0;
    /* the system turn */
    push_id(&b, im_start);
    tmpl(&b, "system\n");
    if (r->messages[0].role == TUNA_SERVE_SYSTEM) {
        user(&b, r->messages[0].text);
        first = 1;
    } else {
        tmpl(&b, TUNA_CHAT_DEFAULT_SYSTEM);
    }
    if (tools) {
        tmpl(&b, TOOLS_HEADER);
        for (int i = 0; i < r->tool_count; i++) {
            char *dump = tuna_serve_json_dumps(cJSON_GetArrayItem(r->tools, i));
            if (!dump) b.status = tuna_serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            tmpl(&b, "\n");
            if (dump) user(&b, dump); /* the tool schemas come from the client */
            free(dump);
        }
        tmpl(&b, TOOLS_FOOTER);
    }
    push_id(&b, im_end);
    tmpl(&b, "\n");
    for (int i = first; i < r->message_count && b.status == TUNA_OK; i++) {
        const tuna_serve_message *m = &r->messages[i];
        switch (m->role) {
        case TUNA_SERVE_SYSTEM:
        case TUNA_SERVE_USER:
            push_id(&b, im_start);
            tmpl(&b, m->role == TUNA_SERVE_SYSTEM ? "system\n" : "user\n");
            for (int k = 0; k < m->image_count; k++) {
                if (b.images < TUNA_SERVE_MAX_IMAGES) {
                    flush(&b);
                    b.image_pos[b.images++] = chat.len;
                }
                push_id(&b, image);
                tmpl(&b, "\n");
            }
            user(&b, m->text);
            push_id(&b, im_end);
            tmpl(&b, "\n");
            break;
        case TUNA_SERVE_ASSISTANT:
            push_id(&b, im_start);
            if (m->tool_call_count == 0) {
                tmpl(&b, "assistant\n");
                user(&b, m->text);
            } else {
                tmpl(&b, "assistant");
                if (m->text[0]) {
                    tmpl(&b, "\n");
                    user(&b, m->text);
                }
                for (int k = 0; k < m->tool_call_count; k++) render_tool_call(&b, &m->tool_calls[k]);
            }
            push_id(&b, im_end);
            tmpl(&b, "\n");
            break;
        case TUNA_SERVE_TOOL:
            if (i == 0 || r->messages[i - 1].role != TUNA_SERVE_TOOL) {
                push_id(&b, im_start);
                tmpl(&b, "user");
            }
            tmpl(&b, "\n<tool_response>\n");
            user(&b, m->text);
            tmpl(&b, "\n</tool_response>");
            if (i + 1 == r->message_count || r->messages[i + 1].role != TUNA_SERVE_TOOL) {
                push_id(&b, im_end);
                tmpl(&b, "\n");
            }
            break;
        }
    }
    push_id(&b, im_start);
    tmpl(&b, "assistant\n");
    flush(&b);
    free(b.text);
    tuna_status s = b.status;
    if (s == TUNA_OK && b.images != r->image_count)
        s = tuna_serve_fail(e, 500, "server_error", NULL, NULL, "image count mismatch");
    int patches[TUNA_SERVE_MAX_IMAGES];
    tuna_error err = {0};
    for (int k = 0; s == TUNA_OK && k < r->image_count; k++)
        if (tuna_layout_patches(heights[k], widths[k], model->config.patch_size, &patches[k], &err) != TUNA_OK)
            s = tuna_serve_fail(e, 400, "invalid_request_error", NULL, "messages", "%s", err.message);
    tuna_layout l = {&model->config.tokens, out, NULL};
    if (s == TUNA_OK &&
        tuna_layout_chat(&l, chat.data, chat.len, b.image_pos, (size_t)r->image_count, patches, &err) != TUNA_OK)
        s = tuna_serve_fail(e, 500, "server_error", NULL, NULL, "%s", err.message);
    tuna_ids_free(&chat);
    return s;
}

/* ---- replies ---------------------------------------------------------------------- */

void tuna_serve_reply_free(tuna_serve_reply *r) {
    free(r->content);
    for (int i = 0; i < r->call_count; i++) {
        free(r->calls[i].id);
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    memset(r, 0, sizeof *r);
}

size_t tuna_serve_content_end(const char *text, size_t len) {
    static const char open[] = "<tool_call>";
    const size_t ol = sizeof open - 1;
    const char *hit = memmem(text, len, open, ol);
    if (hit) return (size_t)(hit - text);
    /* a suffix that could still become "<tool_call>" */
    for (size_t k = ol - 1; k > 0; k--)
        if (len >= k && memcmp(text + len - k, open, k) == 0) return len - k;
    return len;
}

static char *trimmed_copy(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\t')) n--;
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* One <tool_call> body: {"name": ..., "arguments": {...} or "..."}. 1 parsed, 0 not a call, -1 out of memory. */
static int parse_call(const char *body, size_t n, tuna_serve_tool_call *call, int index) {
    cJSON *j = cJSON_ParseWithLength(body, n);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "arguments");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(j, "parameters");
    if (!cJSON_IsObject(j) || !cJSON_IsString(name)) {
        cJSON_Delete(j);
        return 0;
    }
    memset(call, 0, sizeof *call);
    call->name = strdup(name->valuestring);
    if (cJSON_IsString(args)) call->arguments = strdup(args->valuestring);
    else if (args) call->arguments = cJSON_PrintUnformatted(args);
    else call->arguments = strdup("{}");
    char id[48];
    snprintf(id, sizeof id, "call_%d_%08x", index, (unsigned)(((uintptr_t)call->name * 2654435761u) & 0xffffffffu));
    call->id = strdup(id);
    cJSON_Delete(j);
    if (!call->name || !call->arguments || !call->id) return -1;
    return 1;
}

tuna_status tuna_serve_parse_reply(const char *text, int with_tools, tuna_serve_reply *out, tuna_error *err) {
    memset(out, 0, sizeof *out);
    size_t len = strlen(text);
    size_t content_end = len;
    if (with_tools) {
        const char *p = text;
        while ((p = strstr(p, "<tool_call>")) != NULL) {
            const char *body = p + strlen("<tool_call>");
            const char *close = strstr(body, "</tool_call>");
            size_t body_len = close ? (size_t)(close - body) : strlen(body);
            tuna_serve_tool_call call;
            int r = parse_call(body, body_len, &call, out->call_count);
            if (r < 0) {
                tuna_serve_reply_free(out);
                return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
            }
            if (r == 1) {
                tuna_serve_tool_call *calls = realloc(out->calls, sizeof *calls * (size_t)(out->call_count + 1));
                if (!calls) {
                    free(call.id);
                    free(call.name);
                    free(call.arguments);
                    tuna_serve_reply_free(out);
                    return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
                }
                out->calls = calls;
                out->calls[out->call_count++] = call;
                if (out->call_count == 1) content_end = (size_t)(p - text);
            }
            p = close ? close + strlen("</tool_call>") : body + body_len;
        }
    }
    if (out->call_count) {
        char *c = trimmed_copy(text, content_end);
        if (!c) {
            tuna_serve_reply_free(out);
            return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        }
        if (c[0]) out->content = c;
        else free(c);
    } else {
        out->content = strdup(text);
        if (!out->content) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    return TUNA_OK;
}
