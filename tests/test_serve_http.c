/* `tuna serve` over loopback HTTP with the bundled model, in process: the
 * routes, chat (greedy answer equal to the chat session's, streaming equal
 * to non-streaming, stop strings, n), forced tool calls and JSON formats
 * valid against their schemas whatever the seed, images, the API key,
 * limits (413, 429 with Retry-After, 404/405), hostile requests answered
 * with OpenAI error objects, a client that disconnects cancelling its work,
 * concurrent chats decoding together with the answers they get alone, and a
 * bounded load test whose second wave must not grow the process's memory. */
#include "test.h"

#include "infer/json_constrain.h"
#include "infer/understand.h"
#include "io/image.h"
#include "serve_client.h"

#include <pthread.h>
#include <zlib.h>

static serve_fixture F;

static cJSON *post_ok(const char *path, const char *json, int *status) {
    http_response r;
    if (http_post_json(F.port, path, json, &r) != 0) {
        *status = -1;
        return NULL;
    }
    *status = r.status;
    cJSON *j = cJSON_Parse(r.body);
    if (r.status != 200) fprintf(stderr, "  %s -> %d %s\n", path, r.status, r.body);
    http_response_free(&r);
    return j;
}

static const char *message_content(const cJSON *resp, int choice) {
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), choice);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "message"), "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static const char *finish_reason(const cJSON *resp, int choice) {
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), choice);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    return cJSON_IsString(f) ? f->valuestring : "";
}

static double metric(const char *name) {
    http_response r;
    if (http_get(F.port, "/metrics", &r) != 0) return -1;
    double v = -1;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(r.body, key);
    if (p) v = strtod(p + strlen(key), NULL);
    http_response_free(&r);
    return v;
}

TEST(routes) {
    http_response r;
    REQUIRE(http_get(F.port, "/health", &r) == 0, "health");
    CHECK(r.status == 200 && strstr(r.body, "\"ok\""), "health %d %s", r.status, r.body);
    http_response_free(&r);
    REQUIRE(http_get(F.port, "/v1/models", &r) == 0, "models");
    CHECK(r.status == 200 && strstr(r.body, "\"tuna2-small\""), "models %s", r.body);
    http_response_free(&r);
    REQUIRE(http_get(F.port, "/", &r) == 0, "playground");
    CHECK(r.status == 200 && strstr(r.head, "text/html") && strstr(r.body, "Tuna-2 playground") &&
              strstr(r.body, "</html>"),
          "playground page (%zu bytes)", r.body_len);
    http_response_free(&r);
    REQUIRE(http_get(F.port, "/metrics", &r) == 0, "metrics");
    CHECK(r.status == 200 && strstr(r.body, "tuna_queue_length ") && strstr(r.body, "tuna_tokens_per_second ") &&
              strstr(r.body, "tuna_images_per_second ") && strstr(r.body, "tuna_errors_total "),
          "metrics %s", r.body);
    http_response_free(&r);
    REQUIRE(http_get(F.port, "/v2/nothing", &r) == 0, "404");
    CHECK(r.status == 404 && strstr(r.body, "\"error\""), "404 %d", r.status);
    http_response_free(&r);
    REQUIRE(http_get(F.port, "/v1/chat/completions", &r) == 0, "405");
    CHECK(r.status == 405, "405 %d", r.status);
    http_response_free(&r);
}

/* The server's greedy reply equals a chat session's on the same conversation. */
TEST(chat_matches_session) {
    const char *questions[] = {"Hello, who are you?", "What is a sandal?"};
    for (int q = 0; q < 2; q++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"temperature\":0,\"max_tokens\":40}",
                 questions[q]);
        int st;
        cJSON *resp = post_ok("/v1/chat/completions", body, &st);
        REQUIRE(st == 200 && resp, "status %d", st);
        const char *got = message_content(resp, 0);
        tuna_chat_session s;
        tuna_error err = {0};
        REQUIRE(tuna_chat_session_init(&s, &F.model, F.tok, 512, &F.pool, &err) == TUNA_OK, "session");
        tuna_chat_message m = {TUNA_ROLE_USER, questions[q]};
        tuna_reply_params p = {.sampling = {.temperature = 0, .top_p = 1}, .max_tokens = 40};
        tuna_rng rng;
        tuna_rng_seed(&rng, 0);
        char *want = NULL;
        int tokens = 0;
        REQUIRE(tuna_chat_session_reply(&s, &m, 1, &p, &rng, &want, &tokens, &err) == TUNA_OK, "reply");
        CHECK(got && want && strcmp(got, want) == 0, "server '%s' vs session '%s'", got, want);
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(resp, "usage");
        CHECK(cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens")->valueint == tokens, "completion tokens");
        CHECK(cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens")->valueint > 10, "prompt tokens");
        free(want);
        tuna_chat_session_free(&s);
        cJSON_Delete(resp);
    }
}

/* The content of an SSE body, and whether it ended with [DONE]. */
static char *sse_content(const char *body, int *done, int *chunks, char *finish, size_t fcap, int *usage_tokens) {
    size_t cap = strlen(body) + 1, len = 0;
    char *out = calloc(cap, 1);
    *done = 0;
    *chunks = 0;
    *usage_tokens = -1;
    finish[0] = '\0';
    for (const char *p = body; (p = strstr(p, "data: ")) != NULL;) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        if (!end) break;
        if (strncmp(p, "[DONE]", 6) == 0) {
            *done = 1;
            break;
        }
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(end - p));
        (*chunks)++;
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
        if (cJSON_IsString(c)) {
            size_t n = strlen(c->valuestring);
            if (len + n < cap) memcpy(out + len, c->valuestring, n), len += n;
        }
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        if (cJSON_IsString(f)) snprintf(finish, fcap, "%s", f->valuestring);
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
        if (cJSON_IsObject(u)) *usage_tokens = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valueint;
        cJSON_Delete(j);
        p = end;
    }
    return out;
}

TEST(streaming_equals_whole) {
    const char *base = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me about shirts\"}],\"temperature\":0.8,"
                       "\"seed\":11,\"max_tokens\":24,\"ignore_eos\":true";
    char body[512];
    snprintf(body, sizeof body, "%s}", base);
    int st;
    cJSON *whole = post_ok("/v1/chat/completions", body, &st);
    REQUIRE(st == 200, "whole");
    snprintf(body, sizeof body, "%s,\"stream\":true,\"stream_options\":{\"include_usage\":true}}", base);
    http_response r;
    REQUIRE(http_post_json(F.port, "/v1/chat/completions", body, &r) == 0, "stream");
    CHECK(r.status == 200 && strstr(r.head, "text/event-stream"), "SSE headers");
    int done, chunks, usage;
    char finish[32];
    char *text = sse_content(r.body, &done, &chunks, finish, sizeof finish, &usage);
    CHECK(done, "ends with data: [DONE]");
    CHECK(chunks >= 5, "streamed in pieces (%d chunks)", chunks);
    CHECK(strcmp(text, message_content(whole, 0)) == 0, "stream '%s' vs whole '%s'", text, message_content(whole, 0));
    CHECK(strcmp(finish, "length") == 0 && strcmp(finish_reason(whole, 0), "length") == 0, "length");
    CHECK(usage == 24, "usage chunk %d", usage);
    free(text);
    http_response_free(&r);
    cJSON_Delete(whole);
}

TEST(stop_strings_and_choices) {
    const char *base = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me about shirts\"}],\"temperature\":0.8,"
                       "\"seed\":5,\"max_tokens\":30,\"ignore_eos\":true";
    char body[1024];
    snprintf(body, sizeof body, "%s}", base);
    int st;
    cJSON *whole = post_ok("/v1/chat/completions", body, &st);
    REQUIRE(st == 200, "whole");
    const char *text = message_content(whole, 0);
    REQUIRE(text && strlen(text) > 12, "a long enough reply: %s", text);
    /* stop at a piece from the middle: the reply is cut before it, finish_reason stop */
    char stop[8];
    size_t at = strlen(text) / 2;
    memcpy(stop, text + at, 3);
    stop[3] = '\0';
    const char *first = strstr(text, stop);
    snprintf(body, sizeof body, "%s,\"stop\":[\"zzzz\",\"%s\"]}", base, stop);
    cJSON *cut = post_ok("/v1/chat/completions", body, &st);
    REQUIRE(st == 200, "stop request");
    const char *c = message_content(cut, 0);
    CHECK(c && strlen(c) == (size_t)(first - text) && strncmp(c, text, strlen(c)) == 0, "cut at '%s': '%s' of '%s'",
          stop, c, text);
    CHECK(strcmp(finish_reason(cut, 0), "stop") == 0, "finish stop");
    cJSON_Delete(cut);
    /* the same through a stream (the stop string's start is held back) */
    snprintf(body, sizeof body, "%s,\"stop\":\"%s\",\"stream\":true}", base, stop);
    http_response r;
    REQUIRE(http_post_json(F.port, "/v1/chat/completions", body, &r) == 0, "stream");
    int done, chunks, usage;
    char finish[32];
    char *s = sse_content(r.body, &done, &chunks, finish, sizeof finish, &usage);
    CHECK(strlen(s) == (size_t)(first - text) && strncmp(s, text, strlen(s)) == 0, "streamed cut '%s'", s);
    free(s);
    http_response_free(&r);
    /* n choices: each from its own seed (seed + k) */
    snprintf(body, sizeof body, "%s,\"n\":3}", base);
    cJSON *three = post_ok("/v1/chat/completions", body, &st);
    REQUIRE(st == 200, "n=3");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(three, "choices")) == 3, "three choices");
    /* (choice 0 draws from the same seed as the single reply, but three rows share each GEMV: see
     * concurrent_chats_match_alone) */
    CHECK(message_content(three, 0) && message_content(three, 1) && message_content(three, 2) &&
              (strcmp(message_content(three, 0), message_content(three, 1)) != 0 ||
               strcmp(message_content(three, 1), message_content(three, 2)) != 0),
          "the choices draw from different seeds");
    CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(three, "usage"), "completion_tokens")
                  ->valueint == 90,
          "usage over the choices");
    cJSON_Delete(three);
    cJSON_Delete(whole);
}

static const char *weather_tool =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather of a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":24},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\"},"
    "\"hourly\":{\"type\":\"boolean\"}},\"required\":[\"city\",\"unit\"]}}}";
static const char *time_tool =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"zone\":{\"type\":\"string\"},\"offsets\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},"
    "\"minItems\":1,\"maxItems\":3}},\"required\":[\"zone\",\"offsets\"]}}}";

static int valid_against(const char *schema_json, const char *text) {
    cJSON *j = cJSON_Parse(schema_json);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "function"), "parameters");
    tuna_json_schema *s = NULL;
    int ok = tuna_json_schema_compile(params ? params : j, 0, &s, NULL) == TUNA_OK &&
             tuna_json_schema_accepts(s, text, strlen(text));
    cJSON *parsed = cJSON_Parse(text);
    ok = ok && cJSON_IsObject(parsed);
    cJSON_Delete(parsed);
    tuna_json_schema_free(s);
    cJSON_Delete(j);
    return ok;
}

TEST(forced_tool_calls_follow_the_schema) {
    int calls = 0;
    for (int k = 0; k < 6; k++) {
        char body[4096];
        const char *choice = k % 2 == 0 ? "\"required\"" : "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}";
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"}],\"tools\":[%s,%s],"
                 "\"tool_choice\":%s,\"temperature\":%s,\"seed\":%d,\"max_tokens\":%d}",
                 weather_tool, time_tool, choice, k < 2 ? "0" : "1.2", k, k == 5 ? 60 : 400);
        int st;
        cJSON *resp = post_ok("/v1/chat/completions", body, &st);
        REQUIRE(st == 200 && resp, "status %d", st);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), 0), "message");
        const cJSON *tc = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), 0);
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        REQUIRE(cJSON_IsString(name) && cJSON_IsString(args), "a tool call (%d): %s", k, cJSON_PrintUnformatted(resp));
        CHECK(strcmp(finish_reason(resp, 0), "tool_calls") == 0, "finish_reason tool_calls (%d)", k);
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(msg, "content")), "no content (%d)", k);
        int weather = strcmp(name->valuestring, "get_weather") == 0;
        CHECK(weather || strcmp(name->valuestring, "get_time") == 0, "a known tool: %s", name->valuestring);
        if (k % 2 == 1) CHECK(!weather, "the named tool (%d)", k);
        CHECK(valid_against(weather ? weather_tool : time_tool, args->valuestring), "call %d arguments %s", k,
              args->valuestring);
        CHECK(strncmp(cJSON_GetObjectItemCaseSensitive(tc, "id")->valuestring, "call_", 5) == 0, "call id");
        calls++;
        cJSON_Delete(resp);
    }
    CHECK(calls == 6, "six forced calls");
}

TEST(json_formats) {
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
                         "\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":2}},"
                         "\"required\":[\"name\",\"age\",\"tags\"]}";
    for (int k = 0; k < 3; k++) {
        char body[2048];
        if (k < 2)
            snprintf(body, sizeof body,
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"Describe a person\"}],\"response_format\":"
                     "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"schema\":%s}},\"temperature\":%s,"
                     "\"seed\":%d}",
                     schema, k ? "1" : "0", k);
        else
            snprintf(body, sizeof body,
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"Describe a person\"}],\"response_format\":"
                     "{\"type\":\"json_object\"},\"temperature\":1,\"seed\":3}");
        int st;
        cJSON *resp = post_ok("/v1/chat/completions", body, &st);
        REQUIRE(st == 200, "status");
        const char *c = message_content(resp, 0);
        cJSON *parsed = c ? cJSON_Parse(c) : NULL;
        CHECK(c && (k < 2 ? valid_against(schema, c) : cJSON_IsObject(parsed)), "json %d: %s", k, c);
        cJSON_Delete(parsed);
        cJSON_Delete(resp);
    }
    int st;
    cJSON *resp = post_ok("/v1/chat/completions",
                          "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
                          "\"json_schema\",\"json_schema\":{\"schema\":{\"$ref\":\"#/a\"}}}}",
                          &st);
    CHECK(st == 400, "unsupported schema is a 400 (%d)", st);
    cJSON_Delete(resp);
}

static char *file_b64(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return tuna_serve_base64_encode(buf, n);
}

TEST(images_in_and_out) {
    char *img = file_b64("models/tuna2-small/demo/count.png");
    REQUIRE(img, "demo image");
    char *body = malloc(strlen(img) + 512);
    sprintf(body,
            "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"How many objects are "
            "there?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,%s\"}}]}],"
            "\"temperature\":0,\"max_tokens\":8}",
            img);
    int st;
    cJSON *resp = post_ok("/v1/chat/completions", body, &st);
    CHECK(st == 200 && message_content(resp, 0) && message_content(resp, 0)[0], "answer about an image");
    CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(resp, "usage"), "prompt_tokens")->valueint >
              64,
          "the image's 64 patches are in the prompt");
    cJSON_Delete(resp);
    free(body);
    free(img);

    resp = post_ok("/v1/images/generations", "{\"prompt\":\"a red circle\",\"n\":2,\"steps\":2,\"seed\":3}", &st);
    REQUIRE(st == 200, "generation");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(resp, "data");
    CHECK(cJSON_GetArraySize(data) == 2, "two images");
    for (int k = 0; k < cJSON_GetArraySize(data); k++) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, k), "b64_json");
        uint8_t *png = NULL;
        size_t n = 0;
        tuna_serve_error e = {0};
        REQUIRE(cJSON_IsString(b) &&
                    tuna_serve_base64_decode(b->valuestring, strlen(b->valuestring), 1 << 24, &png, &n, &e) == TUNA_OK,
                "base64");
        tuna_image im = {0};
        CHECK(tuna_image_decode_memory(png, n, NULL, &im, NULL) == TUNA_OK && im.width == 32 && im.height == 32,
              "a 32x32 PNG");
        CHECK(memmem(png, n, "tEXtparameters", 14) && memmem(png, n, "a red circle", 12) && memmem(png, n, "Seed: ", 6),
              "parameters in a text chunk");
        tuna_image_free(&im);
        free(png);
    }
    cJSON_Delete(resp);

    /* an edit through multipart/form-data */
    FILE *f = fopen("models/tuna2-small/demo/shapes.png", "rb");
    REQUIRE(f, "shapes.png");
    char png[65536];
    size_t n = fread(png, 1, sizeof png, f);
    fclose(f);
    char *mp = malloc(n + 1024);
    int len = sprintf(mp,
                      "--b0undary\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it blue\r\n"
                      "--b0undary\r\nContent-Disposition: form-data; name=\"steps\"\r\n\r\n2\r\n"
                      "--b0undary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"s.png\"\r\n"
                      "Content-Type: image/png\r\n\r\n");
    memcpy(mp + len, png, n);
    len += (int)n;
    len += sprintf(mp + len, "\r\n--b0undary--\r\n");
    http_response r;
    REQUIRE(http_request_full(F.port, "POST", "/v1/images/edits", "", "multipart/form-data; boundary=b0undary", mp,
                              (size_t)len, &r) == 0,
            "edit");
    CHECK(r.status == 200 && strstr(r.body, "\"b64_json\""), "edit %d %.200s", r.status, r.body);
    http_response_free(&r);
    free(mp);
}

/* Hostile input: every request gets an OpenAI error object and the server stays up. */
TEST(hostile_requests) {
    char *deep = malloc(200010);
    for (int i = 0; i < 100000; i++) deep[i] = '[';
    for (int i = 0; i < 100000; i++) deep[100000 + i] = ']';
    deep[200000] = '\0';
    /* a PNG header claiming 60000 x 60000 pixels: refused before any pixel is decoded */
    uint8_t bomb[64] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                        0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60, 8, 2, 0, 0, 0};
    uint32_t crc = (uint32_t)crc32(crc32(0, Z_NULL, 0), bomb + 12, 17);
    bomb[29] = (uint8_t)(crc >> 24), bomb[30] = (uint8_t)(crc >> 16), bomb[31] = (uint8_t)(crc >> 8), bomb[32] = (uint8_t)crc;
    char *bomb64 = tuna_serve_base64_encode(bomb, 33);
    char bomb_body[512];
    snprintf(bomb_body, sizeof bomb_body,
             "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
             "\"data:image/png;base64,%s\"}}]}]}",
             bomb64);
    free(bomb64);
    struct {
        const char *path, *ctype, *body;
        int want;
    } cases[] = {
        {"/v1/chat/completions", "application/json", "", 400},
        {"/v1/chat/completions", "application/json", "{\"messages\":", 400},
        {"/v1/chat/completions", "application/json", deep, 400},
        {"/v1/chat/completions", "application/json", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                                     "\"max_tokens\":1e308}", 400},
        {"/v1/chat/completions", "application/json", "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}],"
                                                     "\"max_tokens\":2}", 200},
        {"/v1/chat/completions", "application/json", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                                                     "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,"
                                                     "AAAA\"}}]}]}", 400},
        {"/v1/chat/completions", "application/json", bomb_body, 413},
        {"/v1/chat/completions", "application/json", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                                     "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
                                                     "\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{"
                                                     "\"$ref\":\"#\"}}}}}],\"tool_choice\":\"required\"}", 400},
        {"/v1/images/generations", "application/json", "{\"prompt\":\"x\",\"size\":\"33x32\"}", 400},
        {"/v1/images/generations", "application/json", "{\"prompt\":\"x\",\"steps\":-1}", 400},
        {"/v1/images/edits", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; "
                                                                 "name=\"image\"\r\n\r\nnot an image\r\n--zz\r\n"
                                                                 "Content-Disposition: form-data; name=\"prompt\"\r\n"
                                                                 "\r\nx\r\n--zz--\r\n", 400},
        {"/v1/images/edits", "multipart/form-data", "--zz\r\n\r\n", 400},
        {"/v1/images/edits", "text/plain", "hello", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_response r;
        REQUIRE(http_request_full(F.port, "POST", cases[i].path, "", cases[i].ctype, cases[i].body,
                                  strlen(cases[i].body), &r) == 0,
                "case %zu answered", i);
        CHECK(r.status == cases[i].want, "case %zu: %d, wanted %d: %.300s", i, r.status, cases[i].want, r.body);
        if (cases[i].want != 200) {
            cJSON *j = cJSON_Parse(r.body);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
            CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")) &&
                      cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "type")),
                  "case %zu: an OpenAI error object", i);
            cJSON_Delete(j);
        }
        http_response_free(&r);
    }
    free(deep);
    /* raw garbage, a request line only, headers then silence: the server stays up */
    const char *raw[] = {"GARBAGE\r\n\r\n", "POST /v1/chat/completions HTTP/1.1\r\n",
                         "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 100\r\n\r\n{\"mess"};
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        int fd = http_connect(F.port);
        REQUIRE(fd >= 0, "connect");
        http_write_all(fd, raw[i], strlen(raw[i]));
        close(fd);
    }
    /* a body larger than the limit announced in Content-Length: 413 before it is read */
    int fd = http_connect(F.port);
    REQUIRE(fd >= 0, "connect");
    const char *huge = "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                       "Content-Length: 99999999999\r\n\r\n{";
    http_write_all(fd, huge, strlen(huge));
    http_response r;
    CHECK(http_read_response(fd, 5000, &r) == 0 && r.status == 413, "413 %d", r.status);
    http_response_free(&r);
    close(fd);
    REQUIRE(http_get(F.port, "/health", &r) == 0, "still up");
    CHECK(r.status == 200, "health after the hostile requests");
    http_response_free(&r);
}

/* A client that goes away mid-stream: its slot is freed and decoding stops. */
TEST(disconnect_cancels) {
    int fd = http_connect(F.port);
    REQUIRE(fd >= 0, "connect");
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Talk\"}],\"stream\":true,\"ignore_eos\":true,"
                       "\"max_tokens\":3000}";
    REQUIRE(http_send(fd, "POST", "/v1/chat/completions", "", "application/json", body, strlen(body)) == 0, "send");
    char buf[4096];
    REQUIRE(recv(fd, buf, sizeof buf, 0) > 0, "the stream began");
    double running = -1;
    for (int i = 0; i < 100 && running != 1; i++) {
        running = metric("tuna_requests_running");
        usleep(10000);
    }
    CHECK(running == 1, "one chat running (%g)", running);
    close(fd);
    double t0 = client_now();
    while (client_now() - t0 < 5 && metric("tuna_requests_running") != 0) usleep(20000);
    CHECK(metric("tuna_requests_running") == 0, "cancelled within %.2f s", client_now() - t0);
    double a = metric("tuna_tokens_generated_total");
    usleep(200000);
    double b = metric("tuna_tokens_generated_total");
    CHECK(a == b, "no more tokens after the disconnect (%g -> %g)", a, b);
}

typedef struct {
    const char *body;
    char *content;
    int status;
} chat_thread;

static void *run_chat(void *arg) {
    chat_thread *t = arg;
    http_response r;
    t->status = http_post_json(F.port, "/v1/chat/completions", t->body, &r) == 0 ? r.status : -1;
    cJSON *j = cJSON_Parse(r.body);
    const char *c = message_content(j, 0);
    t->content = c ? strdup(c) : NULL;
    cJSON_Delete(j);
    http_response_free(&r);
    return NULL;
}

/* Four chats at once decode in shared steps and get what they get alone. */
TEST(concurrent_chats_match_alone) {
    char bodies[4][512];
    const char *q[4] = {"Hello", "What is a sneaker?", "Tell me about bags", "Count the stars"};
    char *alone[4];
    for (int k = 0; k < 4; k++) {
        snprintf(bodies[k], sizeof bodies[k],
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"temperature\":0.7,\"seed\":%d,"
                 "\"max_tokens\":%d,\"ignore_eos\":true}",
                 q[k], k, 20 + 7 * k);
        chat_thread t = {bodies[k], NULL, 0};
        run_chat(&t);
        alone[k] = t.content;
    }
    chat_thread t[4];
    pthread_t th[4];
    for (int k = 0; k < 4; k++) {
        t[k] = (chat_thread){bodies[k], NULL, 0};
        pthread_create(&th[k], NULL, run_chat, &t[k]);
    }
    for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
    /* a row's products are summed in another order when it shares the GEMV with others (4 rows per pass):
     * a near tie may flip one sampled token in a long while, so one reply of four may differ */
    int same = 0;
    for (int k = 0; k < 4; k++) {
        CHECK(t[k].status == 200 && t[k].content && alone[k], "chat %d answered (%d)", k, t[k].status);
        int eq = t[k].content && alone[k] && strcmp(t[k].content, alone[k]) == 0;
        if (!eq) printf("  chat %d together '%s' vs alone '%s'\n", k, t[k].content, alone[k]);
        same += eq;
        free(t[k].content);
        free(alone[k]);
    }
    CHECK(same >= 3, "%d of 4 chats decoded together equal their replies alone", same);
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* Two equal waves of concurrent chats and images (bounded count, loopback): the second must not grow memory. */
TEST(load_waves_keep_memory) {
    long rss[3];
    rss[0] = rss_kb();
    for (int wave = 0; wave < 2; wave++) {
        for (int round = 0; round < 4; round++) {
            chat_thread t[4];
            pthread_t th[4];
            char bodies[4][256];
            for (int k = 0; k < 4; k++) {
                snprintf(bodies[k], sizeof bodies[k],
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"Story %d\"}],\"temperature\":1,\"seed\":%d,"
                         "\"max_tokens\":32,\"ignore_eos\":true%s}",
                         k, round * 4 + k, k == 3 ? ",\"stream\":true" : "");
                t[k] = (chat_thread){bodies[k], NULL, 0};
                pthread_create(&th[k], NULL, run_chat, &t[k]);
            }
            int st;
            cJSON *img = post_ok("/v1/images/generations", "{\"prompt\":\"a shoe\",\"steps\":2}", &st);
            cJSON_Delete(img);
            for (int k = 0; k < 4; k++) {
                pthread_join(th[k], NULL);
                CHECK(t[k].status == 200, "wave %d request %d: %d", wave, k, t[k].status);
                free(t[k].content);
            }
        }
        rss[wave + 1] = rss_kb();
    }
    printf("  RSS: start %ld kB, after wave 1 %ld kB, after wave 2 %ld kB\n", rss[0], rss[1], rss[2]);
#if defined(__SANITIZE_ADDRESS__)
    printf("  (AddressSanitizer's quarantine holds freed memory: RSS is not compared)\n");
#else
    CHECK(rss[2] - rss[1] < 4096, "the second wave grew RSS by %ld kB", rss[2] - rss[1]);
#endif
}

/* Poll /metrics (with the key) until its text holds both lines; 0 after 5 s. */
static int wait_metrics(const char *hdr, const char *line1, const char *line2) {
    for (int i = 0; i < 250; i++) {
        http_response m;
        int ok = http_request_full(F.port, "GET", "/metrics", hdr, NULL, NULL, 0, &m) == 0 && strstr(m.body, line1) &&
                 strstr(m.body, line2);
        http_response_free(&m);
        if (ok) return 1;
        usleep(20000);
    }
    return 0;
}

/* Bounded queue: one slot, one waiting request; the third gets 429 with Retry-After. */
TEST(queue_and_key) {
    serve_fixture_stop(&F);
    tuna_server_options o;
    tuna_server_default_options(&o);
    o.api_key = "sekret";
    o.log = getenv("SERVE_TEST_LOG") != NULL;
    o.context = 8192; /* room for a first request long enough to keep the second one waiting */
    REQUIRE(serve_fixture_start(&F, 1, 1, &o) == 0, "restart");
    http_response r;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2}";
    REQUIRE(http_post_json(F.port, "/v1/chat/completions", body, &r) == 0, "no key");
    CHECK(r.status == 401 && strstr(r.body, "invalid_api_key"), "401 without the key (%d)", r.status);
    http_response_free(&r);
    REQUIRE(http_request_full(F.port, "POST", "/v1/chat/completions", "Authorization: Bearer wrong\r\n",
                              "application/json", body, strlen(body), &r) == 0,
            "wrong key");
    CHECK(r.status == 401, "401 with a wrong key");
    http_response_free(&r);
    REQUIRE(http_request_full(F.port, "POST", "/v1/chat/completions", "Authorization: Bearer sekret\r\n",
                              "application/json", body, strlen(body), &r) == 0,
            "key");
    CHECK(r.status == 200, "200 with the key (%d)", r.status);
    http_response_free(&r);
    REQUIRE(http_get(F.port, "/health", &r) == 0, "health");
    CHECK(r.status == 200, "health needs no key");
    http_response_free(&r);

    const char *hdr = "Authorization: Bearer sekret\r\n";
    const char *longb = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":8000,\"ignore_eos\":true,"
                        "\"stream\":true}";
    int a = http_connect(F.port), b = http_connect(F.port);
    REQUIRE(a >= 0 && b >= 0, "connect");
    http_send(a, "POST", "/v1/chat/completions", hdr, "application/json", longb, strlen(longb));
    char buf[256];
    REQUIRE(recv(a, buf, sizeof buf, 0) > 0, "first answered");
    /* a's first bytes (the role chunk) may come before the engine takes it from the queue */
    CHECK(wait_metrics(hdr, "\ntuna_queue_length 0\n", "\ntuna_requests_running 1\n"), "the first request runs");
    http_send(b, "POST", "/v1/chat/completions", hdr, "application/json", longb, strlen(longb));
    CHECK(wait_metrics(hdr, "\ntuna_queue_length 1\n", "\ntuna_requests_running 1\n"),
          "the second request waits in the queue");
    REQUIRE(http_request_full(F.port, "POST", "/v1/chat/completions", hdr, "application/json", body, strlen(body), &r) ==
                0,
            "third");
    CHECK(r.status == 429 && strstr(r.head, "Retry-After:") && strstr(r.body, "rate_limit_error"), "429 (%d) %s",
          r.status, r.head);
    http_response_free(&r);
    close(a);
    close(b);
}

int main(void) {
    if (serve_fixture_load(&F) != 0 || serve_fixture_start(&F, 8, 64, NULL) != 0) {
        printf("FAIL serve fixture\nRESULT passed=0 failed=1\n");
        return 1;
    }
    RUN(routes);
    RUN(chat_matches_session);
    RUN(streaming_equals_whole);
    RUN(stop_strings_and_choices);
    RUN(forced_tool_calls_follow_the_schema);
    RUN(json_formats);
    RUN(images_in_and_out);
    RUN(hostile_requests);
    RUN(disconnect_cancels);
    RUN(concurrent_chats_match_alone);
    RUN(load_waves_keep_memory);
    RUN(queue_and_key);
    serve_fixture_free(&F);
    return test_summary();
}
