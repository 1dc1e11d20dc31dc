/* The tokenizer's internals, shared by tokenizer.c (loading, the encode
 * pipeline, decoding) and bpe.c (the merge loop and its word cache). */
#ifndef TUNA_TEXT_TOKENIZER_INTERNAL_H
#define TUNA_TEXT_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>

#include "text/tokenizer.h"

#define TUNA_TOK_MAX_SPLITS 4     /* Split stages in the pre-tokenizer */
#define TUNA_TOK_CACHE_SLOTS 32768 /* word cache: direct-mapped, power of two */
#define TUNA_TOK_CACHE_WORD 22     /* longest cached word, bytes */
#define TUNA_TOK_CACHE_IDS 8       /* most ids a cached word may have */

enum { TOK_EXISTS = 1, TOK_ADDED = 2, TOK_SPECIAL = 4 };

typedef struct {
    char *content;   /* matched text (NFC'd when normalized) */
    size_t len;
    int32_t id;
    unsigned char special, lstrip, rstrip, normalized, single_word;
} tuna_added_token;

typedef struct {
    uint64_t pair;   /* (left id << 32) | right id */
    uint32_t rank;   /* UINT32_MAX = empty slot */
    int32_t new_id;
} tuna_merge_slot;

typedef struct {
    uint64_t hash;   /* 0 = empty */
    uint8_t len, n_ids;
    unsigned char word[TUNA_TOK_CACHE_WORD];
    int32_t ids[TUNA_TOK_CACHE_IDS];
} tuna_cache_slot;

struct tuna_tokenizer {
    int32_t vocab_size;             /* one past the largest id */
    /* per id: raw bytes (decoding) and byte-level spelling (token_id lookup) */
    char *bytes_blob, *spell_blob;
    uint32_t *bytes_off, *bytes_len, *spell_off, *spell_len;
    uint8_t *flags;                 /* TOK_* */
    int32_t *spell_table;           /* open addressing: id or -1 */
    size_t spell_mask;
    int32_t byte_id[256];           /* the token of each single byte, -1 if none */
    tuna_merge_slot *merges;
    size_t merge_mask;
    int ignore_merges;
    int32_t unk_id;
    tuna_added_token *added;        /* sorted longest first */
    size_t n_added;
    int has_raw_added, has_normalized_added;
    unsigned char added_first_raw[256], added_first_norm[256];
    int nfc;
    pcre2_code *split[TUNA_TOK_MAX_SPLITS];
    int split_jit[TUNA_TOK_MAX_SPLITS];
    int n_split;
    pthread_mutex_t cache_lock;
    tuna_cache_slot *cache;
};

/* Scratch memory for one encode call (not shared between threads). */
typedef struct {
    struct tuna_bpe_symbol *sym;
    struct tuna_bpe_merge *heap;
    size_t sym_cap, heap_cap;
    char *spell;                    /* ignore_merges: the word's byte-level spelling */
    size_t spell_cap;
} tuna_bpe_scratch;

uint64_t tuna_hash_bytes(const void *p, size_t n);
int32_t tuna_spell_lookup(const tuna_tokenizer *tok, const char *s, size_t n);
int tuna_merge_lookup(const tuna_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id);

/* Append the BPE ids of one pre-tokenized word (its raw bytes) to ids. */
tuna_status tuna_bpe_word(const tuna_tokenizer *tok, tuna_bpe_scratch *sc, const unsigned char *w, size_t n,
                          tuna_ids *ids, tuna_error *err);
void tuna_bpe_scratch_free(tuna_bpe_scratch *sc);

#endif
