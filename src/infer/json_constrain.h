/* Constrained decoding: the reply is held to JSON that follows a JSON schema
 * (forced tool calls, response_format json_object / json_schema).
 *
 * The schema is compiled into nodes; a matcher is a pushdown automaton over
 * the bytes of the reply (a fixed-size stack of frames, cheap to copy). At
 * each decoding step, every token of the vocabulary whose bytes keep the
 * matcher alive is allowed and the others get -inf logits, so whatever the
 * model's preferences, the text is a prefix of a valid document; a token that
 * completes the value ends the constrained part.
 *
 * The JSON written is compact (no insignificant whitespace: a weak model
 * would otherwise loop on spaces). Schema support: type (one or a list of
 * object, array, string, number, integer, boolean, null), properties,
 * required, additionalProperties (false or a schema for objects without
 * properties), items, minItems / maxItems, minLength / maxLength, enum, const,
 * anyOf / oneOf whose branches start with different characters, and {} (any
 * JSON value). Keys are written in the schema's order; a required key cannot
 * be skipped. Unsupported: $ref, patterns, formats, numeric bounds (a number
 * is any JSON number without exponent). Every value is bounded (strings
 * TUNA_JSON_MAX_STRING characters unless maxLength says less, arrays
 * TUNA_JSON_MAX_ITEMS items, free objects TUNA_JSON_MAX_FREE_KEYS keys, depth
 * TUNA_JSON_MAX_DEPTH), so a document always ends: tuna_json_close_bytes is
 * the fewest bytes that finish it, and a decoder short of tokens steers to
 * the allowed token that brings the end nearest. */
#ifndef TUNA_INFER_JSON_CONSTRAIN_H
#define TUNA_INFER_JSON_CONSTRAIN_H

#include "core/status.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define TUNA_JSON_MAX_DEPTH 12
#define TUNA_JSON_MAX_STRING 64
#define TUNA_JSON_MAX_ITEMS 16
#define TUNA_JSON_MAX_FREE_KEYS 8
#define TUNA_JSON_MAX_NODES 512
#define TUNA_JSON_MAX_PROPS 64   /* properties of one object, literals of one enum */

typedef struct tuna_json_schema tuna_json_schema;

/* schema NULL: any JSON value; object_only: the value must be an object
 * (response_format json_object). Fails with TUNA_ERR_INVALID on a schema it
 * cannot follow (the message says what). */
tuna_status tuna_json_schema_compile(const cJSON *schema, int object_only, tuna_json_schema **out, tuna_error *err);
void tuna_json_schema_free(tuna_json_schema *s);

typedef struct {
    int16_t node;
    uint8_t mode;
    uint8_t sub;         /* number state / string escape state */
    uint8_t utf8_left;   /* continuation bytes still due in a string */
    uint8_t utf8_lo, utf8_hi; /* range of the next continuation byte */
    int16_t pos;         /* bytes matched of a key or literal */
    int16_t next_prop;   /* object: the first property that may still come */
    int16_t key;         /* object: property of the value being written; -1 free key */
    int32_t count;       /* characters of a string, items of an array, keys of a free object, digits */
    uint64_t cand;       /* candidates still matching (literal or key), bit i = candidate i */
} tuna_json_frame;

typedef struct {
    const tuna_json_schema *schema;
    int depth;           /* frames in use; 0 with done = the value is complete */
    int done;
    int dead;
    tuna_json_frame stack[TUNA_JSON_MAX_DEPTH * 2 + 2];
} tuna_json_matcher;

void tuna_json_matcher_init(tuna_json_matcher *m, const tuna_json_schema *s);
/* Feed bytes; 1 while the text is still a prefix of a valid document. */
int tuna_json_matcher_feed(tuna_json_matcher *m, const char *bytes, size_t n);
/* 1 when the value is complete and nothing may follow. */
int tuna_json_matcher_done(const tuna_json_matcher *m);
/* 1 when the text so far is a complete document (done, or a top-level number
 * or literal that could also go on). */
int tuna_json_matcher_can_end(const tuna_json_matcher *m);
/* The fewest bytes that complete the document from here (0 when done). */
int tuna_json_close_bytes(const tuna_json_matcher *m);

/* allowed[id] = 1 for each token (not a special one) whose bytes keep m
 * alive; returns how many. When close_after is not NULL it receives, per
 * allowed token, tuna_json_close_bytes after it. */
int tuna_json_allowed_tokens(const tuna_json_matcher *m, const tuna_tokenizer *tok, int vocab, uint8_t *allowed,
                             int *close_after);

/* Validate a whole document against the schema (tests; the decoder never
 * produces anything else). */
int tuna_json_schema_accepts(const tuna_json_schema *s, const char *text, size_t n);

#endif
