/* libFuzzer: encode arbitrary bytes with the bundled tokenizer, then check that
 * decode(encode(x)) is the NFC of x's U+FFFD-repaired text, that streaming decode
 * equals decode, and that chat encoding survives the bytes as a message.
 *   make fuzz && build-fuzz/fuzz/fuzz_tokenizer_encode -max_total_time=300 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

static tuna_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[4096];
    tuna_error err = {0};
    const char *p = tuna_tokenizer_default_path(path, sizeof path);
    if (!p || tuna_tokenizer_load(p, &tok, &err) != TUNA_OK) {
        fprintf(stderr, "cannot load the bundled tokenizer: %s\n", p ? err.message : "not found");
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tuna_ids ids = {0};
    if (tuna_tokenizer_encode(tok, (const char *)data, size, &ids, NULL) != TUNA_OK) __builtin_trap();

    char *repaired, *nfc, *text;
    size_t repaired_len, nfc_len, text_len;
    if (tuna_utf8_repair(data, size, &repaired, &repaired_len, NULL) != TUNA_OK) __builtin_trap();
    if (tuna_nfc(repaired, repaired_len, &nfc, &nfc_len, NULL) != TUNA_OK) __builtin_trap();
    const char *want = nfc ? nfc : repaired;
    if (tuna_tokenizer_decode(tok, ids.data, ids.len, 0, &text, &text_len, NULL) != TUNA_OK) __builtin_trap();
    /* NFC is not closed under concatenation around added tokens, so compare only
     * when the text has none (no '<' at all) */
    if (!memchr(data, '<', size) && (text_len != nfc_len || memcmp(text, want, text_len) != 0)) __builtin_trap();

    tuna_token_streamer st;
    tuna_token_streamer_init(&st, tok, 0);
    size_t at = 0;
    for (size_t i = 0; i <= ids.len; i++) {
        const char *piece;
        size_t n;
        tuna_status s = i < ids.len ? tuna_token_streamer_put(&st, ids.data[i], &piece, &n, NULL)
                                    : tuna_token_streamer_flush(&st, &piece, &n, NULL);
        if (s != TUNA_OK || at + n > text_len || memcmp(text + at, piece, n) != 0) __builtin_trap();
        at += n;
    }
    if (at != text_len) __builtin_trap();
    tuna_token_streamer_free(&st);

    char *msg = malloc(size + 1);
    memcpy(msg, data, size);
    msg[size] = 0;
    tuna_chat_message m[2] = {{TUNA_ROLE_USER, msg}, {TUNA_ROLE_ASSISTANT, msg}};
    tuna_chat_options opts = {NULL, 1};
    tuna_chat_tokens ct;
    if (tuna_chat_encode(tok, m, 2, &opts, &ct, NULL) == TUNA_OK) tuna_chat_tokens_free(&ct);
    free(msg);

    free(text);
    free(nfc);
    free(repaired);
    tuna_ids_free(&ids);
    return 0;
}
