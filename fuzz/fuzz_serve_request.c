/* libFuzzer: the request parsing of `tuna serve` on arbitrary bytes. The
 * first byte picks the entry point, the rest is the body:
 *   0  a chat completion body (JSON), then its prompt ids with the bundled
 *      tokenizer (images given a fixed size), its forced-tool / JSON-format
 *      schemas compiled, and a constrained walk of a few bytes of the body
 *   1  an image generation body (JSON) and its size mapping
 *   2  an image edit body (multipart/form-data; boundary=B)
 *   3  a data: URI, base64 and a reply read back into tool calls
 * Every parse must succeed or fail with a 4xx/5xx error object, never crash,
 * hang or leak (ASan).
 *   make fuzz && mkdir -p fuzz/corpus-serve && cp fuzz/seeds-serve/* fuzz/corpus-serve/
 *   build-fuzz/fuzz/fuzz_serve_request -max_total_time=300 -max_len=65536 fuzz/corpus-serve */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/json_constrain.h"
#include "serve/chat_prompt.h"
#include "serve/request.h"
#include "serve/server.h"
#include "text/tokenizer.h"

static tuna_tokenizer *tok;
static tuna_model model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tuna_error err = {0};
    if (tuna_tokenizer_load("models/tuna2-small/tokenizer.json.gz", &tok, &err) != TUNA_OK) {
        char path[4096];
        const char *p = tuna_tokenizer_default_path(path, sizeof path);
        if (!p || tuna_tokenizer_load(p, &tok, &err) != TUNA_OK) {
            fprintf(stderr, "cannot load a tokenizer (run from the repository root): %s\n", err.message);
            exit(1);
        }
    }
    memset(&model, 0, sizeof model);
    model.config.patch_size = 4;
    model.config.tokens = (tuna_special_tokens){.bos = 2041, .eos = 2042, .boi = 2043, .eoi = 2044,
                                                .image_pad = 2045, .pad = 2046};
    return 0;
}

static void check_error(int failed, const tuna_serve_error *e) {
    if (!failed) return;
    if (e->status < 400 || e->status > 599 || !e->error.message[0]) __builtin_trap();
    char *j = tuna_serve_error_json(e);
    if (!j) __builtin_trap();
    free(j);
}

static void fuzz_chat(const char *body, size_t n, const tuna_serve_limits *l) {
    tuna_serve_chat_request r;
    tuna_serve_error e = {0};
    int failed = tuna_serve_parse_chat(body, n, l, &r, &e) != TUNA_OK;
    check_error(failed, &e);
    if (failed) return;
    int heights[TUNA_SERVE_MAX_IMAGES], widths[TUNA_SERVE_MAX_IMAGES];
    for (int k = 0; k < TUNA_SERVE_MAX_IMAGES; k++) heights[k] = widths[k] = 8;
    tuna_ids ids = {0};
    if (tuna_serve_chat_ids(&model, tok, &r, heights, widths, &ids, &e) == TUNA_OK) {
        /* the text a client sent never opens a turn: as many <|im_start|> as turns the template writes */
        int32_t im_start = tuna_tokenizer_token_id(tok, "<|im_start|>");
        size_t starts = 0;
        for (size_t i = 0; i < ids.len; i++) starts += ids.data[i] == im_start;
        size_t turns = 2; /* system, generation prompt */
        for (int i = 0; i < r.message_count; i++)
            if (!(i == 0 && r.messages[0].role == TUNA_SERVE_SYSTEM) &&
                !(r.messages[i].role == TUNA_SERVE_TOOL && i > 0 && r.messages[i - 1].role == TUNA_SERVE_TOOL))
                turns++;
        if (starts != turns) __builtin_trap();
    }
    tuna_ids_free(&ids);
    /* schemas the request would constrain with; a short walk of the body's bytes */
    const cJSON *schemas[TUNA_SERVE_MAX_TOOLS + 1];
    int ns = 0;
    if (r.format == TUNA_FORMAT_JSON_SCHEMA) schemas[ns++] = r.schema;
    for (int k = 0; k < r.tool_count && ns < TUNA_SERVE_MAX_TOOLS; k++)
        schemas[ns++] = cJSON_GetObjectItemCaseSensitive(tuna_serve_tool_function(&r, k), "parameters");
    for (int k = 0; k < ns; k++) {
        tuna_json_schema *s = NULL;
        if (tuna_json_schema_compile(schemas[k], 1, &s, NULL) != TUNA_OK) continue;
        tuna_json_matcher m;
        tuna_json_matcher_init(&m, s);
        int before = tuna_json_close_bytes(&m);
        if (before < 0) __builtin_trap();
        tuna_json_matcher_feed(&m, body, n < 64 ? n : 64);
        (void)tuna_json_close_bytes(&m);
        tuna_json_schema_free(s);
    }
    tuna_serve_chat_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    tuna_serve_limits l;
    tuna_serve_default_limits(&l);
    l.max_body = 1 << 20;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    tuna_serve_error e = {0};
    switch (data[0] % 4) {
    case 0: fuzz_chat(body, n, &l); break;
    case 1: {
        tuna_serve_image_request r;
        int failed = tuna_serve_parse_image_generation(body, n, &l, &r, &e) != TUNA_OK;
        check_error(failed, &e);
        if (!failed) {
            int h, w;
            if (tuna_serve_generation_size(4, r.width, r.height, &h, &w, &e) == TUNA_OK && (h % 4 || w % 4 || h < 4))
                __builtin_trap();
            tuna_serve_image_request_free(&r);
        }
        break;
    }
    case 2: {
        tuna_serve_image_request r;
        int failed = tuna_serve_parse_image_edit(body, n, "multipart/form-data; boundary=B", &l, &r, &e) != TUNA_OK;
        check_error(failed, &e);
        if (!failed) {
            if (!r.image.bytes || !r.prompt) __builtin_trap();
            tuna_serve_image_request_free(&r);
        }
        break;
    }
    case 3: {
        char *s = malloc(n + 1);
        if (!s) return 0;
        memcpy(s, body, n);
        s[n] = '\0';
        tuna_serve_blob b;
        int failed = tuna_serve_image_from_url(s, &l, &b, &e) != TUNA_OK;
        check_error(failed, &e);
        if (!failed) free(b.bytes);
        uint8_t *bytes;
        size_t bn;
        if (tuna_serve_base64_decode(s, strlen(s), 1 << 20, &bytes, &bn, &e) == TUNA_OK) {
            char *again = tuna_serve_base64_encode(bytes, bn);
            if (!again) __builtin_trap();
            free(again);
            free(bytes);
        }
        tuna_serve_reply reply;
        if (tuna_serve_parse_reply(s, 1, &reply, NULL) == TUNA_OK) {
            for (int k = 0; k < reply.call_count; k++)
                if (!reply.calls[k].name || !reply.calls[k].arguments) __builtin_trap();
            tuna_serve_reply_free(&reply);
        }
        (void)tuna_serve_content_end(s, strlen(s));
        free(s);
        break;
    }
    }
    return 0;
}
