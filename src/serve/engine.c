/* The serving engine (see engine.h): continuous batching of chats over the
 * multi-request forward, image jobs between steps, constrained plans. */
#include "serve/engine.h"

#include "infer/generate.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/sequence.h"
#include "ops/workspace.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RATE_WINDOW 10 /* seconds of the tokens/s and images/s gauges */

typedef enum { PH_FORCE, PH_SCHEMA, PH_NAME, PH_ARGS, PH_FREE, PH_END } phase_kind;

typedef struct {
    phase_kind kind;
    const char *text;                /* PH_FORCE */
    const tuna_json_schema *schema;  /* PH_SCHEMA, PH_NAME */
} phase;

#define MAX_PHASES 8

typedef struct {
    tuna_serve_chat_job *job; /* NULL: free */
    int choice;
    tuna_kv_cache cache;
    int32_t *ids;
    int length;
    tuna_image_segment *segments;
    tuna_sequence seq;
    float t[TUNA_SERVE_MAX_IMAGES];
    tuna_rng rng;
    tuna_token_streamer streamer;
    int generated;
    int limit;                /* most completion tokens */
    phase phases[MAX_PHASES];
    int n_phases, ph;
    char forced[512];         /* PH_FORCE text built for this slot */
    tuna_json_matcher matcher;
    char name[512];           /* PH_NAME: the bytes of the chosen name */
    size_t name_len;
    float *logits;
} slot;

typedef struct {
    long second;
    unsigned long long tokens, images;
} rate_bucket;

struct tuna_serve_engine {
    const tuna_model *model;
    const tuna_tokenizer *tok;
    const tuna_threads *pool;
    tuna_backend backend;
    tuna_workspace ws;
    tuna_serve_engine_options o;
    int vocab;
    int32_t stop_ids[2];
    slot *slots;
    tuna_forward_request *requests;
    slot **batch;
    uint8_t *allowed;
    int *close_after;
    float *scratch;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int stopping;
    tuna_serve_chat_job *chat_head, *chat_tail;
    tuna_serve_image_job *image_head, *image_tail;
    int queued, active, image_running, steps_since_image;
    unsigned long long tokens_total, images_total, chat_requests, image_requests, errors, rejected;
    rate_bucket rates[RATE_WINDOW + 2];
};

/* ---- jobs ------------------------------------------------------------------------ */

tuna_serve_chat_job *tuna_serve_chat_job_new(void) {
    tuna_serve_chat_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancelled, 0);
    j->refs = 1;
    j->n = 1;
    return j;
}

tuna_serve_image_job *tuna_serve_image_job_new(void) {
    tuna_serve_image_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancelled, 0);
    j->refs = 1;
    j->n = 1;
    return j;
}

static void chat_job_free(tuna_serve_chat_job *j) {
    free(j->ids);
    for (int k = 0; k < j->image_count; k++) free(j->images[k]);
    for (int k = 0; k < j->stop_count; k++) free(j->stop[k]);
    tuna_json_schema_free(j->schema);
    tuna_json_schema_free(j->names_schema);
    for (int k = 0; k < j->tool_count; k++) {
        if (j->tool_schemas) tuna_json_schema_free(j->tool_schemas[k]);
        if (j->tool_literals) free(j->tool_literals[k]);
    }
    free(j->tool_schemas);
    free(j->tool_literals);
    free(j->tool_name);
    for (int k = 0; k < TUNA_SERVE_MAX_CHOICES; k++) free(j->out[k].text);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void image_job_free(tuna_serve_image_job *j) {
    tuna_ids_free(&j->cond);
    tuna_ids_free(&j->uncond);
    free(j->source);
    for (int k = 0; k < TUNA_SERVE_MAX_CHOICES; k++) free(j->results[k]);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void tuna_serve_lock(tuna_serve_engine *e) { pthread_mutex_lock(&e->mu); }
void tuna_serve_unlock(tuna_serve_engine *e) { pthread_mutex_unlock(&e->mu); }

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

void tuna_serve_wait_chat(tuna_serve_engine *e, tuna_serve_chat_job *job, int ms) { timed_wait(&job->cv, &e->mu, ms); }
void tuna_serve_wait_image(tuna_serve_engine *e, tuna_serve_image_job *job, int ms) { timed_wait(&job->cv, &e->mu, ms); }

void tuna_serve_release_chat(tuna_serve_engine *e, tuna_serve_chat_job *job) {
    if (!job) return;
    atomic_store(&job->cancelled, 1);
    pthread_mutex_lock(&e->mu);
    int last = --job->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (last) chat_job_free(job);
}

void tuna_serve_release_image(tuna_serve_engine *e, tuna_serve_image_job *job) {
    if (!job) return;
    atomic_store(&job->cancelled, 1);
    pthread_mutex_lock(&e->mu);
    int last = --job->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (last) image_job_free(job);
}

/* With the lock held: the engine's own reference goes. */
static void engine_drop_chat(tuna_serve_chat_job *job, int *free_it) { *free_it = --job->refs == 0; }

/* Take the lock and admit one more request: 503 while stopping, 429 when the
 * queue is full. On failure the lock is released. */
static tuna_status admit_locked(tuna_serve_engine *e, tuna_serve_error *err) {
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return tuna_serve_fail(err, 503, "server_error", NULL, NULL, "the server is shutting down");
    }
    if (e->queued >= e->o.queue) {
        e->rejected++;
        pthread_mutex_unlock(&e->mu);
        return tuna_serve_fail(err, 429, "rate_limit_error", "queue_full", NULL,
                               "the server is busy (%d requests waiting); retry shortly", e->o.queue);
    }
    return TUNA_OK;
}

tuna_status tuna_serve_submit_chat(tuna_serve_engine *e, tuna_serve_chat_job *job, tuna_serve_error *err) {
    tuna_status admitted = admit_locked(e, err);
    if (admitted != TUNA_OK) return admitted;
    if (job->n > e->o.slots) {
        pthread_mutex_unlock(&e->mu);
        return tuna_serve_fail(err, 400, "invalid_request_error", NULL, "n", "n is above the server's %d slots",
                               e->o.slots);
    }
    job->refs++;
    job->submitted = tuna_now_seconds();
    job->next = NULL;
    if (e->chat_tail) e->chat_tail->next = job;
    else e->chat_head = job;
    e->chat_tail = job;
    e->queued++;
    e->chat_requests++;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    return TUNA_OK;
}

tuna_status tuna_serve_submit_image(tuna_serve_engine *e, tuna_serve_image_job *job, tuna_serve_error *err) {
    tuna_status admitted = admit_locked(e, err);
    if (admitted != TUNA_OK) return admitted;
    job->refs++;
    job->submitted = tuna_now_seconds();
    job->next = NULL;
    if (e->image_tail) e->image_tail->next = job;
    else e->image_head = job;
    e->image_tail = job;
    e->queued++;
    e->image_requests++;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    return TUNA_OK;
}

/* ---- rates ------------------------------------------------------------------------- */

static void count_rate(tuna_serve_engine *e, unsigned long long tokens, unsigned long long images) {
    long now = (long)tuna_now_seconds();
    rate_bucket *b = &e->rates[now % (RATE_WINDOW + 2)];
    if (b->second != now) *b = (rate_bucket){now, 0, 0};
    b->tokens += tokens;
    b->images += images;
    e->tokens_total += tokens;
    e->images_total += images;
}

void tuna_serve_engine_stats(tuna_serve_engine *e, tuna_serve_stats *s) {
    pthread_mutex_lock(&e->mu);
    long now = (long)tuna_now_seconds();
    unsigned long long tokens = 0, images = 0;
    for (int i = 0; i < RATE_WINDOW + 2; i++) {
        const rate_bucket *b = &e->rates[i];
        if (b->second < now && b->second >= now - RATE_WINDOW) tokens += b->tokens, images += b->images;
    }
    *s = (tuna_serve_stats){.queue_length = e->queued, .running = e->active + e->image_running, .slots = e->o.slots,
                            .tokens_total = e->tokens_total, .images_total = e->images_total,
                            .chat_requests = e->chat_requests, .image_requests = e->image_requests,
                            .errors = e->errors, .rejected = e->rejected,
                            .tokens_per_second = (double)tokens / RATE_WINDOW,
                            .images_per_second = (double)images / RATE_WINDOW};
    pthread_mutex_unlock(&e->mu);
}

void tuna_serve_count_error(tuna_serve_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->errors++;
    pthread_mutex_unlock(&e->mu);
}

/* ---- chat slots --------------------------------------------------------------------- */

static int out_reserve(tuna_serve_output *o, size_t more) {
    if (o->len + more + 1 <= o->cap) return 1;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more + 1) cap *= 2;
    char *t = realloc(o->text, cap);
    if (!t) return 0;
    o->text = t;
    o->cap = cap;
    return 1;
}

/* The longest suffix of text that begins one of the stop strings. */
static size_t stop_holdback(const tuna_serve_chat_job *j, const char *text, size_t len) {
    size_t hold = 0;
    for (int k = 0; k < j->stop_count; k++) {
        size_t sl = strlen(j->stop[k]);
        for (size_t h = sl - 1; h > hold; h--)
            if (h <= len && memcmp(text + len - h, j->stop[k], h) == 0) {
                hold = h;
                break;
            }
    }
    return hold;
}

/* Append decoded text to the choice's output (lock held). Returns 1 when a stop string ended it. */
static int append_text(slot *s, const char *piece, size_t n, int check_stops) {
    tuna_serve_chat_job *j = s->job;
    tuna_serve_output *o = &j->out[s->choice];
    if (n && out_reserve(o, n)) {
        memcpy(o->text + o->len, piece, n);
        o->len += n;
        o->text[o->len] = '\0';
    }
    if (check_stops && j->stop_count) {
        size_t from = o->ready;
        for (int k = 0; k < j->stop_count; k++) {
            char *hit = o->len > from ? memmem(o->text + from, o->len - from, j->stop[k], strlen(j->stop[k])) : NULL;
            if (hit) {
                o->len = (size_t)(hit - o->text);
                o->text[o->len] = '\0';
                o->ready = o->len;
                return 1;
            }
        }
        o->ready = o->len - stop_holdback(j, o->text, o->len);
    } else {
        o->ready = o->len;
    }
    return 0;
}

static void finish_slot(tuna_serve_engine *e, slot *s, const char *reason, tuna_serve_chat_job **to_free) {
    tuna_serve_chat_job *j = s->job;
    const char *piece;
    size_t len;
    tuna_error err = {0};
    if (tuna_token_streamer_flush(&s->streamer, &piece, &len, &err) == TUNA_OK && len &&
        strcmp(reason, "cancelled") != 0)
        append_text(s, piece, len, 0);
    tuna_token_streamer_free(&s->streamer);
    tuna_serve_output *o = &j->out[s->choice];
    o->ready = o->len;
    o->finished = 1;
    o->finish_reason = reason;
    o->tokens = s->generated;
    j->finished++;
    j->running--;
    if (strcmp(reason, "error") == 0) e->errors++;
    pthread_cond_broadcast(&j->cv);
    int free_it = 0;
    if (j->running == 0) engine_drop_chat(j, &free_it);
    if (free_it) *to_free = j;
    free(s->segments);
    s->segments = NULL;
    s->job = NULL;
    e->active--;
}

/* The plan of phases for a choice of this job. */
static void build_plan(slot *s) {
    tuna_serve_chat_job *j = s->job;
    int n = 0;
    switch (j->plan) {
    case TUNA_PLAN_FREE: s->phases[n++] = (phase){PH_FREE, NULL, NULL}; break;
    case TUNA_PLAN_SCHEMA: s->phases[n++] = (phase){PH_SCHEMA, NULL, j->schema}; break;
    case TUNA_PLAN_TOOL_NAMED:
        snprintf(s->forced, sizeof s->forced, "<tool_call>\n{\"name\": \"%s\", \"arguments\": ", j->tool_name);
        s->phases[n++] = (phase){PH_FORCE, s->forced, NULL};
        s->phases[n++] = (phase){PH_SCHEMA, NULL, j->schema};
        s->phases[n++] = (phase){PH_FORCE, "}\n</tool_call>", NULL};
        break;
    case TUNA_PLAN_TOOL_REQUIRED:
        s->phases[n++] = (phase){PH_FORCE, "<tool_call>\n{\"name\": ", NULL};
        s->phases[n++] = (phase){PH_NAME, NULL, j->names_schema};
        s->phases[n++] = (phase){PH_FORCE, ", \"arguments\": ", NULL};
        s->phases[n++] = (phase){PH_ARGS, NULL, NULL};
        s->phases[n++] = (phase){PH_FORCE, "}\n</tool_call>", NULL};
        break;
    }
    s->phases[n++] = (phase){PH_END, NULL, NULL};
    s->n_phases = n;
    s->ph = 0;
}

/* Append token id to the slot (its text to the output). Returns 1 when the choice must end (stop string). */
static int take_token(tuna_serve_engine *e, slot *s, int32_t id, int check_stops) {
    s->ids[s->length++] = id;
    s->seq.length = s->length;
    s->generated++;
    const char *piece;
    size_t len;
    tuna_error err = {0};
    int stop = 0;
    pthread_mutex_lock(&e->mu);
    count_rate(e, 1, 0);
    if (s->generated == 1 && s->choice == 0) s->job->first_token = tuna_now_seconds();
    if (tuna_token_streamer_put(&s->streamer, id, &piece, &len, &err) == TUNA_OK) stop = append_text(s, piece, len, check_stops);
    s->job->out[s->choice].tokens = s->generated;
    pthread_cond_broadcast(&s->job->cv);
    pthread_mutex_unlock(&e->mu);
    return stop;
}

/* Enter phases from s->ph on until one needs the model: forced text is
 * appended as rows. Returns the reason to finish, or NULL. */
static const char *enter_phases(tuna_serve_engine *e, slot *s) {
    while (s->ph < s->n_phases) {
        phase *p = &s->phases[s->ph];
        if (p->kind == PH_END) return "stop";
        if (p->kind == PH_FORCE) {
            tuna_ids ids = {0};
            tuna_error err = {0};
            if (tuna_tokenizer_encode(e->tok, p->text, strlen(p->text), &ids, &err) != TUNA_OK) {
                tuna_ids_free(&ids);
                return "error";
            }
            for (size_t i = 0; i < ids.len; i++) {
                if (s->length >= s->cache.capacity || s->generated >= s->limit) {
                    tuna_ids_free(&ids);
                    return "length";
                }
                take_token(e, s, ids.data[i], 0);
            }
            tuna_ids_free(&ids);
            s->ph++;
            continue;
        }
        if (p->kind == PH_ARGS) {
            /* the arguments of the tool whose name was just written */
            tuna_serve_chat_job *j = s->job;
            p->schema = NULL;
            for (int k = 0; k < j->tool_count; k++)
                if (strlen(j->tool_literals[k]) == s->name_len && memcmp(j->tool_literals[k], s->name, s->name_len) == 0)
                    p->schema = j->tool_schemas[k];
            if (!p->schema) return "error";
        }
        if (p->kind == PH_SCHEMA || p->kind == PH_NAME || p->kind == PH_ARGS) tuna_json_matcher_init(&s->matcher, p->schema);
        s->name_len = 0;
        return NULL;
    }
    return "stop";
}

static int is_stop_id(const tuna_serve_engine *e, int id) { return id == e->stop_ids[0] || id == e->stop_ids[1]; }

/* Tokens the phases after the current one need at least: their forced text
 * (a token holds at least one byte) and, while the tool's name is being
 * written, the shortest arguments of any tool. */
static int later_reserve(const slot *s) {
    int r = 0;
    for (int k = s->ph + 1; k < s->n_phases; k++) {
        const phase *p = &s->phases[k];
        if (p->kind == PH_FORCE) r += (int)strlen(p->text);
        if (p->kind == PH_ARGS) {
            int most = 0;
            for (int t = 0; t < s->job->tool_count; t++) {
                tuna_json_matcher m;
                tuna_json_matcher_init(&m, s->job->tool_schemas[t]);
                if (tuna_json_close_bytes(&m) > most) most = tuna_json_close_bytes(&m);
            }
            r += most;
        }
    }
    return r;
}

/* After a forward: choose the slot's next token(s). Returns the reason to finish, or NULL. */
static const char *advance(tuna_serve_engine *e, slot *s) {
    phase *p = &s->phases[s->ph];
    tuna_serve_chat_job *j = s->job;
    float *logits = s->logits;
    int V = e->vocab;
    if (p->kind == PH_FREE) {
        if (j->ignore_eos)
            for (int k = 0; k < 2; k++)
                if (e->stop_ids[k] >= 0 && e->stop_ids[k] < V) logits[e->stop_ids[k]] = -INFINITY;
        int id = tuna_sample_token(logits, V, &j->sampling, &s->rng, e->scratch);
        if (is_stop_id(e, id)) return "stop";
        if (take_token(e, s, id, 1)) return "stop";
        if (s->generated >= s->limit || s->length >= s->cache.capacity) return "length";
        return NULL;
    }
    /* constrained: only tokens that keep the JSON valid; the end token once it may end */
    int can_end = tuna_json_matcher_can_end(&s->matcher);
    int budget = s->limit - s->generated - later_reserve(s);
    int finishing = budget <= tuna_json_close_bytes(&s->matcher) + 4;
    int allowed = tuna_json_allowed_tokens(&s->matcher, e->tok, V, e->allowed, finishing ? e->close_after : NULL);
    if (can_end && e->stop_ids[0] >= 0) {
        e->allowed[e->stop_ids[0]] = 1;
        if (finishing) e->close_after[e->stop_ids[0]] = 0;
        allowed++;
    }
    if (allowed == 0) return "error";
    int id = -1;
    if (finishing) {
        /* steer to the end: the allowed token that leaves the fewest closing bytes, the likeliest on a tie */
        for (int k = 0; k < V; k++)
            if (e->allowed[k] && (id < 0 || e->close_after[k] < e->close_after[id] ||
                                  (e->close_after[k] == e->close_after[id] && logits[k] > logits[id])))
                id = k;
    } else {
        for (int k = 0; k < V; k++)
            if (!e->allowed[k]) logits[k] = -INFINITY;
        id = tuna_sample_token(logits, V, &j->sampling, &s->rng, e->scratch);
        if (!e->allowed[id]) return "error";
    }
    if (id == e->stop_ids[0] && can_end) {
        s->ph++;
        return enter_phases(e, s);
    }
    size_t blen = 0;
    const char *bytes = tuna_tokenizer_token_bytes(e->tok, id, &blen);
    if (!bytes || !tuna_json_matcher_feed(&s->matcher, bytes, blen)) return "error";
    if (p->kind == PH_NAME && s->name_len + blen < sizeof s->name) {
        memcpy(s->name + s->name_len, bytes, blen);
        s->name_len += blen;
    }
    take_token(e, s, id, 0);
    if (tuna_json_matcher_done(&s->matcher)) {
        s->ph++;
        const char *r = enter_phases(e, s);
        if (r) return r;
    }
    if (s->generated >= s->limit || s->length >= s->cache.capacity) return "length";
    return NULL;
}

/* Give a slot to choice `choice` of job j (lock not held). */
static const char *start_slot(tuna_serve_engine *e, slot *s, tuna_serve_chat_job *j, int choice) {
    s->job = j;
    s->choice = choice;
    s->generated = 0;
    s->segments = NULL;
    tuna_token_streamer_init(&s->streamer, e->tok, 1);
    tuna_kv_cache_truncate(&s->cache, 0);
    if (j->length >= s->cache.capacity) return "error";
    memcpy(s->ids, j->ids, sizeof(int32_t) * (size_t)j->length);
    s->length = j->length;
    s->limit = j->max_tokens > 0 ? j->max_tokens : s->cache.capacity;
    if (s->limit > s->cache.capacity - j->length) s->limit = s->cache.capacity - j->length;
    int found = 0;
    tuna_error err = {0};
    if (tuna_find_segments(s->ids, s->length, &e->model->config, j->image_count, j->heights, j->widths, &s->segments,
                           &found, &err) != TUNA_OK) {
        snprintf(j->error, sizeof j->error, "%s", err.message);
        return "error";
    }
    for (int k = 0; k < j->image_count; k++) s->t[k] = 1.0f; /* understanding reads clean images */
    s->seq = (tuna_sequence){.ids = s->ids, .length = s->length, .image_count = j->image_count,
                             .segments = s->segments, .images = (const float *const *)j->images, .t = s->t};
    tuna_rng_seed(&s->rng, j->seed + (uint64_t)choice);
    build_plan(s);
    return enter_phases(e, s);
}

/* One forward over every slot's pending rows, then a token for each. */
static void decode_step(tuna_serve_engine *e) {
    int n = 0;
    for (int i = 0; i < e->o.slots; i++) {
        slot *s = &e->slots[i];
        if (!s->job || s->cache.llm_length >= s->length) continue;
        e->batch[n] = s;
        e->requests[n] = (tuna_forward_request){.sequence = &s->seq, .cache = &s->cache,
                                                .row_begin = s->cache.llm_length, .row_end = s->length,
                                                .logits_mode = TUNA_LOGITS_LAST, .logits = s->logits};
        n++;
    }
    if (n == 0) return;
    tuna_error err = {0};
    tuna_status st = tuna_model_forward(e->model, e->requests, n, &e->backend, &e->ws, &err);
    tuna_serve_chat_job *to_free[64];
    int nf = 0;
    for (int k = 0; k < n; k++) {
        slot *s = e->batch[k];
        const char *reason = st == TUNA_OK ? advance(e, s) : "error";
        if (st != TUNA_OK) {
            pthread_mutex_lock(&e->mu);
            snprintf(s->job->error, sizeof s->job->error, "%s", err.message);
            pthread_mutex_unlock(&e->mu);
        }
        if (reason) {
            tuna_serve_chat_job *f = NULL;
            pthread_mutex_lock(&e->mu);
            finish_slot(e, s, reason, &f);
            pthread_mutex_unlock(&e->mu);
            if (f && nf < 64) to_free[nf++] = f;
        }
    }
    for (int k = 0; k < nf; k++) chat_job_free(to_free[k]);
}

/* ---- images ----------------------------------------------------------------------------- */

static void run_image(tuna_serve_engine *e, tuna_serve_image_job *j) {
    const tuna_config *c = &e->model->config;
    size_t n = 3 * (size_t)j->height * j->width;
    tuna_error err = {0};
    const char *failure = NULL;
    for (int k = 0; k < j->n && !failure; k++) {
        if (atomic_load(&j->cancelled)) break;
        float *z = malloc(sizeof(float) * n);
        if (!z) {
            failure = "out of memory";
            break;
        }
        tuna_rng rng;
        tuna_rng_seed(&rng, j->seed + (uint64_t)k);
        tuna_euler_initial_noise(&rng, z, (long)n, (float)c->noise_scale);
        tuna_generate_params p = {.cond_ids = j->cond.data, .cond_length = (int)j->cond.len,
                                  .uncond_ids = j->uncond.len ? j->uncond.data : NULL,
                                  .uncond_length = (int)j->uncond.len, .source = j->source,
                                  .source_height = j->source_h, .source_width = j->source_w, .height = j->height,
                                  .width = j->width, .steps = j->steps, .cfg_scale = j->cfg};
        if (tuna_generate(e->model, &p, z, e->pool, &err) != TUNA_OK) {
            free(z);
            failure = err.message;
            break;
        }
        pthread_mutex_lock(&e->mu);
        j->results[k] = z;
        j->done++;
        count_rate(e, 0, 1);
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_lock(&e->mu);
    if (failure) {
        snprintf(j->error, sizeof j->error, "%s", failure);
        e->errors++;
    }
    j->finished = 1;
    e->image_running = 0;
    pthread_cond_broadcast(&j->cv);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (last) image_job_free(j);
}

/* ---- the thread ---------------------------------------------------------------------------- */

static int free_slots(const tuna_serve_engine *e) { return e->o.slots - e->active; }

static void *engine_main(void *arg) {
    tuna_serve_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->stopping && e->active == 0 && !e->chat_head && !e->image_head) pthread_cond_wait(&e->wake, &e->mu);
        if (e->stopping) break;
        /* cancelled chats leave their slots */
        tuna_serve_chat_job *to_free[64];
        int nf = 0;
        for (int i = 0; i < e->o.slots; i++) {
            slot *s = &e->slots[i];
            if (s->job && atomic_load(&s->job->cancelled)) {
                tuna_serve_chat_job *f = NULL;
                finish_slot(e, s, "cancelled", &f);
                if (f && nf < 64) to_free[nf++] = f;
            }
        }
        /* admit waiting chats, first come first served, each with all its choices */
        tuna_serve_chat_job *admitted[64];
        int na = 0;
        while (e->chat_head && (atomic_load(&e->chat_head->cancelled) || free_slots(e) >= e->chat_head->n) && na < 64) {
            tuna_serve_chat_job *j = e->chat_head;
            e->chat_head = j->next;
            if (!e->chat_head) e->chat_tail = NULL;
            e->queued--;
            if (atomic_load(&j->cancelled)) {
                j->finished = j->n;
                pthread_cond_broadcast(&j->cv);
                int f = 0;
                engine_drop_chat(j, &f);
                if (f && nf < 64) to_free[nf++] = j;
                continue;
            }
            j->running = j->n;
            e->active += j->n;
            admitted[na++] = j;
        }
        tuna_serve_image_job *image = NULL;
        if (e->image_head && (e->active == 0 || e->steps_since_image >= TUNA_SERVE_IMAGE_EVERY)) {
            image = e->image_head;
            e->image_head = image->next;
            if (!e->image_head) e->image_tail = NULL;
            e->queued--;
            e->image_running = 1;
            e->steps_since_image = 0;
        }
        pthread_mutex_unlock(&e->mu);
        for (int k = 0; k < nf; k++) chat_job_free(to_free[k]);
        for (int a = 0; a < na; a++) {
            tuna_serve_chat_job *j = admitted[a];
            for (int c = 0; c < j->n; c++) {
                slot *s = NULL;
                for (int i = 0; i < e->o.slots && !s; i++)
                    if (!e->slots[i].job) s = &e->slots[i];
                const char *reason = start_slot(e, s, j, c);
                if (reason) {
                    tuna_serve_chat_job *f = NULL;
                    pthread_mutex_lock(&e->mu);
                    finish_slot(e, s, reason, &f);
                    pthread_mutex_unlock(&e->mu);
                    if (f) chat_job_free(f);
                }
            }
        }
        if (image) run_image(e, image);
        else decode_step(e);
        pthread_mutex_lock(&e->mu);
        if (!image) e->steps_since_image++;
    }
    /* stopping: every job still here ends */
    for (int i = 0; i < e->o.slots; i++) {
        slot *s = &e->slots[i];
        if (s->job) {
            tuna_serve_chat_job *f = NULL;
            finish_slot(e, s, "error", &f);
            if (f) {
                pthread_mutex_unlock(&e->mu);
                chat_job_free(f);
                pthread_mutex_lock(&e->mu);
            }
        }
    }
    while (e->chat_head) {
        tuna_serve_chat_job *j = e->chat_head;
        e->chat_head = j->next;
        j->finished = j->n;
        for (int c = 0; c < j->n; c++) j->out[c].finished = 1, j->out[c].finish_reason = "error";
        snprintf(j->error, sizeof j->error, "the server is shutting down");
        pthread_cond_broadcast(&j->cv);
        int f = 0;
        engine_drop_chat(j, &f);
        if (f) chat_job_free(j);
    }
    while (e->image_head) {
        tuna_serve_image_job *j = e->image_head;
        e->image_head = j->next;
        j->finished = 1;
        snprintf(j->error, sizeof j->error, "the server is shutting down");
        pthread_cond_broadcast(&j->cv);
        if (--j->refs == 0) image_job_free(j);
    }
    e->chat_tail = NULL;
    e->image_tail = NULL;
    e->queued = 0;
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void engine_free(tuna_serve_engine *e) {
    if (e->slots)
        for (int i = 0; i < e->o.slots; i++) {
            tuna_kv_cache_free(&e->slots[i].cache);
            free(e->slots[i].ids);
            free(e->slots[i].logits);
            free(e->slots[i].segments);
        }
    free(e->slots);
    free(e->requests);
    free(e->batch);
    free(e->allowed);
    free(e->close_after);
    free(e->scratch);
    tuna_workspace_free(&e->ws);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    free(e);
}

tuna_status tuna_serve_engine_start(const tuna_model *model, const tuna_tokenizer *tok, const tuna_threads *pool,
                                    const tuna_serve_engine_options *opts, tuna_serve_engine **out, tuna_error *err) {
    *out = NULL;
    if (opts->slots < 1 || opts->slots > 64 || opts->context < 16 || opts->queue < 1)
        return tuna_fail(err, TUNA_ERR_INVALID, "serve: slots must be in [1, 64], context >= 16, queue >= 1");
    tuna_serve_engine *e = calloc(1, sizeof *e);
    if (!e) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    e->model = model;
    e->tok = tok;
    e->pool = pool;
    e->o = *opts;
    e->backend = tuna_backend_cpu(pool);
    tuna_workspace_init(&e->ws, &e->backend);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    e->vocab = model->config.vocab_size;
    e->stop_ids[0] = tuna_tokenizer_token_id(tok, "<|im_end|>");
    if (e->stop_ids[0] < 0) e->stop_ids[0] = model->config.tokens.eos;
    e->stop_ids[1] = tuna_tokenizer_token_id(tok, "<|endoftext|>");
    int V = e->vocab;
    e->slots = calloc((size_t)opts->slots, sizeof *e->slots);
    e->requests = calloc((size_t)opts->slots, sizeof *e->requests);
    e->batch = calloc((size_t)opts->slots, sizeof *e->batch);
    e->allowed = malloc((size_t)V);
    e->close_after = malloc(sizeof(int) * (size_t)V);
    e->scratch = malloc(sizeof(float) * 2 * (size_t)V);
    tuna_status s = e->slots && e->requests && e->batch && e->allowed && e->close_after && e->scratch
                        ? TUNA_OK
                        : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    /* every slot's cache is allocated once, here: memory does not move with the load */
    for (int i = 0; s == TUNA_OK && i < opts->slots; i++) {
        slot *sl = &e->slots[i];
        s = tuna_kv_cache_init(&sl->cache, &model->config, opts->context, 0, err);
        sl->ids = malloc(sizeof(int32_t) * (size_t)opts->context);
        sl->logits = malloc(sizeof(float) * (size_t)V);
        if (s == TUNA_OK && (!sl->ids || !sl->logits)) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    if (s == TUNA_OK && pthread_create(&e->thread, NULL, engine_main, e) != 0)
        s = tuna_fail(err, TUNA_ERR_INTERNAL, "cannot start the engine thread");
    if (s != TUNA_OK) {
        engine_free(e);
        return s;
    }
    e->started = 1;
    *out = e;
    return TUNA_OK;
}

void tuna_serve_engine_stop(tuna_serve_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->mu);
    if (e->started) pthread_join(e->thread, NULL);
    engine_free(e);
}
