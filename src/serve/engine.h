/* The serving engine: one thread that owns the model's compute and runs
 * every chat and image request of `tuna serve`.
 *
 * Chats are batched continuously: each running chat (each choice of a
 * request) holds a slot with its own KV cache, and one decode step is one
 * tuna_model_forward over all slots at once (the rows each slot still needs:
 * its whole prompt when it has just been admitted, one token after that, a
 * few when text is forced), so the weights are read once per step for every
 * chat. A chat that finishes frees its slot at once and a waiting one takes
 * it at the next step. Image requests wait in the same bounded queue and run
 * between decode steps (each Euler step batches the conditional and the
 * unconditional branch, infer/generate.c); while chats are decoding, an image
 * runs after every TUNA_SERVE_IMAGE_EVERY steps.
 *
 * Constrained replies (forced tool calls, JSON response formats) follow a
 * plan of phases: forced text (appended as rows, not sampled), a JSON value
 * held to a schema (infer/json_constrain.h), the end.
 *
 * HTTP threads build a job, submit it, then wait on it (tuna_serve_wait)
 * reading its output under the engine's lock; a client that goes away
 * cancels its job and the engine drops it at the next step. */
#ifndef TUNA_SERVE_ENGINE_H
#define TUNA_SERVE_ENGINE_H

#include "core/clock.h"
#include "core/threads.h"
#include "infer/json_constrain.h"
#include "infer/sampler.h"
#include "model/tuna2.h"
#include "serve/request.h"
#include "text/tokenizer.h"

#include <pthread.h>
#include <stdatomic.h>

#define TUNA_SERVE_IMAGE_EVERY 16

typedef struct tuna_serve_engine tuna_serve_engine;

typedef struct {
    int slots;   /* chats decoded together */
    int context; /* positions of one chat (prompt + reply) */
    int queue;   /* requests waiting at most (429 past it) */
} tuna_serve_engine_options;

tuna_status tuna_serve_engine_start(const tuna_model *model, const tuna_tokenizer *tok, const tuna_threads *pool,
                                    const tuna_serve_engine_options *opts, tuna_serve_engine **out, tuna_error *err);
/* Stops the thread; jobs still queued or running finish with "error". */
void tuna_serve_engine_stop(tuna_serve_engine *e);

typedef enum { TUNA_PLAN_FREE = 0, TUNA_PLAN_SCHEMA, TUNA_PLAN_TOOL_NAMED, TUNA_PLAN_TOOL_REQUIRED } tuna_serve_plan;

typedef struct {
    char *text;          /* the reply so far, special tokens left out */
    size_t len, cap;
    size_t ready;        /* text[0, ready) is final (the rest may be the start of a stop string) */
    int finished;
    const char *finish_reason; /* "stop", "length", "cancelled", "error" */
    int tokens;          /* completion tokens */
} tuna_serve_output;

typedef struct tuna_serve_chat_job {
    /* inputs, owned by the job, set before tuna_serve_submit_chat */
    int32_t *ids;
    int length;
    float *images[TUNA_SERVE_MAX_IMAGES]; /* [3, H, W] in [-1, 1] */
    int heights[TUNA_SERVE_MAX_IMAGES], widths[TUNA_SERVE_MAX_IMAGES];
    int image_count;
    tuna_token_sampling sampling;
    uint64_t seed;       /* choice k draws from seed + k */
    int max_tokens;
    int ignore_eos;
    char *stop[TUNA_SERVE_MAX_STOP];
    int stop_count;
    int n;
    tuna_serve_plan plan;
    tuna_json_schema *schema;        /* SCHEMA: the reply; TOOL_NAMED: the tool's arguments */
    char *tool_name;                 /* TOOL_NAMED */
    tuna_json_schema *names_schema;  /* TOOL_REQUIRED: the enum of tool names */
    tuna_json_schema **tool_schemas; /* TOOL_REQUIRED: arguments of each tool */
    char **tool_literals;            /* TOOL_REQUIRED: each name as a JSON string */
    int tool_count;
    /* outputs, read under the engine's lock */
    tuna_serve_output out[TUNA_SERVE_MAX_CHOICES];
    int finished;        /* choices finished */
    double submitted, first_token; /* seconds (monotonic) */
    char error[sizeof(tuna_error){0}.message];
    /* control */
    atomic_int cancelled;
    pthread_cond_t cv;
    int refs;
    int running;         /* choices holding a slot */
    struct tuna_serve_chat_job *next;
} tuna_serve_chat_job;

typedef struct tuna_serve_image_job {
    tuna_ids cond, uncond; /* uncond empty: no guidance */
    float *source;         /* editing: [3, source_h, source_w]; NULL for generation */
    int source_h, source_w;
    int height, width, steps, n;
    float cfg;
    uint64_t seed;         /* image k from seed + k */
    float *results[TUNA_SERVE_MAX_CHOICES]; /* [3, H, W] each, as they finish */
    int done;
    int finished;
    double submitted;
    char error[sizeof(tuna_error){0}.message];
    atomic_int cancelled;
    pthread_cond_t cv;
    int refs;
    struct tuna_serve_image_job *next;
} tuna_serve_image_job;

tuna_serve_chat_job *tuna_serve_chat_job_new(void);
tuna_serve_image_job *tuna_serve_image_job_new(void);

/* Queue a job (the engine holds a reference until it is done with it). A full
 * queue is a 429; a stopped engine a 503. */
tuna_status tuna_serve_submit_chat(tuna_serve_engine *e, tuna_serve_chat_job *job, tuna_serve_error *err);
tuna_status tuna_serve_submit_image(tuna_serve_engine *e, tuna_serve_image_job *job, tuna_serve_error *err);

/* The engine's lock, which guards every job's outputs. */
void tuna_serve_lock(tuna_serve_engine *e);
void tuna_serve_unlock(tuna_serve_engine *e);
/* With the lock held: wait for news of the job (or ms milliseconds). */
void tuna_serve_wait_chat(tuna_serve_engine *e, tuna_serve_chat_job *job, int ms);
void tuna_serve_wait_image(tuna_serve_engine *e, tuna_serve_image_job *job, int ms);

/* Drop the caller's reference (without the lock); the last one frees the job.
 * Releasing an unfinished job cancels it. */
void tuna_serve_release_chat(tuna_serve_engine *e, tuna_serve_chat_job *job);
void tuna_serve_release_image(tuna_serve_engine *e, tuna_serve_image_job *job);

/* Counters for /metrics. */
typedef struct {
    int queue_length, running, slots;
    unsigned long long tokens_total, images_total, chat_requests, image_requests, errors, rejected;
    double tokens_per_second, images_per_second; /* over the last 10 seconds */
} tuna_serve_stats;

void tuna_serve_engine_stats(tuna_serve_engine *e, tuna_serve_stats *out);
void tuna_serve_count_error(tuna_serve_engine *e);


#endif
