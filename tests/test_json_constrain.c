/* JSON-schema constrained decoding (src/infer/json_constrain.c): documents
 * accepted and refused, prefixes, the fewest closing bytes, schemas refused,
 * and random walks over the bundled tokenizer's vocabulary (each step any
 * allowed token, steering to the end when the budget runs low) that must all
 * end in a document cJSON parses and the schema accepts. */
#include "test.h"

#include "core/rng.h"
#include "infer/json_constrain.h"
#include "text/tokenizer.h"

static tuna_json_schema *compile(const char *json, int object_only) {
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    tuna_json_schema *s = NULL;
    tuna_error err = {0};
    if (tuna_json_schema_compile(j, object_only, &s, &err) != TUNA_OK) fprintf(stderr, "  compile: %s\n", err.message);
    cJSON_Delete(j);
    return s;
}

static int accepts(const tuna_json_schema *s, const char *text) { return tuna_json_schema_accepts(s, text, strlen(text)); }

static const char *weather =
    "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\",\"maxLength\":20},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\"},"
    "\"hourly\":{\"type\":\"boolean\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3},"
    "\"ratio\":{\"type\":[\"number\",\"null\"]}},\"required\":[\"location\",\"unit\"]}";

TEST(accepts_and_refuses) {
    tuna_json_schema *s = compile(weather, 0);
    REQUIRE(s, "compiled");
    CHECK(accepts(s, "{\"location\":\"Paris\",\"unit\":\"celsius\"}"), "minimal");
    CHECK(accepts(s, "{\"location\":\"P\\\"x\",\"unit\":\"fahrenheit\",\"days\":-12,\"hourly\":true,"
                     "\"tags\":[\"a\",\"b\"],\"ratio\":0.5}"),
          "all properties");
    CHECK(accepts(s, "{\"location\":\"\xc3\xa9t\xc3\xa9\",\"unit\":\"celsius\",\"ratio\":null}"), "UTF-8 and null");
    CHECK(!accepts(s, "{\"unit\":\"celsius\",\"location\":\"Paris\"}"), "keys out of schema order");
    CHECK(!accepts(s, "{\"location\":\"Paris\"}"), "missing required");
    CHECK(!accepts(s, "{\"location\":\"Paris\",\"unit\":\"kelvin\"}"), "not in the enum");
    CHECK(!accepts(s, "{\"location\":\"Paris\",\"unit\":\"celsius\",\"days\":1.5}"), "integer with a fraction");
    CHECK(!accepts(s, "{\"location\":\"Paris\",\"unit\":\"celsius\",\"tags\":[\"a\",\"b\",\"c\",\"d\"]}"),
          "more than maxItems");
    CHECK(!accepts(s, "{\"location\":\"123456789012345678901\",\"unit\":\"celsius\"}"), "longer than maxLength");
    CHECK(!accepts(s, "{\"location\": \"Paris\",\"unit\":\"celsius\"}"), "whitespace is not written");
    CHECK(!accepts(s, "{\"location\":\"Paris\",\"unit\":\"celsius\"}x"), "bytes after the value");
    CHECK(!accepts(s, "{\"location\":\"\xc3\",\"unit\":\"celsius\"}"), "broken UTF-8");
    CHECK(!accepts(s, "{\"location\":\"a\\qb\",\"unit\":\"celsius\"}"), "bad escape");
    CHECK(!accepts(s, "{\"location\":\"Paris\",\"unit\":\"celsius\",\"days\":01}"), "leading zero");
    tuna_json_schema_free(s);

    s = compile(NULL, 0);
    REQUIRE(s, "any value");
    CHECK(accepts(s, "[1,{\"a\":[true,null,\"x\"]},-0.25]") && accepts(s, "12") && accepts(s, "\"s\""), "any");
    CHECK(!accepts(s, "[1,]") && !accepts(s, "{\"a\"}") && !accepts(s, "tru"), "invalid JSON");
    tuna_json_schema_free(s);
    s = compile(NULL, 1);
    REQUIRE(s, "json_object");
    CHECK(accepts(s, "{\"k\":[1,2]}") && !accepts(s, "[1]") && !accepts(s, "3"), "json_object wants an object");
    tuna_json_schema_free(s);
    s = compile("{\"enum\":[1,12,\"x\"]}", 0);
    REQUIRE(s, "enum");
    CHECK(accepts(s, "1") && accepts(s, "12") && accepts(s, "\"x\"") && !accepts(s, "2") && !accepts(s, "123"),
          "literal prefixes");
    tuna_json_schema_free(s);
}

TEST(prefixes_and_close_bytes) {
    tuna_json_schema *s = compile(weather, 0);
    REQUIRE(s, "compiled");
    const char *doc = "{\"location\":\"Paris\",\"unit\":\"celsius\",\"days\":3}";
    tuna_json_matcher m;
    tuna_json_matcher_init(&m, s);
    CHECK(tuna_json_close_bytes(&m) == (int)strlen("{\"location\":\"\",\"unit\":\"celsius\"}"),
          "fewest bytes of the whole object: %d", tuna_json_close_bytes(&m));
    for (size_t i = 0; i < strlen(doc); i++) {
        CHECK(!tuna_json_matcher_done(&m), "done early at %zu", i);
        CHECK(tuna_json_matcher_feed(&m, doc + i, 1), "prefix refused at %zu", i);
    }
    CHECK(tuna_json_matcher_done(&m) && tuna_json_close_bytes(&m) == 0, "complete");
    tuna_json_matcher_init(&m, s);
    tuna_json_matcher_feed(&m, "{\"location\":\"Pa", 15);
    CHECK(tuna_json_close_bytes(&m) == (int)strlen("\",\"unit\":\"celsius\"}"), "close from inside a string: %d",
          tuna_json_close_bytes(&m));
    tuna_json_schema_free(s);
}

TEST(schemas_refused) {
    const char *bad[] = {
        "{\"$ref\":\"#/x\"}", "{\"type\":\"tuple\"}", "{\"anyOf\":[{\"type\":\"string\"},{\"enum\":[\"a\"]}]}",
        "{\"type\":\"string\",\"minLength\":1000}", "{\"type\":\"array\",\"items\":[{}]}", "{\"enum\":[]}",
        "{\"type\":\"array\",\"minItems\":99}", "[1]", "{\"type\":\"object\",\"required\":[1]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *j = cJSON_Parse(bad[i]);
        tuna_json_schema *s = NULL;
        tuna_error err = {0};
        tuna_status st = tuna_json_schema_compile(j, 0, &s, &err);
        CHECK(st != TUNA_OK && !s && err.message[0], "schema %s accepted", bad[i]);
        cJSON_Delete(j);
    }
    /* a deep recursion of nested objects is refused, not a crash */
    char deep[4096] = "";
    for (int i = 0; i < 60; i++) strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 60; i++) strcat(deep, "}");
    cJSON *j = cJSON_Parse(deep);
    tuna_json_schema *s = NULL;
    CHECK(tuna_json_schema_compile(j, 0, &s, NULL) != TUNA_OK, "deep schema refused");
    cJSON_Delete(j);
}

/* Random walks: each step a random allowed token; when the budget left is
 * near the closing bytes, the token that brings the end nearest. */
static int walk(const tuna_json_schema *s, const tuna_tokenizer *tok, int vocab, uint64_t seed, int budget,
                char *out, size_t cap) {
    tuna_json_matcher m;
    tuna_json_matcher_init(&m, s);
    uint8_t *allowed = malloc((size_t)vocab);
    int *close = malloc(sizeof(int) * (size_t)vocab);
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    size_t len = 0;
    int steps = 0, ok = 1;
    while (!tuna_json_matcher_done(&m) && ok) {
        if (tuna_json_matcher_can_end(&m) && tuna_rng_below(&rng, 4) == 0) break;
        int n = tuna_json_allowed_tokens(&m, tok, vocab, allowed, close);
        if (n == 0) { ok = 0; break; }
        int pick = -1;
        int finishing = budget - steps <= tuna_json_close_bytes(&m) + 2;
        if (finishing) {
            for (int id = 0; id < vocab; id++)
                if (allowed[id] && (pick < 0 || close[id] < close[pick])) pick = id;
        } else {
            int r = (int)tuna_rng_below(&rng, (uint64_t)n);
            for (int id = 0; id < vocab; id++)
                if (allowed[id] && r-- == 0) { pick = id; break; }
        }
        size_t bl;
        const char *b = tuna_tokenizer_token_bytes(tok, pick, &bl);
        if (len + bl + 1 > cap || !tuna_json_matcher_feed(&m, b, bl)) { ok = 0; break; }
        memcpy(out + len, b, bl);
        len += bl;
        steps++;
    }
    out[len] = '\0';
    free(allowed);
    free(close);
    return ok && steps <= budget;
}

TEST(random_walks_end_valid) {
    char path[4096];
    tuna_tokenizer *tok = NULL;
    REQUIRE(tuna_tokenizer_load("models/tuna2-small/tokenizer.json.gz", &tok, NULL) == TUNA_OK, "tokenizer");
    (void)path;
    int vocab = tuna_tokenizer_vocab_size(tok);
    const char *schemas[] = {weather, NULL, "{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":2}",
                             "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":"
                             "{\"b\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"y\",3]}}},\"required\":[\"b\"]}},"
                             "\"required\":[\"a\"]}"};
    char out[8192];
    int walks = 0;
    for (size_t k = 0; k < sizeof schemas / sizeof schemas[0]; k++) {
        tuna_json_schema *s = compile(schemas[k], k == 1);
        REQUIRE(s, "schema %zu", k);
        for (uint64_t seed = 0; seed < 12; seed++) {
            int budget = 60 + (int)seed * 10;
            int ok = walk(s, tok, vocab, seed * 7 + k, budget, out, sizeof out);
            CHECK(ok, "walk %zu/%llu did not end within %d tokens: %s", k, (unsigned long long)seed, budget, out);
            CHECK(accepts(s, out), "walk output refused: %s", out);
            cJSON *j = cJSON_Parse(out);
            CHECK(j != NULL, "cJSON cannot parse %s", out);
            cJSON_Delete(j);
            walks++;
        }
        tuna_json_schema_free(s);
    }
    CHECK(walks == 48, "walks");
    tuna_tokenizer_free(tok);
}

int main(void) {
    RUN(accepts_and_refuses);
    RUN(prefixes_and_close_bytes);
    RUN(schemas_refused);
    RUN(random_walks_end_valid);
    return test_summary();
}
