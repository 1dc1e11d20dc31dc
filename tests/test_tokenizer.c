/* Tokenizer tests (SPEC section 3): ids identical to Hugging Face `tokenizers`
 * on golden.jsonl (HF's own pairs) and on corpus.jsonl / bytes.jsonl / tiny_cases
 * (made by tools/make_tokenizer_corpus.py with the PyPI package); decode(encode(x))
 * equals HF's NFC of x; streaming decode equals decode; concurrent encoding. */
#include "test.h"

#include <cjson/cJSON.h>
#include <pthread.h>

#include "text/tokenizer.h"
#include "text/unicode.h"

#define FIX "tests/fixtures/tokenizer/"

static tuna_tokenizer *tok;

typedef struct {
    char *text;
    size_t len;
    char *nfc; /* NULL when equal to text */
    size_t nfc_len;
    int32_t *ids;
    size_t n_ids;
} fixture_line;

typedef struct {
    fixture_line *lines;
    size_t n;
} fixture;

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static fixture read_fixture(const char *path) {
    fixture f = {0};
    FILE *in = fopen(path, "r");
    if (!in) return f;
    char *line = NULL;
    size_t cap = 0;
    size_t alloc = 0;
    while (getline(&line, &cap, in) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        if (f.n == alloc) {
            alloc = alloc ? alloc * 2 : 256;
            f.lines = realloc(f.lines, alloc * sizeof *f.lines);
        }
        fixture_line *l = &f.lines[f.n++];
        memset(l, 0, sizeof *l);
        const cJSON *text = cJSON_GetObjectItem(j, "text"), *hex = cJSON_GetObjectItem(j, "hex");
        const cJSON *nfc = cJSON_GetObjectItem(j, "nfc"), *ids = cJSON_GetObjectItem(j, "ids");
        if (cJSON_IsString(text)) {
            l->text = strdup(text->valuestring);
            l->len = strlen(l->text);
        } else if (cJSON_IsString(hex)) {
            size_t n = strlen(hex->valuestring) / 2;
            l->text = malloc(n + 1);
            for (size_t i = 0; i < n; i++)
                l->text[i] = (char)(hexval(hex->valuestring[2 * i]) * 16 + hexval(hex->valuestring[2 * i + 1]));
            l->len = n;
        }
        if (cJSON_IsString(nfc)) {
            l->nfc = strdup(nfc->valuestring);
            l->nfc_len = strlen(l->nfc);
        }
        l->n_ids = (size_t)cJSON_GetArraySize(ids);
        l->ids = malloc((l->n_ids + 1) * sizeof(int32_t));
        size_t k = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, ids) l->ids[k++] = (int32_t)x->valuedouble;
        cJSON_Delete(j);
    }
    free(line);
    fclose(in);
    return f;
}

static void free_fixture(fixture *f) {
    for (size_t i = 0; i < f->n; i++) {
        free(f->lines[i].text);
        free(f->lines[i].nfc);
        free(f->lines[i].ids);
    }
    free(f->lines);
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Encode every line with t and compare with the fixture; report the first mismatches. */
static void check_fixture(const tuna_tokenizer *t, const char *path, size_t min_lines) {
    fixture f = read_fixture(path);
    CHECK(f.n >= min_lines, "%s: %zu lines read", path, f.n);
    size_t bad = 0;
    for (size_t i = 0; i < f.n; i++) {
        fixture_line *l = &f.lines[i];
        tuna_ids ids = {0};
        tuna_error err = {0};
        tuna_status s = tuna_tokenizer_encode(t, l->text, l->len, &ids, &err);
        int same = s == TUNA_OK && ids.len == l->n_ids && memcmp(ids.data, l->ids, ids.len * sizeof(int32_t)) == 0;
        if (!same && bad++ < 5) {
            fprintf(stderr, "  %s line %zu differs: text \"%.200s\"\n", path, i + 1, l->text);
            print_ids("expected", l->ids, l->n_ids);
            print_ids("got     ", ids.data, ids.len);
        }
        tuna_ids_free(&ids);
    }
    CHECK(bad == 0, "%s: %zu of %zu lines differ from Hugging Face", path, bad, f.n);
    free_fixture(&f);
}

TEST(special_token_ids_match_spec) {
    static const struct { const char *s; int32_t id; } want[] = {
        {"<|endoftext|>", 151643}, {"<|im_start|>", 151644}, {"<|im_end|>", 151645},
        {"<|vision_start|>", 151652}, {"<|vision_end|>", 151653}, {"<|image_pad|>", 151655},
        {"[PAD]", 151665}, {"<image>", 151666}, {"<|vid_start|>", 151667}, {"<|vid_end|>", 151668}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(tuna_tokenizer_token_id(tok, want[i].s) == want[i].id, "%s", want[i].s);
    CHECK(tuna_tokenizer_vocab_size(tok) == 151669, "vocab size %d", tuna_tokenizer_vocab_size(tok));
    CHECK(tuna_tokenizer_token_id(tok, "Ġhello") == 23811, "Ġhello");
    CHECK(tuna_tokenizer_token_id(tok, "no such token here") == -1, "absent");
    CHECK(tuna_tokenizer_is_special(tok, 151644) && !tuna_tokenizer_is_special(tok, 151657) &&
              !tuna_tokenizer_is_special(tok, 9707),
          "special flags");
    size_t n;
    const char *b = tuna_tokenizer_token_bytes(tok, 220, &n);
    CHECK(b && n == 1 && b[0] == ' ', "id 220 is a space");
}

TEST(golden_ids_match_hugging_face) { check_fixture(tok, FIX "golden.jsonl", 100); }
TEST(corpus_ids_match_hugging_face) { check_fixture(tok, FIX "corpus.jsonl", 1000); }
TEST(invalid_utf8_is_replaced_like_python) { check_fixture(tok, FIX "bytes.jsonl", 100); }

TEST(added_token_flags_and_string_merges_match_hugging_face) {
    tuna_tokenizer *tiny = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_tokenizer_load(FIX "tiny.json", &tiny, &err) == TUNA_OK, "%s", err.message);
    check_fixture(tiny, FIX "tiny_cases.jsonl", 20);
    tuna_tokenizer_free(tiny);
}

TEST(decode_of_encode_is_nfc_text) {
    fixture f = read_fixture(FIX "corpus.jsonl");
    size_t bad = 0;
    for (size_t i = 0; i < f.n; i++) {
        fixture_line *l = &f.lines[i];
        char *text = NULL;
        size_t len = 0;
        tuna_error err = {0};
        tuna_ids ids = {0};
        tuna_tokenizer_encode(tok, l->text, l->len, &ids, &err);
        tuna_status s = tuna_tokenizer_decode(tok, ids.data, ids.len, 0, &text, &len, &err);
        const char *want = l->nfc ? l->nfc : l->text;
        size_t want_len = l->nfc ? l->nfc_len : l->len;
        if ((s != TUNA_OK || len != want_len || memcmp(text, want, len) != 0) && bad++ < 5)
            fprintf(stderr, "  line %zu: decode gives \"%.200s\"\n  want \"%.200s\"\n", i + 1, text ? text : "", want);
        free(text);
        tuna_ids_free(&ids);
    }
    CHECK(bad == 0, "%zu lines do not round-trip", bad);
    free_fixture(&f);
}

TEST(streaming_decode_equals_decode) {
    fixture f = read_fixture(FIX "corpus.jsonl");
    fixture g = read_fixture(FIX "bytes.jsonl");
    size_t bad = 0;
    for (size_t k = 0; k < f.n + g.n; k++) {
        fixture_line *l = k < f.n ? &f.lines[k] : &g.lines[k - f.n];
        char *whole = NULL;
        size_t whole_len = 0;
        tuna_error err = {0};
        tuna_tokenizer_decode(tok, l->ids, l->n_ids, 0, &whole, &whole_len, &err);
        tuna_token_streamer st;
        tuna_token_streamer_init(&st, tok, 0);
        char *acc = malloc(whole_len * 2 + 16);
        size_t acc_len = 0;
        int broken = 0;
        for (size_t i = 0; i <= l->n_ids; i++) {
            const char *piece;
            size_t n;
            tuna_status s = i < l->n_ids ? tuna_token_streamer_put(&st, l->ids[i], &piece, &n, &err)
                                         : tuna_token_streamer_flush(&st, &piece, &n, &err);
            if (s != TUNA_OK || !tuna_utf8_valid((const unsigned char *)piece, n) || acc_len + n > whole_len) {
                broken = 1;
                break;
            }
            memcpy(acc + acc_len, piece, n);
            acc_len += n;
        }
        if ((broken || acc_len != whole_len || memcmp(acc, whole, acc_len) != 0) && bad++ < 5)
            fprintf(stderr, "  line %zu streams differently\n", k + 1);
        tuna_token_streamer_free(&st);
        free(acc);
        free(whole);
    }
    CHECK(bad == 0, "%zu lines stream differently", bad);
    free_fixture(&f);
    free_fixture(&g);
}

TEST(decode_skips_special_tokens_on_request) {
    int32_t ids[] = {151644, 9707, 151645, 151666};
    char *text;
    size_t len;
    REQUIRE(tuna_tokenizer_decode(tok, ids, 4, 0, &text, &len, NULL) == TUNA_OK, "decode");
    CHECK(strcmp(text, "<|im_start|>Hello<|im_end|><image>") == 0, "got %s", text);
    free(text);
    REQUIRE(tuna_tokenizer_decode(tok, ids, 4, 1, &text, &len, NULL) == TUNA_OK, "decode");
    CHECK(strcmp(text, "Hello<image>") == 0, "got %s", text); /* <image> is special=false */
    free(text);
}

TEST(bad_input_is_an_error_not_a_crash) {
    tuna_error err = {0};
    int32_t bad[] = {9707, 151669};
    char *text = NULL;
    CHECK(tuna_tokenizer_decode(tok, bad, 2, 0, &text, NULL, &err) == TUNA_ERR_INVALID, "id out of range");
    int32_t neg = -1;
    CHECK(tuna_tokenizer_decode(tok, &neg, 1, 0, &text, NULL, &err) == TUNA_ERR_INVALID, "negative id");
    tuna_tokenizer *t = NULL;
    CHECK(tuna_tokenizer_load("no/such/tokenizer.json", &t, &err) == TUNA_ERR_IO, "missing file");
    const char *docs[] = {"", "{", "[]", "{\"model\": 3}", "{\"model\": {\"vocab\": {\"a\": -1}, \"merges\": []}}",
                          "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
                          "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a a a\"]}}",
                          "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
                          "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                          "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        t = NULL;
        CHECK(tuna_tokenizer_load_json(docs[i], strlen(docs[i]), &t, &err) != TUNA_OK && !t, "doc %zu loaded", i);
    }
    tuna_ids ids = {0};
    CHECK(tuna_tokenizer_encode(tok, "", 0, &ids, &err) == TUNA_OK && ids.len == 0, "empty text");
    tuna_ids_free(&ids);
}

/* Pathological inputs: one huge word, a huge whitespace run, a huge run of
 * combining marks. They must encode (no regex stack overflow, no quadratic
 * blow-up) and round-trip. */
TEST(huge_runs_encode_and_round_trip) {
    const size_t n = 1 << 19;
    char *text = malloc(2 * n + 1);
    const char fill[][3] = {"a", " ", "\n", "\xcc\x81"};
    for (int k = 0; k < 4; k++) {
        size_t w = strlen(fill[k]), len = 0;
        if (k == 3) text[len++] = 'e';
        while (len + w <= n) { memcpy(text + len, fill[k], w); len += w; }
        tuna_ids ids = {0};
        tuna_error err = {0};
        REQUIRE(tuna_tokenizer_encode(tok, text, len, &ids, &err) == TUNA_OK, "fill %d: %s", k, err.message);
        char *back = NULL;
        size_t back_len = 0;
        REQUIRE(tuna_tokenizer_decode(tok, ids.data, ids.len, 0, &back, &back_len, &err) == TUNA_OK, "decode");
        /* NFC composes e + U+0301 into U+00E9 (one byte shorter) */
        CHECK(k == 3 ? back_len == len - 1 : (back_len == len && memcmp(back, text, len) == 0), "fill %d", k);
        CHECK(ids.len < len, "fill %d: %zu ids for %zu bytes", k, ids.len, len);
        free(back);
        tuna_ids_free(&ids);
    }
    free(text);
}

TEST(byte_level_map_is_gpt2s) {
    /* bytes_to_unicode: printable Latin-1 maps to itself, the rest to U+0100.. in order */
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        uint32_t cp = printable ? (uint32_t)b : next++;
        CHECK(tuna_byte_to_cp((unsigned char)b) == cp && tuna_cp_to_byte(cp) == b, "byte %d", b);
    }
    CHECK(tuna_cp_to_byte(0x144) == -1 && tuna_cp_to_byte(32) == -1, "outside the map");
}

/* The split regex is the one in tokenizer.json, not a built-in Qwen pattern. */
TEST(split_regex_comes_from_the_file) {
    const char *fmt = "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]},"
                      " \"pre_tokenizer\": %s}";
    const char *pre[] = {"null", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Isolated\"}",
                         "{\"type\": \"Split\", \"pattern\": {\"String\": \"ba\"}, \"behavior\": \"Isolated\"}"};
    const int32_t want[][4] = {{2, 2}, {0, 1, 0, 1}, {0, 1, 0, 1}};
    const size_t want_n[] = {2, 4, 4};
    for (int k = 0; k < 3; k++) {
        char json[512];
        snprintf(json, sizeof json, fmt, pre[k]);
        tuna_tokenizer *t = NULL;
        tuna_error err = {0};
        REQUIRE(tuna_tokenizer_load_json(json, strlen(json), &t, &err) == TUNA_OK, "%d: %s", k, err.message);
        tuna_ids ids = {0};
        tuna_tokenizer_encode(t, "abab", 4, &ids, &err);
        CHECK(ids.len == want_n[k] && memcmp(ids.data, want[k], ids.len * sizeof(int32_t)) == 0, "pre-tokenizer %d",
              k);
        tuna_ids_free(&ids);
        tuna_tokenizer_free(t);
    }
}

typedef struct {
    fixture *f;
    int ok;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *job = arg;
    job->ok = 1;
    for (size_t i = 0; i < job->f->n; i++) {
        fixture_line *l = &job->f->lines[i];
        tuna_ids ids = {0};
        if (tuna_tokenizer_encode(tok, l->text, l->len, &ids, NULL) != TUNA_OK || ids.len != l->n_ids ||
            memcmp(ids.data, l->ids, ids.len * sizeof(int32_t)) != 0)
            job->ok = 0;
        tuna_ids_free(&ids);
    }
    return NULL;
}

TEST(concurrent_encoding_is_safe) {
    fixture f = read_fixture(FIX "corpus.jsonl");
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].f = &f;
        pthread_create(&th[i], NULL, encode_all, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok, "thread %d got different ids", i);
    }
    free_fixture(&f);
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
    RUN(special_token_ids_match_spec);
    RUN(golden_ids_match_hugging_face);
    RUN(corpus_ids_match_hugging_face);
    RUN(invalid_utf8_is_replaced_like_python);
    RUN(added_token_flags_and_string_merges_match_hugging_face);
    RUN(decode_of_encode_is_nfc_text);
    RUN(streaming_decode_equals_decode);
    RUN(decode_skips_special_tokens_on_request);
    RUN(bad_input_is_an_error_not_a_crash);
    RUN(huge_runs_encode_and_round_trip);
    RUN(byte_level_map_is_gpt2s);
    RUN(split_regex_comes_from_the_file);
    RUN(concurrent_encoding_is_safe);
    tuna_tokenizer_free(tok);
    return test_summary();
}
