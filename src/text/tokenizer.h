/* Byte-level BPE tokenizer, bit-identical to Hugging Face `tokenizers` for the
 * Qwen2 / Qwen2.5 family (SPEC section 3: Qwen2.5 BPE + the four Tuna-2 tokens).
 *
 * Encoding follows HF's pipeline exactly:
 *   1. invalid UTF-8 in the input is replaced, maximal subpart by maximal subpart,
 *      with U+FFFD (what Python's bytes.decode('utf-8', 'replace') gives);
 *   2. added tokens (special or not) are cut out first, leftmost-longest, with
 *      their lstrip / rstrip / single_word flags; normalized=false tokens are
 *      matched on the raw text, normalized=true ones on the NFC text;
 *   3. each remaining piece is NFC-normalised (utf8proc, with a small table
 *      that pins it to HF's older Unicode tables, see unicode.h);
 *   4. the pre-tokenizer's Split regex (taken from tokenizer.json, run by
 *      PCRE2 JIT with the \p{L} / \p{N} / \s classes pinned to HF's) cuts the
 *      piece into words ("Isolated": matches and gaps are both words);
 *   5. each word's bytes go through the BPE merge loop (lowest rank first,
 *      leftmost on ties; a binary heap), with a word cache.
 *
 * Thread safety: a loaded tokenizer is read-only except for its word cache,
 * which is guarded by a mutex; any number of threads may encode and decode
 * with one tokenizer at the same time. */
#ifndef TUNA_TEXT_TOKENIZER_H
#define TUNA_TEXT_TOKENIZER_H

#include "core/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tuna_tokenizer tuna_tokenizer;

/* A growable vector of token ids. Zero-initialise it ({0}); free with tuna_ids_free. */
typedef struct {
    int32_t *data;
    size_t len;
    size_t cap;
} tuna_ids;

tuna_status tuna_ids_push(tuna_ids *v, int32_t id, tuna_error *err);
tuna_status tuna_ids_reserve(tuna_ids *v, size_t cap, tuna_error *err);
void tuna_ids_free(tuna_ids *v);

/* Load a Hugging Face tokenizer.json (plain, or gzip-compressed: read through zlib
 * transparently). *out is set only on success. */
tuna_status tuna_tokenizer_load(const char *path, tuna_tokenizer **out, tuna_error *err);

/* The text of a tokenizer.json (plain or gzip), malloc'd and NUL-terminated
 * (*out, *size bytes); for embedding it in a model file (GGUF metadata). */
tuna_status tuna_tokenizer_read_json(const char *path, char **out, size_t *size, tuna_error *err);

/* The same from a JSON document in memory (len bytes, need not be NUL-terminated). */
tuna_status tuna_tokenizer_load_json(const char *json, size_t len, tuna_tokenizer **out, tuna_error *err);

void tuna_tokenizer_free(tuna_tokenizer *tok);

/* Append the ids of `len` bytes of text to *ids (no BOS/EOS is added: the
 * Qwen2 tokenizer has none). Invalid UTF-8 is replaced with U+FFFD (see above). */
tuna_status tuna_tokenizer_encode(const tuna_tokenizer *tok, const char *text, size_t len,
                                  tuna_ids *ids, tuna_error *err);

/* The same with no added token cut out first: "<|im_start|>" in the text is
 * the ordinary characters, never the control token (what a server does with
 * text a user sends; HF's split_special_tokens=True for the special ones). */
tuna_status tuna_tokenizer_encode_plain(const tuna_tokenizer *tok, const char *text, size_t len, tuna_ids *ids,
                                        tuna_error *err);

/* Decode ids to UTF-8: the bytes of each token concatenated, then invalid UTF-8
 * replaced with U+FFFD (HF's ByteLevel decoder, from_utf8_lossy). With
 * skip_special, special added tokens are left out (HF's skip_special_tokens).
 * *text is malloc'd and NUL-terminated; *text_len excludes the NUL (may be NULL).
 * An id outside the vocabulary is an error. */
tuna_status tuna_tokenizer_decode(const tuna_tokenizer *tok, const int32_t *ids, size_t n,
                                  int skip_special, char **text, size_t *text_len, tuna_error *err);

/* The raw bytes a token stands for (no UTF-8 repair), or NULL for an unknown id. */
const char *tuna_tokenizer_token_bytes(const tuna_tokenizer *tok, int32_t id, size_t *len);

/* Id of a token given by its content: an added token ("<|im_start|>") or a vocabulary
 * entry in its byte-level spelling ("Ġhello"). -1 when absent. */
int32_t tuna_tokenizer_token_id(const tuna_tokenizer *tok, const char *token);

/* 1 when id is an added token marked special. */
int tuna_tokenizer_is_special(const tuna_tokenizer *tok, int32_t id);

/* One past the largest id (vocabulary and added tokens). */
int32_t tuna_tokenizer_vocab_size(const tuna_tokenizer *tok);

/* Streaming decoder: feed ids one at a time and print what comes back. Bytes of
 * a UTF-8 sequence that is still incomplete are held back until the next token
 * completes it, so the text printed token by token is never broken; the
 * concatenation of every piece plus the final flush equals tuna_tokenizer_decode
 * of all the ids. */
typedef struct {
    const tuna_tokenizer *tok;
    int skip_special;
    unsigned char pending[4]; /* an incomplete UTF-8 sequence held back */
    int n_pending;
    char *buf;                /* output of the last call, owned by the streamer */
    size_t cap;
} tuna_token_streamer;

void tuna_token_streamer_init(tuna_token_streamer *s, const tuna_tokenizer *tok, int skip_special);
/* Text made printable by this token: *piece points into the streamer (valid until
 * the next call), NUL-terminated, *piece_len bytes (possibly 0). */
tuna_status tuna_token_streamer_put(tuna_token_streamer *s, int32_t id, const char **piece,
                                    size_t *piece_len, tuna_error *err);
/* End of the stream: whatever is held back, as U+FFFD replacements. */
tuna_status tuna_token_streamer_flush(tuna_token_streamer *s, const char **piece, size_t *piece_len,
                                      tuna_error *err);
void tuna_token_streamer_free(tuna_token_streamer *s);

/* The bundled tokenizer (models/tokenizer/tuna2-tokenizer.json.gz). Searched in order:
 *   $TUNA_HOME/models/tokenizer/tuna2-tokenizer.json.gz,
 *   <dir of the executable>/../models/..., <dir of the executable>/../../models/...
 *     (build/tuna, build/tests/x, build-fuzz/fuzz/x in the repository),
 *   ./models/... (run from the repository root).
 * Writes the first that exists into buf and returns buf; NULL when none does. */
const char *tuna_tokenizer_default_path(char *buf, size_t cap);

#endif
