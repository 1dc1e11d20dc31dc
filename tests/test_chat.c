/* Chat template tests (SPEC section 3): the rendered text and the ids equal
 * Qwen2.5's template encoded by Hugging Face (tests/fixtures/tokenizer/chat.jsonl,
 * from tools/make_tokenizer_corpus.py); <image> positions and the assistant mask. */
#include "test.h"

#include <cjson/cJSON.h>

#include "text/chat.h"

static tuna_tokenizer *tok;

static tuna_chat_role role_of(const char *s) {
    return strcmp(s, "system") == 0 ? TUNA_ROLE_SYSTEM : strcmp(s, "user") == 0 ? TUNA_ROLE_USER : TUNA_ROLE_ASSISTANT;
}

TEST(conversations_match_hugging_face) {
    FILE *in = fopen("tests/fixtures/tokenizer/chat.jsonl", "r");
    REQUIRE(in, "chat.jsonl missing");
    char *line = NULL;
    size_t cap = 0;
    int cases = 0;
    while (getline(&line, &cap, in) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        cases++;
        const cJSON *msgs = cJSON_GetObjectItem(j, "messages"), *m;
        tuna_chat_message list[16];
        size_t n = 0;
        cJSON_ArrayForEach(m, msgs) {
            list[n].role = role_of(cJSON_GetObjectItem(m, "role")->valuestring);
            list[n].content = cJSON_GetObjectItem(m, "content")->valuestring;
            n++;
        }
        tuna_chat_options opts = {NULL, cJSON_IsTrue(cJSON_GetObjectItem(j, "generation_prompt"))};
        char *text = NULL;
        size_t len = 0;
        REQUIRE(tuna_chat_render(list, n, &opts, &text, &len, NULL) == TUNA_OK, "render");
        const char *want = cJSON_GetObjectItem(j, "text")->valuestring;
        CHECK(strcmp(text, want) == 0 && len == strlen(want), "case %d text:\n%s\nwant:\n%s", cases, text, want);
        free(text);

        tuna_chat_tokens t;
        tuna_error err = {0};
        REQUIRE(tuna_chat_encode(tok, list, n, &opts, &t, &err) == TUNA_OK, "%s", err.message);
        const cJSON *ids = cJSON_GetObjectItem(j, "ids"), *x;
        size_t k = 0, images = 0;
        int same = (size_t)cJSON_GetArraySize(ids) == t.ids.len;
        cJSON_ArrayForEach(x, ids) {
            if (k < t.ids.len && t.ids.data[k] != (int32_t)x->valuedouble) same = 0;
            if ((int32_t)x->valuedouble == 151666) {
                CHECK(images < t.n_images && t.image_pos[images] == k, "case %d: image %zu position", cases, images);
                images++;
            }
            k++;
        }
        CHECK(same, "case %d: ids differ from HF (%zu vs %d)", cases, t.ids.len, cJSON_GetArraySize(ids));
        CHECK(images == t.n_images, "case %d: %zu images, reported %zu", cases, images, t.n_images);
        /* the mask covers the assistant replies: decoding the masked ids gives each
         * reply followed by <|im_end|> (a token straddling "assistant\n" and the reply,
         * such as "\n\n\n", counts as the reply's: it may add the header's newline) */
        char expect[4096] = "";
        cJSON_ArrayForEach(m, msgs) if (strcmp(cJSON_GetObjectItem(m, "role")->valuestring, "assistant") == 0) {
            strcat(expect, cJSON_GetObjectItem(m, "content")->valuestring);
            strcat(expect, "<|im_end|>");
        }
        int32_t masked[1024];
        size_t nm = 0;
        for (size_t i = 0; i < t.ids.len && nm < 1024; i++)
            if (t.assistant[i]) masked[nm++] = t.ids.data[i];
        char *dec = NULL;
        tuna_tokenizer_decode(tok, masked, nm, 0, &dec, NULL, NULL);
        size_t extra = dec && strlen(dec) >= strlen(expect) ? strlen(dec) - strlen(expect) : 99;
        CHECK(dec && (strcmp(dec, expect) == 0 || (extra == 1 && dec[0] == '\n' && strcmp(dec + 1, expect) == 0)),
              "case %d: assistant tokens decode to \"%s\", want \"%s\"", cases,
              dec ? dec : "", expect);
        free(dec);
        tuna_chat_tokens_free(&t);
        cJSON_Delete(j);
    }
    free(line);
    fclose(in);
    CHECK(cases >= 5, "only %d cases", cases);
}

TEST(understanding_prompt_layout) {
    tuna_chat_tokens t;
    REQUIRE(tuna_chat_encode_understanding(tok, "What is in the picture?", &t, NULL) == TUNA_OK, "encode");
    CHECK(t.n_images == 1, "one image");
    CHECK(t.ids.data[0] == 151644, "starts with <|im_start|>");
    CHECK(t.n_images == 1 && t.ids.data[t.image_pos[0]] == 151666 && t.ids.data[t.image_pos[0] - 1] == 198,
          "<image> right after \"user\\n\"");
    CHECK(t.ids.len >= 3 && t.ids.data[t.ids.len - 3] == 151644 && t.ids.data[t.ids.len - 2] == 77091 &&
              t.ids.data[t.ids.len - 1] == 198,
          "ends with the generation prompt");
    tuna_chat_tokens_free(&t);
}

TEST(bad_messages_are_refused) {
    tuna_chat_message m = {TUNA_ROLE_USER, NULL};
    tuna_chat_tokens t;
    tuna_error err = {0};
    CHECK(tuna_chat_encode(tok, &m, 1, NULL, &t, &err) == TUNA_ERR_INVALID, "NULL content");
    m = (tuna_chat_message){(tuna_chat_role)7, "x"};
    CHECK(tuna_chat_encode(tok, &m, 1, NULL, &t, &err) == TUNA_ERR_INVALID, "bad role");
}

int main(void) {
    char path[4096];
    tuna_error err = {0};
    const char *p = tuna_tokenizer_default_path(path, sizeof path);
    if (!p || tuna_tokenizer_load(p, &tok, &err) != TUNA_OK) {
        fprintf(stderr, "cannot load the bundled tokenizer: %s\n", p ? err.message : "not found");
        printf("RESULT passed=0 failed=1\n");
        return 1;
    }
    RUN(conversations_match_hugging_face);
    RUN(understanding_prompt_layout);
    RUN(bad_messages_are_refused);
    tuna_tokenizer_free(tok);
    return test_summary();
}
