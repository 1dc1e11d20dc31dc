/* libFuzzer: load arbitrary bytes as a tokenizer.json; when that succeeds, encode
 * and decode a few strings with it. Seed it with tests/fixtures/tokenizer/tiny.json.
 *   make fuzz && build-fuzz/fuzz/fuzz_tokenizer_load -max_total_time=300 tests/fixtures/tokenizer */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tuna_tokenizer *tok = NULL;
    if (tuna_tokenizer_load_json((const char *)data, size, &tok, NULL) != TUNA_OK) {
        if (tok) __builtin_trap(); /* *out is set only on success */
        return 0;
    }
    static const char *texts[] = {"hello world", "  x<L> y\n\n", "caf\xc3\xa9 'S 123", "\xff\xfe<R>>", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        tuna_ids ids = {0};
        if (tuna_tokenizer_encode(tok, texts[i], strlen(texts[i]), &ids, NULL) == TUNA_OK) {
            char *text = NULL;
            if (tuna_tokenizer_decode(tok, ids.data, ids.len, i & 1, &text, NULL, NULL) == TUNA_OK) free(text);
        }
        tuna_ids_free(&ids);
    }
    int32_t probe[] = {0, 1, 255, 256, tuna_tokenizer_vocab_size(tok) - 1};
    char *text = NULL;
    if (tuna_tokenizer_decode(tok, probe, 5, 0, &text, NULL, NULL) == TUNA_OK) free(text);
    tuna_tokenizer_token_id(tok, "<L>");
    tuna_tokenizer_free(tok);
    return 0;
}
