/* The HTTP side of `tuna serve` (see server.h). */
#include "serve/server.h"

#include "infer/prompts.h"
#include "io/image.h"
#include "serve/chat_prompt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#if MHD_VERSION < 0x00097002
typedef int mhd_result;
#else
typedef enum MHD_Result mhd_result;
#endif

#define POLL_MS 50 /* how often a waiting connection looks at its socket */

struct tuna_server {
    const tuna_model *model;
    const tuna_tokenizer *tok;
    tuna_serve_engine *engine;
    tuna_server_options o;
    char *host, *api_key, *model_name;
    struct MHD_Daemon *daemon;
    int listen_fd;
    int port;
    atomic_int stopping;
    atomic_ullong counter;
};

void tuna_server_default_options(tuna_server_options *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->model_name = "tuna2";
    tuna_serve_default_limits(&o->limits);
    o->max_connections = 64;
    o->idle_timeout_s = 60;
    o->request_timeout_s = 600;
    o->context = 4096;
    o->default_steps = 50;
}

/* ---- sizes ------------------------------------------------------------------------ */

void tuna_serve_image_size(int patch, int image_h, int image_w, int want_h, int want_w, int *height, int *width) {
    if (want_h > 0 && want_w > 0) {
        *height = want_h;
        *width = want_w;
    } else if (patch == 16) {
        tuna_image_pick_bucket(image_w, image_h, tuna_buckets_512, 5, height, width);
    } else {
        *height = *width = 8 * patch;
    }
}

tuna_status tuna_serve_generation_size(int patch, int width, int height, int *out_h, int *out_w, tuna_serve_error *e) {
    static const int standard[][2] = {{256, 256},   {512, 512},   {1024, 1024}, {1792, 1024},
                                      {1024, 1792}, {1536, 1024}, {1024, 1536}};
    if (width == 0 || height == 0) {
        *out_h = *out_w = patch == 16 ? 512 : 8 * patch;
        return TUNA_OK;
    }
    for (size_t i = 0; i < sizeof standard / sizeof standard[0]; i++) {
        if (standard[i][0] != width || standard[i][1] != height) continue;
        if (patch == 16) {
            const tuna_bucket *b = width >= 1024 || height >= 1024 ? tuna_buckets_1024 : tuna_buckets_512;
            tuna_image_pick_bucket(width, height, b, 5, out_h, out_w);
        } else {
            *out_h = *out_w = 8 * patch; /* the model's one bucket */
        }
        return TUNA_OK;
    }
    if (width % patch || height % patch)
        return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "size",
                               "size %dx%d: each side must be a multiple of the model's patch size %d (or a standard "
                               "OpenAI size)",
                               width, height, patch);
    *out_h = height;
    *out_w = width;
    return TUNA_OK;
}

/* ---- PNG text chunk ------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

tuna_status tuna_serve_png_with_text(const uint8_t *png, size_t n, const char *text, uint8_t **out, size_t *out_n,
                                     tuna_error *err) {
    *out = NULL;
    const size_t ihdr_end = 8 + 4 + 4 + 13 + 4;
    if (n < ihdr_end || memcmp(png + 12, "IHDR", 4) != 0) return tuna_fail(err, TUNA_ERR_FORMAT, "not a PNG");
    int ascii = 1;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p >= 0x80) ascii = 0;
    static const char key[] = "parameters";
    size_t tl = strlen(text);
    /* tEXt: keyword NUL text (Latin-1); iTXt: keyword NUL flag method language NUL translated NUL text (UTF-8) */
    size_t data = sizeof key + (ascii ? 0 : 4) + tl;
    if (data > 0x7fffffff) return tuna_fail(err, TUNA_ERR_LIMIT, "text chunk too large");
    size_t total = n + 12 + data;
    uint8_t *b = malloc(total);
    if (!b) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    memcpy(b, png, ihdr_end);
    uint8_t *c = b + ihdr_end;
    put_be32(c, (uint32_t)data);
    memcpy(c + 4, ascii ? "tEXt" : "iTXt", 4);
    uint8_t *d = c + 8;
    memcpy(d, key, sizeof key);
    d += sizeof key;
    if (!ascii) {
        memset(d, 0, 4); /* not compressed, method 0, no language, no translated keyword */
        d += 4;
    }
    memcpy(d, text, tl);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, c + 4, (uInt)(4 + data));
    put_be32(c + 8 + data, (uint32_t)crc);
    memcpy(c + 12 + data, png + ihdr_end, n - ihdr_end);
    *out = b;
    *out_n = total;
    return TUNA_OK;
}

/* ---- plumbing ---------------------------------------------------------------------------- */

typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
    int rejected; /* a response was queued before the body */
} conn_ctx;

static void log_line(const tuna_server *s, const char *method, const char *url, int answered, double t0) {
    if (!s->o.log) return;
    fprintf(stderr, "tuna serve: %s %s %s %.3fs\n", method, url, answered ? "answered" : "closed",
            tuna_now_seconds() - t0);
}

static mhd_result send_text(struct MHD_Connection *c, int status, const char *type, char *text, size_t len,
                            const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    mhd_result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static mhd_result send_json(struct MHD_Connection *c, int status, cJSON *j) {
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) return MHD_NO;
    return send_text(c, status, "application/json", text, strlen(text), NULL);
}

static mhd_result send_error(tuna_server *s, struct MHD_Connection *c, const tuna_serve_error *e) {
    tuna_serve_count_error(s->engine);
    char *text = tuna_serve_error_json(e);
    if (!text) return MHD_NO;
    return send_text(c, e->status ? e->status : 500, "application/json", text, strlen(text),
                     e->status == 429 ? "1" : NULL);
}

static mhd_result fail(tuna_server *s, struct MHD_Connection *c, int status, const char *type, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static mhd_result fail(tuna_server *s, struct MHD_Connection *c, int status, const char *type, const char *code,
                       const char *fmt, ...) {
    tuna_serve_error e = {0};
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tuna_serve_fail(&e, status, type, code, NULL, "%s", msg);
    return send_error(s, c, &e);
}

/* 1 when the client has closed its side (or the socket broke). */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    int fd = ci->connect_fd;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return 1;
    if (p.revents & POLLIN) {
        char b;
        ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return r == 0;
    }
    return 0;
}

static void new_id(tuna_server *s, const char *prefix, char *buf, size_t cap) {
    unsigned long long k = atomic_fetch_add(&s->counter, 1) + 1;
    unsigned long long t = (unsigned long long)time(NULL);
    unsigned long long x = (k * 0x9E3779B97F4A7C15ull) ^ (t << 20) ^ (unsigned long long)getpid();
    snprintf(buf, cap, "%s%016llx%08llx", prefix, x, k & 0xffffffffull);
}

static uint64_t fresh_seed(tuna_server *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t k = atomic_fetch_add(&s->counter, 1) + 1;
    return ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (k * 0x9E3779B97F4A7C15ull);
}

/* ---- GET handlers ---------------------------------------------------------------------------- */

static mhd_result handle_models(tuna_server *s, struct MHD_Connection *c) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "tuna");
    cJSON_AddItemToArray(data, m);
    return send_json(c, 200, root);
}

static mhd_result handle_metrics(tuna_server *s, struct MHD_Connection *c) {
    tuna_serve_stats st;
    tuna_serve_engine_stats(s->engine, &st);
    char *text = malloc(4096);
    if (!text) return MHD_NO;
    int n = snprintf(
        text, 4096,
        "# HELP tuna_queue_length Requests waiting for the engine.\n# TYPE tuna_queue_length gauge\n"
        "tuna_queue_length %d\n"
        "# HELP tuna_requests_running Chats decoding and images generating now.\n"
        "# TYPE tuna_requests_running gauge\ntuna_requests_running %d\n"
        "# HELP tuna_slots Chats the engine decodes together at most.\n# TYPE tuna_slots gauge\ntuna_slots %d\n"
        "# HELP tuna_tokens_generated_total Completion tokens generated.\n"
        "# TYPE tuna_tokens_generated_total counter\ntuna_tokens_generated_total %llu\n"
        "# HELP tuna_tokens_per_second Completion tokens per second over the last 10 seconds.\n"
        "# TYPE tuna_tokens_per_second gauge\ntuna_tokens_per_second %.2f\n"
        "# HELP tuna_images_generated_total Images generated or edited.\n"
        "# TYPE tuna_images_generated_total counter\ntuna_images_generated_total %llu\n"
        "# HELP tuna_images_per_second Images per second over the last 10 seconds.\n"
        "# TYPE tuna_images_per_second gauge\ntuna_images_per_second %.3f\n"
        "# HELP tuna_requests_total Requests queued, by kind.\n# TYPE tuna_requests_total counter\n"
        "tuna_requests_total{kind=\"chat\"} %llu\ntuna_requests_total{kind=\"image\"} %llu\n"
        "# HELP tuna_requests_rejected_total Requests refused because the queue was full (429).\n"
        "# TYPE tuna_requests_rejected_total counter\ntuna_requests_rejected_total %llu\n"
        "# HELP tuna_errors_total Error responses and failed generations.\n"
        "# TYPE tuna_errors_total counter\ntuna_errors_total %llu\n",
        st.queue_length, st.running, st.slots, st.tokens_total, st.tokens_per_second, st.images_total,
        st.images_per_second, st.chat_requests, st.image_requests, st.rejected, st.errors);
    return send_text(c, 200, "text/plain; version=0.0.4", text, (size_t)n, NULL);
}

/* ---- chat -------------------------------------------------------------------------------------- */

/* Decode, size and convert the request's images into [3,H,W] tensors. */
static tuna_status prepare_images(tuna_server *s, const tuna_serve_chat_request *r, tuna_serve_chat_job *job,
                                  tuna_serve_error *e) {
    tuna_image_limits lim = tuna_image_default_limits();
    lim.max_pixels = s->o.limits.max_image_pixels;
    lim.max_side = s->o.limits.max_image_side;
    int patch = s->model->config.patch_size;
    for (int k = 0; k < r->image_count; k++) {
        tuna_image img = {0}, sized = {0};
        tuna_error err = {0};
        if (tuna_image_decode_memory(r->images[k].bytes, r->images[k].size, &lim, &img, &err) != TUNA_OK)
            return tuna_serve_fail(e, err.code == TUNA_ERR_LIMIT ? 413 : 400, "invalid_request_error",
                                   err.code == TUNA_ERR_LIMIT ? "image_too_large" : "invalid_image", "messages",
                                   "image %d: %s", k + 1, err.message);
        int h, w;
        tuna_serve_image_size(patch, img.height, img.width, s->o.image_height, s->o.image_width, &h, &w);
        tuna_status st = tuna_image_resize_crop(&img, h, w, &sized, &err);
        float *chw = st == TUNA_OK ? malloc(sizeof(float) * 3 * (size_t)h * w) : NULL;
        if (chw) tuna_image_to_tensor(&sized, chw);
        tuna_image_free(&img);
        tuna_image_free(&sized);
        if (!chw) return tuna_serve_fail(e, 500, "server_error", NULL, NULL, "image %d: %s", k + 1, err.message);
        job->images[k] = chw;
        job->heights[k] = h;
        job->widths[k] = w;
        job->image_count = k + 1;
    }
    return TUNA_OK;
}

static tuna_status compile_schema(const cJSON *schema, int object_only, const char *what, tuna_json_schema **out,
                                  tuna_serve_error *e) {
    tuna_error err = {0};
    if (tuna_json_schema_compile(schema, object_only, out, &err) != TUNA_OK)
        return tuna_serve_fail(e, 400, "invalid_request_error", "unsupported_schema", what, "%s: %s", what,
                               err.message);
    return TUNA_OK;
}

static tuna_status plan_job(const tuna_serve_chat_request *r, tuna_serve_chat_job *job, tuna_serve_error *e) {
    if (r->tool_choice == TUNA_TOOLS_NAMED) {
        job->plan = TUNA_PLAN_TOOL_NAMED;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(tuna_serve_tool_function(r, r->named_tool), "parameters");
        TUNA_TRY(compile_schema(params, 1, "tools", &job->schema, e));
        job->tool_name = strdup(tuna_serve_tool_name(r, r->named_tool));
        if (!job->tool_name) return tuna_serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    } else if (r->tool_choice == TUNA_TOOLS_REQUIRED) {
        job->plan = TUNA_PLAN_TOOL_REQUIRED;
        job->tool_count = r->tool_count;
        job->tool_schemas = calloc((size_t)r->tool_count, sizeof *job->tool_schemas);
        job->tool_literals = calloc((size_t)r->tool_count, sizeof *job->tool_literals);
        cJSON *names = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(names, "enum");
        if (!job->tool_schemas || !job->tool_literals || !list) {
            cJSON_Delete(names);
            return tuna_serve_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        }
        tuna_status st = TUNA_OK;
        for (int k = 0; k < r->tool_count && st == TUNA_OK; k++) {
            cJSON *name = cJSON_CreateString(tuna_serve_tool_name(r, k));
            job->tool_literals[k] = cJSON_PrintUnformatted(name);
            cJSON_AddItemToArray(list, name);
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(tuna_serve_tool_function(r, k), "parameters");
            st = compile_schema(params, 1, "tools", &job->tool_schemas[k], e);
        }
        if (st == TUNA_OK) st = compile_schema(names, 0, "tools", &job->names_schema, e);
        cJSON_Delete(names);
        TUNA_TRY(st);
    } else if (r->format == TUNA_FORMAT_JSON_OBJECT) {
        job->plan = TUNA_PLAN_SCHEMA;
        TUNA_TRY(compile_schema(NULL, 1, "response_format", &job->schema, e));
    } else if (r->format == TUNA_FORMAT_JSON_SCHEMA) {
        job->plan = TUNA_PLAN_SCHEMA;
        TUNA_TRY(compile_schema(r->schema, 0, "response_format", &job->schema, e));
    }
    return TUNA_OK;
}

/* A chat job from a parsed request: images, ids, sampling, plan. */
static tuna_status build_chat_job(tuna_server *s, tuna_serve_chat_request *r, tuna_serve_chat_job *job,
                                  tuna_serve_error *e) {
    TUNA_TRY(prepare_images(s, r, job, e));
    tuna_ids ids = {0};
    TUNA_TRY(tuna_serve_chat_ids(s->model, s->tok, r, job->heights, job->widths, &ids, e));
    job->ids = ids.data;
    job->length = (int)ids.len;
    if (job->length + 1 > s->o.context)
        return tuna_serve_fail(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                               "the prompt is %d tokens; this server's context is %d", job->length, s->o.context);
    job->sampling = (tuna_token_sampling){.temperature = r->temperature, .top_k = r->top_k, .top_p = r->top_p};
    job->seed = r->has_seed ? r->seed : fresh_seed(s);
    job->max_tokens = r->max_tokens;
    job->ignore_eos = r->ignore_eos;
    job->n = r->n;
    for (int k = 0; k < r->stop_count; k++) {
        job->stop[k] = r->stop[k];
        r->stop[k] = NULL;
    }
    job->stop_count = r->stop_count;
    r->stop_count = 0;
    return plan_job(r, job, e);
}

static cJSON *usage_json(int prompt, int completion) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", completion);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + completion);
    return u;
}

static cJSON *tool_calls_json(const tuna_serve_reply *reply, const char *id_base, int with_index) {
    cJSON *calls = cJSON_CreateArray();
    for (int k = 0; k < reply->call_count; k++) {
        cJSON *c = cJSON_CreateObject();
        char id[96];
        snprintf(id, sizeof id, "call_%s_%d", id_base, k);
        if (with_index) cJSON_AddNumberToObject(c, "index", k);
        cJSON_AddStringToObject(c, "id", id);
        cJSON_AddStringToObject(c, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(c, "function");
        cJSON_AddStringToObject(fn, "name", reply->calls[k].name);
        cJSON_AddStringToObject(fn, "arguments", reply->calls[k].arguments);
        cJSON_AddItemToArray(calls, c);
    }
    return calls;
}

typedef struct {
    tuna_server *server;
    tuna_serve_chat_job *job;
    struct MHD_Connection *connection;
    char id[64];
    long created;
    int with_tools;
    int include_usage;
    int prompt_tokens;
    double deadline;
    size_t sent[TUNA_SERVE_MAX_CHOICES];  /* bytes of content sent per choice */
    int role_sent[TUNA_SERVE_MAX_CHOICES];
    int final_sent[TUNA_SERVE_MAX_CHOICES];
    int done;                               /* [DONE] queued */
    char *pending;                          /* SSE bytes not yet handed to MHD */
    size_t pending_len, pending_pos, pending_cap;
} chat_stream;

static int finish_reason_of(const tuna_serve_output *o, const tuna_serve_reply *reply, const char **reason) {
    *reason = o->finish_reason;
    if (strcmp(o->finish_reason, "stop") == 0 && reply->call_count) *reason = "tool_calls";
    if (strcmp(o->finish_reason, "cancelled") == 0 || strcmp(o->finish_reason, "error") == 0) *reason = "stop";
    return 0;
}

static mhd_result chat_response(tuna_server *s, struct MHD_Connection *c, tuna_serve_chat_job *job, int with_tools,
                                const char *id) {
    /* an engine failure with nothing to show is a 500 */
    if (job->out[0].finish_reason && strcmp(job->out[0].finish_reason, "error") == 0 && job->out[0].len == 0)
        return fail(s, c, 500, "server_error", NULL, "%s", job->error[0] ? job->error : "the generation failed");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "object", "chat.completion");
    cJSON_AddNumberToObject(root, "created", (double)time(NULL));
    cJSON_AddStringToObject(root, "model", s->model_name);
    cJSON_AddStringToObject(root, "system_fingerprint", "tuna-serve");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    int completion = 0;
    for (int k = 0; k < job->n; k++) {
        const tuna_serve_output *o = &job->out[k];
        tuna_serve_reply reply;
        tuna_error err = {0};
        if (tuna_serve_parse_reply(o->text ? o->text : "", with_tools, &reply, &err) != TUNA_OK) {
            cJSON_Delete(root);
            return fail(s, c, 500, "server_error", NULL, "%s", err.message);
        }
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", k);
        cJSON *msg = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        if (reply.content) cJSON_AddStringToObject(msg, "content", reply.content);
        else cJSON_AddNullToObject(msg, "content");
        cJSON_AddNullToObject(msg, "refusal");
        if (reply.call_count) cJSON_AddItemToObject(msg, "tool_calls", tool_calls_json(&reply, id + 9, 0));
        cJSON_AddNullToObject(ch, "logprobs");
        const char *reason;
        finish_reason_of(o, &reply, &reason);
        cJSON_AddStringToObject(ch, "finish_reason", reason);
        cJSON_AddItemToArray(choices, ch);
        completion += o->tokens;
        tuna_serve_reply_free(&reply);
    }
    cJSON_AddItemToObject(root, "usage", usage_json(job->length, completion));
    return send_json(c, 200, root);
}

/* Wait for a job with the connection's thread, watching the client. 0 done, 1 client gone, 2 timed out, 3 stopping. */
static int wait_chat(tuna_server *s, struct MHD_Connection *c, tuna_serve_chat_job *job) {
    double deadline = tuna_now_seconds() + s->o.request_timeout_s;
    tuna_serve_lock(s->engine);
    while (job->finished < job->n) {
        tuna_serve_wait_chat(s->engine, job, POLL_MS);
        if (job->finished >= job->n) break;
        tuna_serve_unlock(s->engine);
        int why = client_gone(c) ? 1 : tuna_now_seconds() > deadline ? 2 : atomic_load(&s->stopping) ? 3 : 0;
        tuna_serve_lock(s->engine);
        if (why) {
            tuna_serve_unlock(s->engine);
            return why;
        }
    }
    tuna_serve_unlock(s->engine);
    return 0;
}

/* ---- SSE --------------------------------------------------------------------------------------- */

static int sse_put(chat_stream *st, cJSON *j) {
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    const char *body = text ? text : "[DONE]";
    size_t n = strlen(body) + 8;
    if (st->pending_len + n + 1 > st->pending_cap) {
        size_t cap = st->pending_cap ? st->pending_cap : 1024;
        while (cap < st->pending_len + n + 1) cap *= 2;
        char *p = realloc(st->pending, cap);
        if (!p) {
            free(text);
            return 0;
        }
        st->pending = p;
        st->pending_cap = cap;
    }
    st->pending_len += (size_t)sprintf(st->pending + st->pending_len, "data: %s\n\n", body);
    free(text);
    return 1;
}

static cJSON *chunk(const chat_stream *st, int index, cJSON *delta, const char *finish) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", st->id);
    cJSON_AddStringToObject(root, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(root, "created", (double)st->created);
    cJSON_AddStringToObject(root, "model", st->server->model_name);
    cJSON_AddStringToObject(root, "system_fingerprint", "tuna-serve");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    if (delta) {
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", index);
        cJSON_AddItemToObject(ch, "delta", delta);
        cJSON_AddNullToObject(ch, "logprobs");
        if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
        else cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(choices, ch);
    }
    if (st->include_usage) cJSON_AddNullToObject(root, "usage");
    return root;
}

/* New events of the job as SSE (lock held). 1 when something was queued. */
static int stream_collect(chat_stream *st) {
    tuna_serve_chat_job *job = st->job;
    int any = 0;
    for (int k = 0; k < job->n; k++) {
        const tuna_serve_output *o = &job->out[k];
        if (!st->role_sent[k]) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "role", "assistant");
            cJSON_AddStringToObject(d, "content", "");
            any |= sse_put(st, chunk(st, k, d, NULL));
            st->role_sent[k] = 1;
        }
        size_t limit = o->ready;
        if (st->with_tools && o->text) limit = tuna_serve_content_end(o->text, limit);
        if (limit > st->sent[k]) {
            /* never cut a UTF-8 sequence: the engine's text only holds whole ones */
            cJSON *d = cJSON_CreateObject();
            char *piece = malloc(limit - st->sent[k] + 1);
            if (piece) {
                memcpy(piece, o->text + st->sent[k], limit - st->sent[k]);
                piece[limit - st->sent[k]] = '\0';
                cJSON_AddStringToObject(d, "content", piece);
                free(piece);
            }
            any |= sse_put(st, chunk(st, k, d, NULL));
            st->sent[k] = limit;
        }
        if (o->finished && !st->final_sent[k]) {
            tuna_serve_reply reply;
            tuna_error err = {0};
            const char *reason = "stop";
            if (tuna_serve_parse_reply(o->text ? o->text : "", st->with_tools, &reply, &err) == TUNA_OK) {
                if (reply.call_count) {
                    cJSON *d = cJSON_CreateObject();
                    cJSON_AddItemToObject(d, "tool_calls", tool_calls_json(&reply, st->id + 9, 1));
                    any |= sse_put(st, chunk(st, k, d, NULL));
                }
                finish_reason_of(o, &reply, &reason);
                tuna_serve_reply_free(&reply);
            }
            any |= sse_put(st, chunk(st, k, cJSON_CreateObject(), reason));
            st->final_sent[k] = 1;
        }
    }
    if (job->finished >= job->n && !st->done) {
        if (st->include_usage) {
            int completion = 0;
            for (int k = 0; k < job->n; k++) completion += job->out[k].tokens;
            cJSON *last = chunk(st, 0, NULL, NULL);
            cJSON_ReplaceItemInObject(last, "usage", usage_json(st->prompt_tokens, completion));
            any |= sse_put(st, last);
        }
        any |= sse_put(st, NULL);
        st->done = 1;
    }
    return any;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    chat_stream *st = cls;
    tuna_server *s = st->server;
    for (;;) {
        if (st->pending_pos < st->pending_len) {
            size_t n = st->pending_len - st->pending_pos;
            if (n > max) n = max;
            memcpy(buf, st->pending + st->pending_pos, n);
            st->pending_pos += n;
            if (st->pending_pos == st->pending_len) st->pending_pos = st->pending_len = 0;
            return (ssize_t)n;
        }
        if (st->done) return MHD_CONTENT_READER_END_OF_STREAM;
        tuna_serve_lock(s->engine);
        int any = stream_collect(st);
        if (!any && st->job->finished < st->job->n) {
            tuna_serve_wait_chat(s->engine, st->job, POLL_MS);
            any = stream_collect(st);
        }
        tuna_serve_unlock(s->engine);
        if (any) continue;
        int gone = client_gone(st->connection), stopping = atomic_load(&s->stopping);
        if (gone || stopping || tuna_now_seconds() > st->deadline) {
            if (s->o.log)
                fprintf(stderr, "tuna serve: stream %s ends: %s\n", st->id,
                        gone ? "the client went away" : stopping ? "the server stops" : "request timeout");
            atomic_store(&st->job->cancelled, 1);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    chat_stream *st = cls;
    tuna_serve_release_chat(st->server->engine, st->job);
    free(st->pending);
    free(st);
}

static mhd_result handle_chat(tuna_server *s, struct MHD_Connection *c, conn_ctx *ctx) {
    tuna_serve_chat_request req;
    tuna_serve_error e = {0};
    if (tuna_serve_parse_chat(ctx->body ? ctx->body : "", ctx->len, &s->o.limits, &req, &e) != TUNA_OK)
        return send_error(s, c, &e);
    tuna_serve_chat_job *job = tuna_serve_chat_job_new();
    if (!job) {
        tuna_serve_chat_request_free(&req);
        return fail(s, c, 500, "server_error", NULL, "out of memory");
    }
    tuna_status st = build_chat_job(s, &req, job, &e);
    int with_tools = req.tool_choice != TUNA_TOOLS_NONE && req.tool_count > 0;
    int stream = req.stream, include_usage = req.include_usage;
    tuna_serve_chat_request_free(&req);
    if (st == TUNA_OK) st = tuna_serve_submit_chat(s->engine, job, &e);
    if (st != TUNA_OK) {
        tuna_serve_release_chat(s->engine, job);
        return send_error(s, c, &e);
    }
    char id[64];
    new_id(s, "chatcmpl-", id, sizeof id);
    if (!stream) {
        int why = wait_chat(s, c, job);
        mhd_result r;
        if (why == 1 || why == 3) r = MHD_NO; /* the client left (or the server stops): its work is cancelled */
        else if (why == 2) r = fail(s, c, 504, "timeout_error", "timeout", "the request took longer than %d s",
                                    s->o.request_timeout_s);
        else r = chat_response(s, c, job, with_tools, id);
        tuna_serve_release_chat(s->engine, job);
        return r;
    }
    chat_stream *cs = calloc(1, sizeof *cs);
    if (!cs) {
        tuna_serve_release_chat(s->engine, job);
        return fail(s, c, 500, "server_error", NULL, "out of memory");
    }
    cs->server = s;
    cs->job = job;
    cs->connection = c;
    snprintf(cs->id, sizeof cs->id, "%s", id);
    cs->created = (long)time(NULL);
    cs->with_tools = with_tools;
    cs->include_usage = include_usage;
    cs->prompt_tokens = job->length;
    cs->deadline = tuna_now_seconds() + s->o.request_timeout_s;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, cs, stream_free);
    if (!r) {
        stream_free(cs);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    mhd_result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- images ---------------------------------------------------------------------------------------- */

static tuna_status decode_source(tuna_server *s, const tuna_serve_blob *blob, int want_h, int want_w,
                                 tuna_serve_image_job *job, tuna_serve_error *e) {
    tuna_image_limits lim = tuna_image_default_limits();
    lim.max_pixels = s->o.limits.max_image_pixels;
    lim.max_side = s->o.limits.max_image_side;
    tuna_image img = {0}, sized = {0};
    tuna_error err = {0};
    if (tuna_image_decode_memory(blob->bytes, blob->size, &lim, &img, &err) != TUNA_OK)
        return tuna_serve_fail(e, err.code == TUNA_ERR_LIMIT ? 413 : 400, "invalid_request_error",
                               err.code == TUNA_ERR_LIMIT ? "image_too_large" : "invalid_image", "image", "%s",
                               err.message);
    int patch = s->model->config.patch_size, h, w;
    if (want_h > 0) h = want_h, w = want_w;
    else tuna_serve_image_size(patch, img.height, img.width, s->o.image_height, s->o.image_width, &h, &w);
    tuna_status st = tuna_image_resize_crop(&img, h, w, &sized, &err);
    job->source = st == TUNA_OK ? malloc(sizeof(float) * 3 * (size_t)h * w) : NULL;
    if (job->source) tuna_image_to_tensor(&sized, job->source);
    tuna_image_free(&img);
    tuna_image_free(&sized);
    if (!job->source) return tuna_serve_fail(e, 500, "server_error", NULL, NULL, "%s", err.message);
    job->source_h = job->height = h;
    job->source_w = job->width = w;
    return TUNA_OK;
}

static tuna_status build_image_job(tuna_server *s, const tuna_serve_image_request *r, int edit,
                                   tuna_serve_image_job *job, tuna_serve_error *e) {
    const tuna_config *cfg = &s->model->config;
    int patch = cfg->patch_size, h = 0, w = 0;
    if (r->width || !edit) TUNA_TRY(tuna_serve_generation_size(patch, r->width, r->height, &h, &w, e));
    tuna_error err = {0};
    float cfg_scale = r->guidance >= 0 ? r->guidance : edit ? 2.0f : 3.0f;
    const char *negative = r->negative ? r->negative : edit ? tuna_default_negative_edit : tuna_default_negative_t2i;
    tuna_status st;
    if (edit) {
        TUNA_TRY(decode_source(s, &r->image, h, w, job, e));
        st = tuna_edit_ids(s->tok, cfg, r->prompt, job->source_h, job->source_w, job->height, job->width, &job->cond,
                           &err);
        if (st == TUNA_OK && cfg_scale > 0)
            st = tuna_edit_ids(s->tok, cfg, negative, job->source_h, job->source_w, job->height, job->width,
                               &job->uncond, &err);
    } else {
        job->height = h;
        job->width = w;
        st = tuna_t2i_ids(s->tok, cfg, r->prompt, h, w, 0, &job->cond, &err);
        if (st == TUNA_OK && cfg_scale > 0) st = tuna_t2i_ids(s->tok, cfg, negative, h, w, 0, &job->uncond, &err);
    }
    if (st != TUNA_OK) return tuna_serve_fail(e, 400, "invalid_request_error", NULL, "prompt", "%s", err.message);
    if ((long)job->cond.len + 8 > (long)s->o.context * 4)
        return tuna_serve_fail(e, 400, "invalid_request_error", "context_length_exceeded", "prompt",
                               "the prompt and image are %zu positions", job->cond.len);
    job->cfg = cfg_scale;
    job->steps = r->steps > 0 ? r->steps : s->o.default_steps;
    job->n = r->n;
    job->seed = r->has_seed ? r->seed : fresh_seed(s);
    return TUNA_OK;
}

static mhd_result image_response(tuna_server *s, struct MHD_Connection *c, const tuna_serve_image_request *r,
                                 tuna_serve_image_job *job, int edit) {
    if (job->error[0] || job->done < job->n)
        return fail(s, c, 500, "server_error", NULL, "%s", job->error[0] ? job->error : "the generation failed");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "created", (double)time(NULL));
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    for (int k = 0; k < job->n; k++) {
        tuna_image img = {0};
        tuna_error err = {0};
        uint8_t *png = NULL, *tagged = NULL;
        size_t n = 0, tn = 0;
        char params[20000];
        snprintf(params, sizeof params, "%s\nNegative prompt: %s\nSteps: %d, CFG scale: %g, Seed: %llu, Size: %dx%d, "
                 "Model: %s, Mode: %s",
                 r->prompt, job->cfg > 0 ? (r->negative ? r->negative : "(default)") : "(none)", job->steps,
                 (double)job->cfg, (unsigned long long)(job->seed + (uint64_t)k), job->width, job->height,
                 s->model_name, edit ? "edit" : "generate");
        tuna_status st = tuna_image_from_tensor(job->results[k], job->height, job->width, &img, &err);
        if (st == TUNA_OK) st = tuna_image_encode_png_memory(&img, &png, &n, &err);
        if (st == TUNA_OK) st = tuna_serve_png_with_text(png, n, params, &tagged, &tn, &err);
        tuna_image_free(&img);
        free(png);
        char *b64 = st == TUNA_OK ? tuna_serve_base64_encode(tagged, tn) : NULL;
        free(tagged);
        if (!b64) {
            cJSON_Delete(root);
            return fail(s, c, 500, "server_error", NULL, "encoding the PNG: %s", err.message);
        }
        cJSON *item = cJSON_CreateObject();
        if (r->url) {
            size_t bl = strlen(b64);
            char *url = malloc(bl + 32);
            if (url) {
                sprintf(url, "data:image/png;base64,%s", b64);
                cJSON_AddStringToObject(item, "url", url);
            }
            free(url);
        } else {
            cJSON_AddStringToObject(item, "b64_json", b64);
        }
        free(b64);
        cJSON_AddStringToObject(item, "revised_prompt", r->prompt);
        cJSON_AddItemToArray(data, item);
    }
    return send_json(c, 200, root);
}

static mhd_result handle_images(tuna_server *s, struct MHD_Connection *c, conn_ctx *ctx, int edit) {
    tuna_serve_image_request req;
    tuna_serve_error e = {0};
    tuna_status st;
    if (edit) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        st = tuna_serve_parse_image_edit(ctx->body ? ctx->body : "", ctx->len, ct, &s->o.limits, &req, &e);
    } else {
        st = tuna_serve_parse_image_generation(ctx->body ? ctx->body : "", ctx->len, &s->o.limits, &req, &e);
    }
    if (st != TUNA_OK) return send_error(s, c, &e);
    tuna_serve_image_job *job = tuna_serve_image_job_new();
    st = job ? build_image_job(s, &req, edit, job, &e) : tuna_serve_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    if (st == TUNA_OK) st = tuna_serve_submit_image(s->engine, job, &e);
    if (st != TUNA_OK) {
        tuna_serve_release_image(s->engine, job);
        tuna_serve_image_request_free(&req);
        return send_error(s, c, &e);
    }
    double deadline = tuna_now_seconds() + s->o.request_timeout_s;
    int why = 0;
    tuna_serve_lock(s->engine);
    while (!job->finished && !why) {
        tuna_serve_wait_image(s->engine, job, POLL_MS);
        if (job->finished) break;
        tuna_serve_unlock(s->engine);
        why = client_gone(c) ? 1 : tuna_now_seconds() > deadline ? 2 : atomic_load(&s->stopping) ? 3 : 0;
        tuna_serve_lock(s->engine);
    }
    tuna_serve_unlock(s->engine);
    mhd_result r;
    if (why == 1 || why == 3) r = MHD_NO;
    else if (why == 2) r = fail(s, c, 504, "timeout_error", "timeout", "the request took longer than %d s",
                                s->o.request_timeout_s);
    else r = image_response(s, c, &req, job, edit);
    tuna_serve_release_image(s->engine, job);
    tuna_serve_image_request_free(&req);
    return r;
}

/* ---- dispatch ---------------------------------------------------------------------------------------- */

static int authorized(const tuna_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    const char *k = h + 7;
    size_t a = strlen(k), b = strlen(s->api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(k[i] ^ s->api_key[i]);
    return diff == 0;
}

static mhd_result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)version;
    tuna_server *s = cls;
    conn_ctx *ctx = *con_cls;
    int post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx) return MHD_NO;
        *con_cls = ctx;
        /* streamed tokens are small writes: send each at once (no Nagle wait for an ACK) */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        int one = 1;
        if (ci) setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* refuse what needs no body before reading one */
        int protected = strncmp(url, "/v1/", 4) == 0 || strcmp(url, "/metrics") == 0;
        if (protected && !authorized(s, c)) {
            ctx->rejected = 1;
            return fail(s, c, 401, "authentication_error", "invalid_api_key",
                        "a valid API key is required (Authorization: Bearer KEY)");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->o.limits.max_body) {
            ctx->rejected = 1;
            return fail(s, c, 413, "invalid_request_error", "payload_too_large",
                        "the body is larger than the limit of %zu bytes", s->o.limits.max_body);
        }
        return MHD_YES;
    }
    if (ctx->rejected) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (ctx->too_large || ctx->len + n > s->o.limits.max_body) {
            ctx->too_large = 1;
            free(ctx->body);
            ctx->body = NULL;
            ctx->len = ctx->cap = 0;
            return MHD_YES;
        }
        if (ctx->len + n + 1 > ctx->cap) {
            size_t cap = ctx->cap ? ctx->cap : 4096;
            while (cap < ctx->len + n + 1) cap *= 2;
            char *b = realloc(ctx->body, cap);
            if (!b) return MHD_NO;
            ctx->body = b;
            ctx->cap = cap;
        }
        memcpy(ctx->body + ctx->len, upload_data, n);
        ctx->len += n;
        ctx->body[ctx->len] = '\0';
        return MHD_YES;
    }
    double t0 = tuna_now_seconds();
    mhd_result r;
    if (ctx->too_large) {
        r = fail(s, c, 413, "invalid_request_error", "payload_too_large", "the body is larger than the limit of %zu bytes",
                 s->o.limits.max_body);
    } else if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        if (!get) r = fail(s, c, 405, "invalid_request_error", NULL, "use GET");
        else {
            size_t len;
            const char *html = tuna_serve_playground_html(&len);
            struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)html, MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
            r = MHD_queue_response(c, 200, resp);
            MHD_destroy_response(resp);
        }
    } else if (strcmp(url, "/health") == 0) {
        r = send_text(c, 200, "application/json", strdup("{\"status\":\"ok\"}"), 15, NULL);
    } else if (strcmp(url, "/v1/models") == 0) {
        r = get ? handle_models(s, c) : fail(s, c, 405, "invalid_request_error", NULL, "use GET");
    } else if (strcmp(url, "/metrics") == 0) {
        r = get ? handle_metrics(s, c) : fail(s, c, 405, "invalid_request_error", NULL, "use GET");
    } else if (strcmp(url, "/v1/chat/completions") == 0) {
        r = post ? handle_chat(s, c, ctx) : fail(s, c, 405, "invalid_request_error", NULL, "use POST");
    } else if (strcmp(url, "/v1/images/generations") == 0) {
        r = post ? handle_images(s, c, ctx, 0) : fail(s, c, 405, "invalid_request_error", NULL, "use POST");
    } else if (strcmp(url, "/v1/images/edits") == 0) {
        r = post ? handle_images(s, c, ctx, 1) : fail(s, c, 405, "invalid_request_error", NULL, "use POST");
    } else {
        r = fail(s, c, 404, "invalid_request_error", "not_found", "no route %s %s", method, url);
    }
    log_line(s, method, url, r == MHD_YES, t0);
    return r;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn_ctx *ctx = *con_cls;
    if (!ctx) return;
    free(ctx->body);
    free(ctx);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    const tuna_server *s = cls;
    if (!s->o.log) return;
    fprintf(stderr, "tuna serve (http): ");
    vfprintf(stderr, fmt, ap);
}

/* A listening socket on host:port (IPv4 or IPv6 by what host resolves to). */
static tuna_status listen_on(const char *host, int port, int *fd_out, int *bound_port, tuna_error *err) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) return tuna_fail(err, TUNA_ERR_INVALID, "--host %s: %s", host, gai_strerror(rc));
    int fd = -1;
    int last_errno = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) return tuna_fail(err, TUNA_ERR_IO, "cannot listen on %s:%d: %s", host, port, strerror(last_errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *bound_port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return TUNA_OK;
}

tuna_status tuna_server_start(const tuna_model *model, const tuna_tokenizer *tok, tuna_serve_engine *engine,
                              const tuna_server_options *opts, tuna_server **out, tuna_error *err) {
    *out = NULL;
    tuna_server *s = calloc(1, sizeof *s);
    if (!s) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    s->model = model;
    s->tok = tok;
    s->engine = engine;
    s->o = *opts;
    s->host = strdup(opts->host ? opts->host : "127.0.0.1");
    s->api_key = opts->api_key ? strdup(opts->api_key) : NULL;
    s->model_name = strdup(opts->model_name ? opts->model_name : "tuna2");
    s->listen_fd = -1;
    atomic_init(&s->stopping, 0);
    atomic_init(&s->counter, 0);
    tuna_status st = s->host && s->model_name && (!opts->api_key || s->api_key)
                         ? TUNA_OK
                         : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    if (st == TUNA_OK) st = listen_on(s->host, opts->port, &s->listen_fd, &s->port, err);
    if (st == TUNA_OK) {
        s->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                         MHD_USE_ERROR_LOG | MHD_USE_POLL,
                                     0, NULL, NULL, handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                                     MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)opts->max_connections,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->idle_timeout_s,
                                     MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
        if (!s->daemon) st = tuna_fail(err, TUNA_ERR_IO, "libmicrohttpd did not start");
    }
    if (st != TUNA_OK) {
        if (s->listen_fd >= 0) close(s->listen_fd);
        free(s->host);
        free(s->api_key);
        free(s->model_name);
        free(s);
        return st;
    }
    *out = s;
    return TUNA_OK;
}

int tuna_server_port(const tuna_server *s) { return s->port; }

void tuna_server_stop(tuna_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    MHD_stop_daemon(s->daemon); /* closes the listening socket it was given */
    free(s->host);
    free(s->api_key);
    free(s->model_name);
    free(s);
}
