/* Loading a Hugging Face tokenizer.json, the encode pipeline and decoding
 * (SPEC section 3). The steps and their HF counterparts are listed in
 * tokenizer.h; the BPE merge loop is in bpe.c, Unicode helpers in unicode.c. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "text/tokenizer_internal.h"
#include "text/unicode.h"

#define MAX_TOKENIZER_JSON ((size_t)512 << 20) /* decompressed size refused beyond this */
#define MAX_TOKEN_ID (1 << 24)

/* ---- id vectors ---------------------------------------------------------- */

tuna_status tuna_ids_reserve(tuna_ids *v, size_t cap, tuna_error *err) {
    if (cap <= v->cap) return TUNA_OK;
    size_t n = v->cap ? v->cap : 16;
    while (n < cap) {
        if (n > SIZE_MAX / 2 / sizeof(int32_t)) return tuna_fail(err, TUNA_ERR_LIMIT, "too many token ids");
        n *= 2;
    }
    int32_t *d = realloc(v->data, n * sizeof *d);
    if (!d) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for %zu token ids", n);
    v->data = d;
    v->cap = n;
    return TUNA_OK;
}

tuna_status tuna_ids_push(tuna_ids *v, int32_t id, tuna_error *err) {
    if (v->len == v->cap) TUNA_TRY(tuna_ids_reserve(v, v->len + 1, err));
    v->data[v->len++] = id;
    return TUNA_OK;
}

void tuna_ids_free(tuna_ids *v) {
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

/* ---- the spelling table (byte-level spelling -> id) ---------------------- */

int32_t tuna_spell_lookup(const tuna_tokenizer *tok, const char *s, size_t n) {
    if (!tok->spell_table) return -1;
    for (size_t i = tuna_hash_bytes(s, n) & tok->spell_mask;; i = (i + 1) & tok->spell_mask) {
        int32_t id = tok->spell_table[i];
        if (id < 0) return -1;
        if (tok->spell_len[id] == n && memcmp(tok->spell_blob + tok->spell_off[id], s, n) == 0) return id;
    }
}

static void spell_insert(tuna_tokenizer *tok, int32_t id) {
    const char *s = tok->spell_blob + tok->spell_off[id];
    size_t n = tok->spell_len[id];
    for (size_t i = tuna_hash_bytes(s, n) & tok->spell_mask;; i = (i + 1) & tok->spell_mask) {
        int32_t other = tok->spell_table[i];
        if (other < 0 || (tok->spell_len[other] == n && memcmp(tok->spell_blob + tok->spell_off[other], s, n) == 0)) {
            tok->spell_table[i] = id; /* a later duplicate wins, as in a JSON map */
            return;
        }
    }
}

/* ---- loading ------------------------------------------------------------- */

tuna_status tuna_tokenizer_read_json(const char *path, char **out, size_t *size, tuna_error *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) return tuna_fail(err, TUNA_ERR_IO, "cannot open tokenizer %s", path);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { gzclose(f); return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory reading %s", path); }
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_TOKENIZER_JSON) {
                free(buf);
                gzclose(f);
                return tuna_fail(err, TUNA_ERR_LIMIT, "tokenizer %s is over %zu MiB", path, MAX_TOKENIZER_JSON >> 20);
            }
            char *b = realloc(buf, cap * 2 + 1);
            if (!b) { free(buf); gzclose(f); return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory reading %s", path); }
            buf = b;
            cap *= 2;
        }
        int r = gzread(f, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            tuna_status s = tuna_fail(err, TUNA_ERR_IO, "reading tokenizer %s: %s", path, msg);
            free(buf);
            gzclose(f);
            return s;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(f);
    buf[n] = 0;
    *out = buf;
    *size = n;
    return TUNA_OK;
}

tuna_status tuna_tokenizer_load(const char *path, tuna_tokenizer **out, tuna_error *err) {
    char *json = NULL;
    size_t size = 0;
    TUNA_TRY(tuna_tokenizer_read_json(path, &json, &size, err));
    tuna_status s = tuna_tokenizer_load_json(json, size, out, err);
    free(json);
    if (s != TUNA_OK) return tuna_fail_context(err, s, "tokenizer %s: ", path);
    return TUNA_OK;
}

void tuna_tokenizer_free(tuna_tokenizer *tok) {
    if (!tok) return;
    free(tok->bytes_blob);
    free(tok->spell_blob);
    free(tok->bytes_off);
    free(tok->bytes_len);
    free(tok->spell_off);
    free(tok->spell_len);
    free(tok->flags);
    free(tok->spell_table);
    free(tok->merges);
    for (size_t i = 0; i < tok->n_added; i++) free(tok->added[i].content);
    free(tok->added);
    for (int i = 0; i < tok->n_split; i++) pcre2_code_free(tok->split[i]);
    if (tok->cache) pthread_mutex_destroy(&tok->cache_lock);
    free(tok->cache);
    free(tok);
}

static int json_is_string(const cJSON *j, const char *value) {
    return cJSON_IsString(j) && strcmp(j->valuestring, value) == 0;
}

static int json_flag(const cJSON *obj, const char *key, int dflt) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(j)) return cJSON_IsTrue(j);
    return dflt;
}

static int json_empty_or_null(const cJSON *j) {
    return !j || cJSON_IsNull(j) || (cJSON_IsString(j) && j->valuestring[0] == 0);
}

/* An id from JSON: an integer in [0, MAX_TOKEN_ID). */
static int json_id(const cJSON *j, int32_t *id) {
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0) || j->valuedouble >= MAX_TOKEN_ID ||
        j->valuedouble != (double)(int32_t)j->valuedouble)
        return 0;
    *id = (int32_t)j->valuedouble;
    return 1;
}

/* The bytes a token's spelling stands for: each character through the ByteLevel
 * map; a spelling with a character outside the map keeps its UTF-8 bytes (what
 * HF's ByteLevel decoder does, token by token). */
static size_t spelling_to_bytes(const char *s, size_t n, char *out) {
    size_t k = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)tuna_utf8_decode(u + i, n - i, &cp);
        int b = tuna_cp_to_byte(cp);
        if (b < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[k++] = (char)b;
    }
    return k;
}

typedef struct {
    const char *spelling; /* points into the cJSON tree */
    size_t len;
    int added;            /* index into the added list + 1, or 0 */
} id_entry;

static tuna_status load_added_tokens(tuna_tokenizer *tok, const cJSON *list, tuna_error *err) {
    if (!list || cJSON_IsNull(list)) return TUNA_OK;
    if (!cJSON_IsArray(list)) return tuna_fail(err, TUNA_ERR_FORMAT, "added_tokens is not an array");
    int n = cJSON_GetArraySize(list);
    tok->added = calloc((size_t)n + 1, sizeof *tok->added);
    if (!tok->added) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for added tokens");
    const cJSON *a;
    cJSON_ArrayForEach(a, list) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        int32_t id;
        if (!cJSON_IsString(content) || !json_id(cJSON_GetObjectItemCaseSensitive(a, "id"), &id))
            return tuna_fail(err, TUNA_ERR_FORMAT, "added token %zu lacks an integer id or a content string",
                             tok->n_added);
        tuna_added_token *t = &tok->added[tok->n_added++];
        t->id = id;
        t->special = (unsigned char)json_flag(a, "special", 0);
        t->lstrip = (unsigned char)json_flag(a, "lstrip", 0);
        t->rstrip = (unsigned char)json_flag(a, "rstrip", 0);
        t->single_word = (unsigned char)json_flag(a, "single_word", 0);
        t->normalized = (unsigned char)json_flag(a, "normalized", !t->special);
        size_t len = strlen(content->valuestring);
        char *repaired;
        size_t repaired_len;
        TUNA_TRY(tuna_utf8_repair((const unsigned char *)content->valuestring, len, &repaired, &repaired_len, err));
        t->content = repaired;
        t->len = repaired_len;
        if (id >= tok->vocab_size) tok->vocab_size = id + 1;
    }
    return TUNA_OK;
}

static int added_longest_first(const void *a, const void *b) {
    const tuna_added_token *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Match text for normalized added tokens is their NFC form; the first-byte
 * tables let the scanner skip ordinary text quickly. */
static tuna_status index_added_tokens(tuna_tokenizer *tok, tuna_error *err) {
    for (size_t i = 0; i < tok->n_added; i++) {
        tuna_added_token *t = &tok->added[i];
        if (t->normalized && tok->nfc) {
            char *nfc;
            size_t len;
            TUNA_TRY(tuna_nfc(t->content, t->len, &nfc, &len, err));
            if (nfc) { free(t->content); t->content = nfc; t->len = len; }
        }
    }
    if (tok->n_added) qsort(tok->added, tok->n_added, sizeof *tok->added, added_longest_first);
    for (size_t i = 0; i < tok->n_added; i++) {
        const tuna_added_token *t = &tok->added[i];
        if (t->len == 0) continue;
        unsigned char first = (unsigned char)t->content[0];
        if (t->normalized) { tok->added_first_norm[first] = 1; tok->has_normalized_added = 1; }
        else { tok->added_first_raw[first] = 1; tok->has_raw_added = 1; }
    }
    return TUNA_OK;
}

static tuna_status load_vocab(tuna_tokenizer *tok, const cJSON *vocab, id_entry **entries_out, tuna_error *err) {
    if (!cJSON_IsObject(vocab)) return tuna_fail(err, TUNA_ERR_FORMAT, "model.vocab is not an object");
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) {
        int32_t id;
        if (!json_id(v, &id)) return tuna_fail(err, TUNA_ERR_FORMAT, "vocab entry has a bad id");
        if (id >= tok->vocab_size) tok->vocab_size = id + 1;
    }
    id_entry *e = calloc((size_t)tok->vocab_size + 1, sizeof *e);
    if (!e) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for %d ids", tok->vocab_size);
    *entries_out = e;
    cJSON_ArrayForEach(v, vocab) {
        int32_t id = 0;
        json_id(v, &id);
        e[id].spelling = v->string ? v->string : "";
        e[id].len = strlen(e[id].spelling);
    }
    for (size_t i = 0; i < tok->n_added; i++) {
        e[tok->added[i].id].added = (int)i + 1;
        if (!e[tok->added[i].id].spelling) {
            e[tok->added[i].id].spelling = tok->added[i].content;
            e[tok->added[i].id].len = tok->added[i].len;
        }
    }
    return TUNA_OK;
}

/* Per id: its spelling, its bytes and its flags, in two blobs. */
static tuna_status build_token_tables(tuna_tokenizer *tok, const id_entry *e, tuna_error *err) {
    size_t n = (size_t)tok->vocab_size, total = 0, total_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        total += e[i].len;
        total_bytes += e[i].added ? tok->added[e[i].added - 1].len : e[i].len; /* bytes never outgrow the text */
    }
    if (total > UINT32_MAX / 2 || total_bytes > UINT32_MAX / 2)
        return tuna_fail(err, TUNA_ERR_LIMIT, "vocabulary text too large");
    tok->spell_blob = malloc(total + 1);
    tok->bytes_blob = malloc(total_bytes + 1);
    tok->spell_off = calloc(n + 1, sizeof(uint32_t));
    tok->spell_len = calloc(n + 1, sizeof(uint32_t));
    tok->bytes_off = calloc(n + 1, sizeof(uint32_t));
    tok->bytes_len = calloc(n + 1, sizeof(uint32_t));
    tok->flags = calloc(n + 1, 1);
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    tok->spell_table = malloc(slots * sizeof(int32_t));
    tok->spell_mask = slots - 1;
    if (!tok->spell_blob || !tok->bytes_blob || !tok->spell_off || !tok->spell_len || !tok->bytes_off ||
        !tok->bytes_len || !tok->flags || !tok->spell_table)
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the vocabulary");
    memset(tok->spell_table, 0xFF, slots * sizeof(int32_t));
    size_t so = 0, bo = 0;
    for (size_t i = 0; i < n; i++) {
        if (!e[i].spelling) continue;
        tok->flags[i] = TOK_EXISTS;
        tok->spell_off[i] = (uint32_t)so;
        tok->spell_len[i] = (uint32_t)e[i].len;
        memcpy(tok->spell_blob + so, e[i].spelling, e[i].len);
        so += e[i].len;
        tok->bytes_off[i] = (uint32_t)bo;
        if (e[i].added) {
            const tuna_added_token *t = &tok->added[e[i].added - 1];
            tok->flags[i] |= TOK_ADDED | (t->special ? TOK_SPECIAL : 0);
            tok->bytes_len[i] = (uint32_t)spelling_to_bytes(t->content, t->len, tok->bytes_blob + bo);
        } else {
            tok->bytes_len[i] = (uint32_t)spelling_to_bytes(e[i].spelling, e[i].len, tok->bytes_blob + bo);
        }
        bo += tok->bytes_len[i];
        if (!e[i].added) spell_insert(tok, (int32_t)i);
    }
    for (int b = 0; b < 256; b++) {
        unsigned char s[4];
        int len = tuna_utf8_encode(tuna_byte_to_cp((unsigned char)b), s);
        tok->byte_id[b] = tuna_spell_lookup(tok, (const char *)s, (size_t)len);
    }
    return TUNA_OK;
}

/* Look up a merge operand's id; for "a b" strings the operands are cut out of s. */
static int32_t operand_id(const tuna_tokenizer *tok, const char *s, size_t n) { return tuna_spell_lookup(tok, s, n); }

static tuna_status load_merges(tuna_tokenizer *tok, const cJSON *merges, tuna_error *err) {
    if (!cJSON_IsArray(merges)) return tuna_fail(err, TUNA_ERR_FORMAT, "model.merges is not an array");
    size_t n = (size_t)cJSON_GetArraySize(merges);
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    tok->merges = malloc(slots * sizeof *tok->merges);
    if (!tok->merges) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for %zu merges", n);
    for (size_t i = 0; i < slots; i++) tok->merges[i].rank = UINT32_MAX;
    tok->merge_mask = slots - 1;
    char *joined = NULL;
    size_t joined_cap = 0;
    uint32_t rank = 0;
    const cJSON *m;
    tuna_status status = TUNA_OK;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                status = tuna_fail(err, TUNA_ERR_FORMAT, "merge %u \"%.60s\" is not two tokens", rank, m->valuestring);
                break;
            }
            a = m->valuestring; la = (size_t)(sp - a);
            b = sp + 1; lb = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            a = m->child->valuestring; la = strlen(a);
            b = m->child->next->valuestring; lb = strlen(b);
        } else {
            status = tuna_fail(err, TUNA_ERR_FORMAT, "merge %u is neither \"a b\" nor [\"a\", \"b\"]", rank);
            break;
        }
        if (la + lb + 1 > joined_cap) {
            joined_cap = 2 * (la + lb + 1);
            char *j = realloc(joined, joined_cap);
            if (!j) { status = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory in merges"); break; }
            joined = j;
        }
        memcpy(joined, a, la);
        memcpy(joined + la, b, lb);
        int32_t ia = operand_id(tok, a, la), ib = operand_id(tok, b, lb), inew = operand_id(tok, joined, la + lb);
        if (ia < 0 || ib < 0 || inew < 0) {
            status = tuna_fail(err, TUNA_ERR_FORMAT, "merge %u (\"%.40s\" \"%.40s\") uses a token not in the vocabulary",
                               rank, a, b);
            break;
        }
        uint64_t pair = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        size_t i = (size_t)((pair * 0x9E3779B97F4A7C15ull) >> 20) & tok->merge_mask;
        while (tok->merges[i].rank != UINT32_MAX && tok->merges[i].pair != pair) i = (i + 1) & tok->merge_mask;
        /* a repeated pair takes the later rank, as HF's HashMap collect does */
        tok->merges[i] = (tuna_merge_slot){pair, rank, inew};
        rank++;
    }
    free(joined);
    return status;
}

static tuna_status load_normalizer(tuna_tokenizer *tok, const cJSON *nz, tuna_error *err) {
    if (!nz || cJSON_IsNull(nz)) return TUNA_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(nz, "type");
    if (json_is_string(type, "NFC")) { tok->nfc = 1; return TUNA_OK; }
    if (json_is_string(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(nz, "normalizers"), *x;
        if (!cJSON_IsArray(list)) return tuna_fail(err, TUNA_ERR_FORMAT, "normalizer Sequence without a list");
        cJSON_ArrayForEach(x, list) TUNA_TRY(load_normalizer(tok, x, err));
        return TUNA_OK;
    }
    return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "normalizer %s is not supported (only NFC)",
                     cJSON_IsString(type) ? type->valuestring : "?");
}

static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static tuna_status add_split(tuna_tokenizer *tok, const char *pattern, size_t len, int literal, tuna_error *err) {
    if (tok->n_split == TUNA_TOK_MAX_SPLITS)
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "more than %d Split pre-tokenizers", TUNA_TOK_MAX_SPLITS);
    int code;
    PCRE2_SIZE offset;
    char *translated = NULL;
    size_t translated_len = len;
    if (!literal) TUNA_TRY(tuna_regex_pin_classes(pattern, len, &translated, &translated_len, err));
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(translated ? translated : pattern), translated_len,
                                   literal ? PCRE2_LITERAL | PCRE2_UTF : PCRE2_UTF | PCRE2_UCP, &code, &offset, NULL);
    free(translated);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return tuna_fail(err, TUNA_ERR_FORMAT, "pre-tokenizer regex does not compile at offset %zu: %s",
                         (size_t)offset, (const char *)msg);
    }
    tok->split_jit[tok->n_split] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    tok->split[tok->n_split++] = re;
    return TUNA_OK;
}

static tuna_status load_pre_tokenizer(tuna_tokenizer *tok, const cJSON *pt, tuna_error *err) {
    if (!pt || cJSON_IsNull(pt)) return TUNA_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (json_is_string(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers"), *x;
        if (!cJSON_IsArray(list)) return tuna_fail(err, TUNA_ERR_FORMAT, "pre_tokenizer Sequence without a list");
        cJSON_ArrayForEach(x, list) TUNA_TRY(load_pre_tokenizer(tok, x, err));
        return TUNA_OK;
    }
    if (json_is_string(type, "Split")) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const cJSON *regex = cJSON_GetObjectItemCaseSensitive(pattern, "Regex");
        const cJSON *literal = cJSON_GetObjectItemCaseSensitive(pattern, "String");
        if (!json_is_string(cJSON_GetObjectItemCaseSensitive(pt, "behavior"), "Isolated") || json_flag(pt, "invert", 0))
            return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "Split pre-tokenizer: only behavior Isolated, invert false");
        if (cJSON_IsString(regex)) return add_split(tok, regex->valuestring, strlen(regex->valuestring), 0, err);
        if (cJSON_IsString(literal)) return add_split(tok, literal->valuestring, strlen(literal->valuestring), 1, err);
        return tuna_fail(err, TUNA_ERR_FORMAT, "Split pre-tokenizer without a Regex or String pattern");
    }
    if (json_is_string(type, "ByteLevel")) {
        if (json_flag(pt, "add_prefix_space", 0))
            return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "ByteLevel add_prefix_space is not supported");
        if (json_flag(pt, "use_regex", 1)) return add_split(tok, gpt2_pattern, strlen(gpt2_pattern), 0, err);
        return TUNA_OK; /* the byte mapping itself is implicit: BPE runs on raw bytes */
    }
    return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "pre-tokenizer %s is not supported",
                     cJSON_IsString(type) ? type->valuestring : "?");
}

static tuna_status load_model(tuna_tokenizer *tok, const cJSON *root, tuna_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return tuna_fail(err, TUNA_ERR_FORMAT, "no \"model\" object");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !json_is_string(type, "BPE"))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "model type %s is not supported (only BPE)",
                         cJSON_IsString(type) ? type->valuestring : "?");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "BPE dropout is not supported");
    if (!json_empty_or_null(cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix")) ||
        !json_empty_or_null(cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix")))
        return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "BPE subword prefix / word suffix are not supported");
    if (json_flag(model, "byte_fallback", 0)) return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "byte_fallback is not supported");
    tok->ignore_merges = json_flag(model, "ignore_merges", 0);

    id_entry *entries = NULL;
    tuna_status s = load_vocab(tok, cJSON_GetObjectItemCaseSensitive(model, "vocab"), &entries, err);
    if (s == TUNA_OK) s = build_token_tables(tok, entries, err);
    free(entries);
    TUNA_TRY(s);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    tok->unk_id = -1;
    if (cJSON_IsString(unk)) {
        tok->unk_id = tuna_tokenizer_token_id(tok, unk->valuestring);
        if (tok->unk_id < 0) return tuna_fail(err, TUNA_ERR_FORMAT, "unk_token is not in the vocabulary");
    }
    return load_merges(tok, cJSON_GetObjectItemCaseSensitive(model, "merges"), err);
}

tuna_status tuna_tokenizer_load_json(const char *json, size_t len, tuna_tokenizer **out, tuna_error *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return tuna_fail(err, TUNA_ERR_FORMAT, "not valid JSON");
    tuna_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) { cJSON_Delete(root); return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory"); }
    tuna_status s = load_normalizer(tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err);
    if (s == TUNA_OK) s = load_added_tokens(tok, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err);
    if (s == TUNA_OK) s = load_model(tok, root, err);
    if (s == TUNA_OK) s = index_added_tokens(tok, err);
    if (s == TUNA_OK) s = load_pre_tokenizer(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err);
    if (s == TUNA_OK) {
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
        if (dec && !cJSON_IsNull(dec) && !json_is_string(cJSON_GetObjectItemCaseSensitive(dec, "type"), "ByteLevel"))
            s = tuna_fail(err, TUNA_ERR_UNSUPPORTED, "only the ByteLevel decoder is supported");
    }
    if (s == TUNA_OK) {
        tok->cache = calloc(TUNA_TOK_CACHE_SLOTS, sizeof *tok->cache);
        if (!tok->cache) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for the word cache");
        else pthread_mutex_init(&tok->cache_lock, NULL);
    }
    cJSON_Delete(root);
    if (s != TUNA_OK) {
        tuna_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return TUNA_OK;
}

/* ---- queries --------------------------------------------------------------- */

int32_t tuna_tokenizer_token_id(const tuna_tokenizer *tok, const char *token) {
    size_t n = strlen(token);
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == n && memcmp(tok->added[i].content, token, n) == 0) return tok->added[i].id;
    return tuna_spell_lookup(tok, token, n);
}

int tuna_tokenizer_is_special(const tuna_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab_size && (tok->flags[id] & TOK_SPECIAL);
}

int32_t tuna_tokenizer_vocab_size(const tuna_tokenizer *tok) { return tok->vocab_size; }

const char *tuna_tokenizer_token_bytes(const tuna_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab_size || !(tok->flags[id] & TOK_EXISTS)) return NULL;
    *len = tok->bytes_len[id];
    return tok->bytes_blob + tok->bytes_off[id];
}

/* ---- encoding ---------------------------------------------------------------- */

typedef struct {
    const tuna_tokenizer *tok;
    tuna_ids *ids;
    tuna_bpe_scratch bpe;
    pcre2_match_data *match;
    int plain; /* no added token is cut out: the text is all ordinary text */
} encode_state;

/* Pre-tokenizer stage k over one piece: matches and the gaps between them both
 * become words ("Isolated"); after the last stage, each word goes to BPE. */
static tuna_status split_stage(encode_state *st, int k, const char *s, size_t n, tuna_error *err) {
    const tuna_tokenizer *tok = st->tok;
    if (n == 0) return TUNA_OK;
    if (k == tok->n_split) return tuna_bpe_word(tok, &st->bpe, (const unsigned char *)s, n, st->ids, err);
    pcre2_code *re = tok->split[k];
    size_t off = 0, emitted = 0;
    while (off < n) {
        int rc = tok->split_jit[k]
                     ? pcre2_jit_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, st->match, NULL)
                     : pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, st->match, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, st->match, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return tuna_fail(err, TUNA_ERR_INTERNAL, "pre-tokenizer regex failed (PCRE2 error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->match);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match yields no word; step over one character */
            off = ms + 1;
            while (off < n && ((unsigned char)s[off] & 0xC0) == 0x80) off++;
            continue;
        }
        if (ms > emitted) TUNA_TRY(split_stage(st, k + 1, s + emitted, ms - emitted, err));
        TUNA_TRY(split_stage(st, k + 1, s + ms, me - ms, err));
        emitted = off = me;
    }
    if (emitted < n) TUNA_TRY(split_stage(st, k + 1, s + emitted, n - emitted, err));
    return TUNA_OK;
}

/* Receives the pieces between added tokens. */
typedef tuna_status (*piece_fn)(encode_state *st, const char *s, size_t n, tuna_error *err);

static int last_char_is_word(const char *s, size_t n) {
    if (n == 0) return 0;
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp;
    tuna_utf8_decode((const unsigned char *)s + i, n - i, &cp);
    return cp == '_' || tuna_is_alphanumeric(cp);
}

static int first_char_is_word(const char *s, size_t n) {
    if (n == 0) return 0;
    uint32_t cp;
    tuna_utf8_decode((const unsigned char *)s, n, &cp);
    return cp == '_' || tuna_is_alphanumeric(cp);
}

/* HF's AddedVocabulary::find_matches: leftmost-longest matches of the added
 * tokens of one kind (normalized or not), with single_word / lstrip / rstrip.
 * Text between matches goes to `rest`, each match's id to the output. */
static tuna_status split_added(encode_state *st, const char *s, size_t n, int normalized, piece_fn rest,
                               tuna_error *err) {
    const tuna_tokenizer *tok = st->tok;
    const unsigned char *first = normalized ? tok->added_first_norm : tok->added_first_raw;
    size_t pos = 0, start_offset = 0;
    while (pos < n) {
        if (!first[(unsigned char)s[pos]]) { pos++; continue; }
        const tuna_added_token *hit = NULL;
        for (size_t i = 0; i < tok->n_added; i++) {
            const tuna_added_token *t = &tok->added[i];
            if (t->normalized != normalized || t->len == 0 || t->len > n - pos) continue;
            if (memcmp(s + pos, t->content, t->len) == 0) { hit = t; break; } /* longest first */
        }
        if (!hit) { pos++; continue; }
        size_t start = pos, stop = pos + hit->len;
        pos = stop; /* the scan resumes after the match, whatever becomes of it */
        if (hit->single_word && (last_char_is_word(s, start) || first_char_is_word(s + stop, n - stop))) continue;
        if (hit->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t j = ns - 1;
                while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
                uint32_t cp;
                tuna_utf8_decode((const unsigned char *)s + j, ns - j, &cp);
                if (!tuna_is_whitespace(cp)) break;
                ns = j;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (hit->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int len = tuna_utf8_decode((const unsigned char *)s + stop, n - stop, &cp);
                if (!tuna_is_whitespace(cp)) break;
                stop += (size_t)len;
            }
        }
        if (start_offset < start) TUNA_TRY(rest(st, s + start_offset, start - start_offset, err));
        TUNA_TRY(tuna_ids_push(st->ids, hit->id, err));
        start_offset = stop;
    }
    if (start_offset < n) TUNA_TRY(rest(st, s + start_offset, n - start_offset, err));
    return TUNA_OK;
}

static tuna_status pre_tokenize_piece(encode_state *st, const char *s, size_t n, tuna_error *err) {
    return split_stage(st, 0, s, n, err);
}

/* A piece between raw-matched added tokens: normalise it, then cut out the
 * normalized added tokens, then pre-tokenize and BPE. */
static tuna_status normalize_piece(encode_state *st, const char *s, size_t n, tuna_error *err) {
    char *nfc = NULL;
    size_t len = n;
    if (st->tok->nfc) TUNA_TRY(tuna_nfc(s, n, &nfc, &len, err));
    const char *text = nfc ? nfc : s;
    tuna_status status = st->tok->has_normalized_added && !st->plain ? split_added(st, text, len, 1, pre_tokenize_piece, err)
                                                       : pre_tokenize_piece(st, text, len, err);
    free(nfc);
    return status;
}

static tuna_status encode(const tuna_tokenizer *tok, const char *text, size_t len, int plain, tuna_ids *ids,
                          tuna_error *err) {
    if (len == 0) return TUNA_OK;
    if (!text) return tuna_fail(err, TUNA_ERR_INVALID, "encode: NULL text");
    char *repaired = NULL;
    if (!tuna_utf8_valid((const unsigned char *)text, len)) {
        TUNA_TRY(tuna_utf8_repair((const unsigned char *)text, len, &repaired, &len, err));
        text = repaired;
    }
    encode_state st = {.tok = tok, .ids = ids, .plain = plain};
    st.match = pcre2_match_data_create(1, NULL);
    tuna_status s = st.match ? TUNA_OK : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for regex match data");
    if (s == TUNA_OK) {
        /* roughly one id per 4 bytes of text: reserve to skip most regrowth */
        s = tuna_ids_reserve(ids, ids->len + len / 4 + 16, err);
    }
    if (s == TUNA_OK)
        s = tok->has_raw_added && !plain ? split_added(&st, text, len, 0, normalize_piece, err)
                                         : normalize_piece(&st, text, len, err);
    pcre2_match_data_free(st.match);
    tuna_bpe_scratch_free(&st.bpe);
    free(repaired);
    return s;
}

tuna_status tuna_tokenizer_encode(const tuna_tokenizer *tok, const char *text, size_t len, tuna_ids *ids,
                                  tuna_error *err) {
    return encode(tok, text, len, 0, ids, err);
}

tuna_status tuna_tokenizer_encode_plain(const tuna_tokenizer *tok, const char *text, size_t len, tuna_ids *ids,
                                        tuna_error *err) {
    return encode(tok, text, len, 1, ids, err);
}

/* ---- decoding ------------------------------------------------------------ */

tuna_status tuna_tokenizer_decode(const tuna_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                                  char **text, size_t *text_len, tuna_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->vocab_size || !(tok->flags[id] & TOK_EXISTS))
            return tuna_fail(err, TUNA_ERR_INVALID, "decode: id %d at position %zu is not in the vocabulary", id, i);
        if (skip_special && (tok->flags[id] & TOK_SPECIAL)) continue;
        total += tok->bytes_len[id];
    }
    unsigned char *raw = malloc(total + 1);
    if (!raw) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory decoding %zu ids", n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (skip_special && (tok->flags[id] & TOK_SPECIAL)) continue;
        memcpy(raw + k, tok->bytes_blob + tok->bytes_off[id], tok->bytes_len[id]);
        k += tok->bytes_len[id];
    }
    raw[k] = 0;
    if (tuna_utf8_valid(raw, k)) {
        *text = (char *)raw;
        if (text_len) *text_len = k;
        return TUNA_OK;
    }
    size_t len;
    tuna_status s = tuna_utf8_repair(raw, k, text, &len, err);
    free(raw);
    if (s == TUNA_OK && text_len) *text_len = len;
    return s;
}

void tuna_token_streamer_init(tuna_token_streamer *s, const tuna_tokenizer *tok, int skip_special) {
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
}

void tuna_token_streamer_free(tuna_token_streamer *s) {
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

/* Repair pending + bytes into s->buf, holding back a trailing incomplete but
 * so-far valid UTF-8 sequence (unless final). A held-back sequence begins with a
 * lead byte, which no earlier sequence can absorb, so emitting the prefix now
 * gives the same replacements as decoding everything at once. */
static tuna_status streamer_emit(tuna_token_streamer *s, const char *bytes, size_t n, int final, const char **piece,
                                 size_t *piece_len, tuna_error *err) {
    size_t total = (size_t)s->n_pending + n;
    unsigned char *joined = malloc(total + 1);
    if (!joined) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory in the token streamer");
    memcpy(joined, s->pending, (size_t)s->n_pending);
    if (n) memcpy(joined + s->n_pending, bytes, n);
    size_t keep = total;
    if (!final) {
        for (size_t back = 1; back <= 3 && back <= total; back++) {
            size_t at = total - back;
            if (joined[at] < 0xC0) continue;
            size_t sub;
            int inc;
            if (tuna_utf8_sequence(joined + at, back, &sub, &inc) == 0 && inc) keep = at;
            break;
        }
    }
    char *out;
    size_t out_len;
    tuna_status st = tuna_utf8_repair(joined, keep, &out, &out_len, err);
    if (st == TUNA_OK) {
        s->n_pending = (int)(total - keep);
        memcpy(s->pending, joined + keep, total - keep);
        free(s->buf);
        s->buf = out;
        s->cap = out_len + 1;
        *piece = out;
        *piece_len = out_len;
    }
    free(joined);
    return st;
}

tuna_status tuna_token_streamer_put(tuna_token_streamer *s, int32_t id, const char **piece, size_t *piece_len,
                                    tuna_error *err) {
    size_t n;
    const char *bytes = tuna_tokenizer_token_bytes(s->tok, id, &n);
    if (!bytes) return tuna_fail(err, TUNA_ERR_INVALID, "streamer: id %d is not in the vocabulary", id);
    if (s->skip_special && tuna_tokenizer_is_special(s->tok, id)) n = 0;
    return streamer_emit(s, bytes, n, 0, piece, piece_len, err);
}

tuna_status tuna_token_streamer_flush(tuna_token_streamer *s, const char **piece, size_t *piece_len, tuna_error *err) {
    return streamer_emit(s, NULL, 0, 1, piece, piece_len, err);
}

/* ---- the bundled tokenizer ------------------------------------------------- */

#define BUNDLED_TOKENIZER "models/tokenizer/tuna2-tokenizer.json.gz"

static const char *try_path(char *buf, size_t cap, const char *dir, const char *up) {
    int n = snprintf(buf, cap, "%s%s%s" BUNDLED_TOKENIZER, dir, dir[0] ? "/" : "", up);
    if (n < 0 || (size_t)n >= cap) return NULL;
    return access(buf, R_OK) == 0 ? buf : NULL;
}

const char *tuna_tokenizer_default_path(char *buf, size_t cap) {
    const char *home = getenv("TUNA_HOME");
    if (home && home[0] && try_path(buf, cap, home, "")) return buf;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            if (try_path(buf, cap, exe, "../") || try_path(buf, cap, exe, "../../")) return buf;
        }
    }
    return try_path(buf, cap, "", "");
}
