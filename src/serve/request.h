/* `tuna serve` requests: the OpenAI JSON bodies (chat completions, image
 * generations), multipart/form-data (image edits), base64 data: URIs, and
 * OpenAI error objects. Everything here reads untrusted bytes: every size is
 * checked against tuna_serve_limits before anything is allocated for it, and
 * a failure is an HTTP status with an OpenAI error type and message
 * (fuzz/fuzz_serve_request.c). Nothing here needs the model. */
#ifndef TUNA_SERVE_REQUEST_H
#define TUNA_SERVE_REQUEST_H

#include "core/status.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define TUNA_SERVE_MAX_STOP 4
#define TUNA_SERVE_MAX_CHOICES 8
#define TUNA_SERVE_MAX_TOOLS 64
#define TUNA_SERVE_MAX_IMAGES 16 /* images in one chat request */

typedef struct {
    size_t max_body;          /* bytes of a request body (413 past it) */
    int64_t max_image_pixels; /* declared width * height of an uploaded image, checked before decoding */
    int max_image_side;       /* declared width or height */
    int max_messages;
    int max_n;                /* choices of a chat, images of a generation */
    int max_steps;            /* Euler steps of a generation */
    int max_prompt_chars;     /* bytes of an image prompt */
    int max_generated_side;   /* pixels of a generated image's side */
    const char *files_dir;    /* image_url file:// under this directory is read; NULL: refused */
} tuna_serve_limits;

void tuna_serve_default_limits(tuna_serve_limits *l);

/* A failure as the client sees it. */
typedef struct {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* NULL or a short code ("context_length_exceeded") */
    char param[64];   /* "" or the request field at fault (copied) */
    tuna_error error; /* the message */
} tuna_serve_error;

/* Fill e and return TUNA_ERR_INVALID (TUNA_ERR_LIMIT for 413). */
tuna_status tuna_serve_fail(tuna_serve_error *e, int status, const char *type, const char *code, const char *param,
                            const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* {"error": {"message", "type", "param", "code"}} (malloc'd). */
char *tuna_serve_error_json(const tuna_serve_error *e);

/* ---- chat completions ------------------------------------------------------ */

typedef enum { TUNA_SERVE_SYSTEM, TUNA_SERVE_USER, TUNA_SERVE_ASSISTANT, TUNA_SERVE_TOOL } tuna_serve_role;

typedef struct {
    char *id, *name, *arguments; /* arguments: the JSON text as the client sent it */
} tuna_serve_tool_call;

typedef struct {
    tuna_serve_role role;
    char *text;          /* text parts joined by "\n"; may be empty */
    int image_count;     /* images of this message (user messages only), in the request's image list */
    int first_image;
    tuna_serve_tool_call *tool_calls;
    int tool_call_count;
} tuna_serve_message;

typedef enum { TUNA_TOOLS_NONE, TUNA_TOOLS_AUTO, TUNA_TOOLS_REQUIRED, TUNA_TOOLS_NAMED } tuna_serve_tool_choice;
typedef enum { TUNA_FORMAT_TEXT, TUNA_FORMAT_JSON_OBJECT, TUNA_FORMAT_JSON_SCHEMA } tuna_serve_format;

typedef struct {
    uint8_t *bytes; /* PNG or JPEG as sent (decoded from base64) */
    size_t size;
} tuna_serve_blob;

typedef struct {
    char *model;
    tuna_serve_message *messages;
    int message_count;
    tuna_serve_blob images[TUNA_SERVE_MAX_IMAGES];
    int image_count;
    cJSON *tools;                   /* the "tools" array as sent (owned), or NULL */
    int tool_count;
    tuna_serve_tool_choice tool_choice;
    int named_tool;                 /* TUNA_TOOLS_NAMED: index into tools */
    tuna_serve_format format;
    cJSON *schema;                  /* TUNA_FORMAT_JSON_SCHEMA: the schema (owned) */
    int stream, include_usage;
    int max_tokens;                 /* -1: as many as the context allows */
    float temperature, top_p;
    int top_k;
    int has_seed;
    uint64_t seed;
    char *stop[TUNA_SERVE_MAX_STOP];
    int stop_count;
    int n;
    int ignore_eos;                 /* extra (llama.cpp's): decode max_tokens tokens whatever the model says */
} tuna_serve_chat_request;

tuna_status tuna_serve_parse_chat(const char *body, size_t size, const tuna_serve_limits *limits,
                                  tuna_serve_chat_request *req, tuna_serve_error *e);
void tuna_serve_chat_request_free(tuna_serve_chat_request *req);

/* The function object of tool i ({"name", "description", "parameters"}). */
const cJSON *tuna_serve_tool_function(const tuna_serve_chat_request *req, int i);
const char *tuna_serve_tool_name(const tuna_serve_chat_request *req, int i);

/* ---- images ---------------------------------------------------------------- */

typedef struct {
    char *prompt, *negative;  /* negative NULL: the reference's default */
    int n;
    int width, height;        /* 0: the model's default */
    int steps;                /* 0: the default */
    float guidance;           /* < 0: the default */
    int has_seed;
    uint64_t seed;
    int url;                  /* response_format "url": a data: URL instead of b64_json */
    tuna_serve_blob image;    /* edits: the source image */
} tuna_serve_image_request;

tuna_status tuna_serve_parse_image_generation(const char *body, size_t size, const tuna_serve_limits *limits,
                                              tuna_serve_image_request *req, tuna_serve_error *e);
/* multipart/form-data of /v1/images/edits; content_type is the header's value. */
tuna_status tuna_serve_parse_image_edit(const char *body, size_t size, const char *content_type,
                                        const tuna_serve_limits *limits, tuna_serve_image_request *req,
                                        tuna_serve_error *e);
void tuna_serve_image_request_free(tuna_serve_image_request *req);

/* "WxH" (or "auto": 0x0) -> width, height; each side in [1, max_side]. */
tuna_status tuna_serve_parse_size(const char *text, int max_side, int *width, int *height, tuna_serve_error *e);

/* ---- pieces ---------------------------------------------------------------- */

/* Standard base64 (padding optional, no whitespace) into a malloc'd buffer of at most max bytes. */
tuna_status tuna_serve_base64_decode(const char *text, size_t len, size_t max, uint8_t **out, size_t *out_size,
                                     tuna_serve_error *e);
/* Base64 of n bytes, malloc'd and NUL-terminated. */
char *tuna_serve_base64_encode(const uint8_t *bytes, size_t n);

/* An image_url: data:image/png|jpeg;base64,... ; file:// only under limits->files_dir; others refused. */
tuna_status tuna_serve_image_from_url(const char *url, const tuna_serve_limits *limits, tuna_serve_blob *out,
                                      tuna_serve_error *e);

typedef struct {
    char name[128];
    char filename[256];
    char content_type[128];
    const char *data; /* points into the body */
    size_t size;
} tuna_serve_part;

/* Split a multipart/form-data body (boundary from content_type) into at most
 * max_parts parts; *parts is malloc'd. */
tuna_status tuna_serve_parse_multipart(const char *body, size_t size, const char *content_type, int max_parts,
                                       tuna_serve_part **parts, int *count, tuna_serve_error *e);

/* JSON as Python's json.dumps(ensure_ascii=False) writes it (", " and ": "),
 * which is what Qwen2.5's chat template (tojson) puts in the prompt. malloc'd. */
char *tuna_serve_json_dumps(const cJSON *j);

#endif
