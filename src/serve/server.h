/* `tuna serve`: the OpenAI-compatible HTTP server over libmicrohttpd.
 *
 *   GET  /                       the playground page (embedded, serve/playground.html)
 *   GET  /health                 {"status": "ok"}
 *   GET  /v1/models              the one model
 *   GET  /metrics                Prometheus text: queue, running, tokens/s, images/s, errors
 *   POST /v1/chat/completions    text and image_url parts, stream (SSE), tools, response_format
 *   POST /v1/images/generations  prompt, n, size, response_format, seed, steps, guidance_scale, negative_prompt
 *   POST /v1/images/edits        multipart/form-data: image, prompt, n, size, ...
 *
 * One thread per connection (libmicrohttpd): a connection parses and
 * prepares its request (JSON, images decoded and resized, the prompt's ids),
 * queues a job on the engine (serve/engine.h) and waits for it, watching its
 * socket so that a client that goes away cancels its work. Every failure is
 * an OpenAI error object with its HTTP status. */
#ifndef TUNA_SERVE_SERVER_H
#define TUNA_SERVE_SERVER_H

#include "serve/engine.h"
#include "serve/request.h"

typedef struct tuna_server tuna_server;

typedef struct {
    const char *host;           /* default 127.0.0.1 */
    int port;                   /* 0: any free port (tuna_server_port says which) */
    const char *api_key;        /* NULL: no key asked */
    const char *model_name;     /* the id /v1/models lists */
    tuna_serve_limits limits;
    int max_connections;
    int idle_timeout_s;         /* a connection silent this long is closed */
    int request_timeout_s;      /* a request not done in this time ends (504) */
    int context;                /* positions of one chat: longer prompts are refused */
    int image_height, image_width; /* size images are given to the model (0: the model's default) */
    int default_steps;
    int log;                    /* one line per request on stderr */
} tuna_server_options;

void tuna_server_default_options(tuna_server_options *o);

tuna_status tuna_server_start(const tuna_model *model, const tuna_tokenizer *tok, tuna_serve_engine *engine,
                              const tuna_server_options *opts, tuna_server **out, tuna_error *err);
int tuna_server_port(const tuna_server *s);
/* Stops accepting, ends the connections (their jobs are cancelled) and frees the server. */
void tuna_server_stop(tuna_server *s);

/* The embedded playground page (serve/playground.html), NUL-terminated. */
const char *tuna_serve_playground_html(size_t *len);

/* The size an image is given to the model for understanding and editing:
 * want_h x want_w when set, else the 512-class bucket for patch 16, else
 * 8 patches square (the bundled model's 32x32). */
void tuna_serve_image_size(int patch, int image_h, int image_w, int want_h, int want_w, int *height, int *width);

/* The size generated for a requested width x height: 0 x 0 the model's
 * default; a standard OpenAI size (256x256, 512x512, 1024x1024, 1792x1024,
 * 1024x1792, 1536x1024, 1024x1536) the model's bucket nearest its aspect
 * ratio; any other size as given when it is a multiple of the patch. */
tuna_status tuna_serve_generation_size(int patch, int width, int height, int *out_h, int *out_w, tuna_serve_error *e);

/* PNG bytes with a "parameters" text chunk (tEXt, or iTXt for non-ASCII text)
 * inserted after IHDR. *out is malloc'd. */
tuna_status tuna_serve_png_with_text(const uint8_t *png, size_t n, const char *text, uint8_t **out, size_t *out_n,
                                     tuna_error *err);

#endif
