/* The BPE merge loop (SPEC section 3), as Hugging Face's Word::merge_all does it:
 * start from one symbol per byte, repeatedly merge the adjacent pair with the
 * lowest merge rank (leftmost on ties), using a binary min-heap of candidate
 * pairs keyed (rank, position). A popped candidate is stale when its left
 * symbol was merged away or the pair at its position no longer merges into the
 * same new id; it is then dropped. O(n log n) per word.
 *
 * Results for short words are kept in a direct-mapped cache shared by all
 * callers of one tokenizer and guarded by its mutex. */
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_internal.h"
#include "text/unicode.h"

struct tuna_bpe_symbol {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int32_t alive;
};

struct tuna_bpe_merge {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
};

/* 64-bit FNV-1a; never returns 0 (0 marks an empty cache slot). */
uint64_t tuna_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ? h : 1;
}

static size_t pair_slot(uint64_t pair, size_t mask) {
    return (size_t)((pair * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

int tuna_merge_lookup(const tuna_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id) {
    uint64_t pair = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = pair_slot(pair, tok->merge_mask);; i = (i + 1) & tok->merge_mask) {
        const tuna_merge_slot *s = &tok->merges[i];
        if (s->rank == UINT32_MAX) return 0;
        if (s->pair == pair) {
            *rank = s->rank;
            *new_id = s->new_id;
            return 1;
        }
    }
}

static int heap_less(const struct tuna_bpe_merge *a, const struct tuna_bpe_merge *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct tuna_bpe_merge *h, size_t *n, struct tuna_bpe_merge m) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&m, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = m;
}

static struct tuna_bpe_merge heap_pop(struct tuna_bpe_merge *h, size_t *n) {
    struct tuna_bpe_merge top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_pair(const tuna_tokenizer *tok, struct tuna_bpe_symbol *sym, struct tuna_bpe_merge *heap,
                      size_t *n_heap, int32_t pos) {
    int32_t next = sym[pos].next;
    if (next < 0) return;
    uint32_t rank;
    int32_t new_id;
    if (tuna_merge_lookup(tok, sym[pos].id, sym[next].id, &rank, &new_id))
        heap_push(heap, n_heap, (struct tuna_bpe_merge){rank, (uint32_t)pos, new_id});
}

static int cache_get(const tuna_tokenizer *tok, uint64_t h, const unsigned char *w, size_t n, int32_t *ids,
                     int *n_ids) {
    tuna_tokenizer *t = (tuna_tokenizer *)tok; /* the cache is the one mutable part */
    const tuna_cache_slot *s = &t->cache[h & (TUNA_TOK_CACHE_SLOTS - 1)];
    int hit = 0;
    pthread_mutex_lock(&t->cache_lock);
    if (s->hash == h && s->len == n && memcmp(s->word, w, n) == 0) {
        *n_ids = s->n_ids;
        memcpy(ids, s->ids, sizeof(int32_t) * s->n_ids);
        hit = 1;
    }
    pthread_mutex_unlock(&t->cache_lock);
    return hit;
}

static void cache_put(const tuna_tokenizer *tok, uint64_t h, const unsigned char *w, size_t n, const int32_t *ids,
                      size_t n_ids) {
    tuna_tokenizer *t = (tuna_tokenizer *)tok;
    tuna_cache_slot *s = &t->cache[h & (TUNA_TOK_CACHE_SLOTS - 1)];
    pthread_mutex_lock(&t->cache_lock);
    s->hash = h;
    s->len = (uint8_t)n;
    s->n_ids = (uint8_t)n_ids;
    memcpy(s->word, w, n);
    memcpy(s->ids, ids, sizeof(int32_t) * n_ids);
    pthread_mutex_unlock(&t->cache_lock);
}

static tuna_status grow_scratch(tuna_bpe_scratch *sc, size_t n, tuna_error *err) {
    if (n <= sc->sym_cap) return TUNA_OK;
    size_t cap = sc->sym_cap ? sc->sym_cap : 64;
    while (cap < n) cap *= 2;
    /* each merge pushes at most two candidates; n - 1 initial ones */
    struct tuna_bpe_symbol *sym = realloc(sc->sym, cap * sizeof *sym);
    if (sym) sc->sym = sym;
    struct tuna_bpe_merge *heap = realloc(sc->heap, 3 * cap * sizeof *heap);
    if (heap) sc->heap = heap;
    if (!sym || !heap) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory in BPE for a %zu-byte word", n);
    sc->sym_cap = cap;
    sc->heap_cap = 3 * cap;
    return TUNA_OK;
}

void tuna_bpe_scratch_free(tuna_bpe_scratch *sc) {
    free(sc->sym);
    free(sc->heap);
    free(sc->spell);
    memset(sc, 0, sizeof *sc);
}

/* ignore_merges: a word that is itself in the vocabulary is emitted whole. */
static int32_t whole_word_id(const tuna_tokenizer *tok, tuna_bpe_scratch *sc, const unsigned char *w, size_t n) {
    if (n > (SIZE_MAX - 1) / 2 || (n * 2 > sc->spell_cap && !(sc->spell = realloc(sc->spell, sc->spell_cap = n * 2))))
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)tuna_utf8_encode(tuna_byte_to_cp(w[i]), (unsigned char *)sc->spell + k);
    return tuna_spell_lookup(tok, sc->spell, k);
}

tuna_status tuna_bpe_word(const tuna_tokenizer *tok, tuna_bpe_scratch *sc, const unsigned char *w, size_t n,
                          tuna_ids *ids, tuna_error *err) {
    if (n == 0) return TUNA_OK;
    if (n == 1) {
        int32_t id = tok->byte_id[w[0]] >= 0 ? tok->byte_id[w[0]] : tok->unk_id;
        return id >= 0 ? tuna_ids_push(ids, id, err) : TUNA_OK;
    }
    if (tok->ignore_merges) {
        int32_t id = whole_word_id(tok, sc, w, n);
        if (id >= 0) return tuna_ids_push(ids, id, err);
    }
    uint64_t h = 0;
    if (n <= TUNA_TOK_CACHE_WORD) {
        int32_t cached[TUNA_TOK_CACHE_IDS];
        int n_cached;
        h = tuna_hash_bytes(w, n);
        if (cache_get(tok, h, w, n, cached, &n_cached)) {
            TUNA_TRY(tuna_ids_reserve(ids, ids->len + (size_t)n_cached, err));
            memcpy(ids->data + ids->len, cached, sizeof(int32_t) * (size_t)n_cached);
            ids->len += (size_t)n_cached;
            return TUNA_OK;
        }
    }
    if (n > INT32_MAX / 4) return tuna_fail(err, TUNA_ERR_LIMIT, "word of %zu bytes is too long", n);
    TUNA_TRY(grow_scratch(sc, n, err));
    struct tuna_bpe_symbol *sym = sc->sym;
    int32_t n_sym = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[w[i]] >= 0 ? tok->byte_id[w[i]] : tok->unk_id;
        if (id < 0) continue; /* HF drops a symbol that is not in the vocabulary when there is no unk */
        sym[n_sym] = (struct tuna_bpe_symbol){id, n_sym - 1, n_sym + 1, 1};
        n_sym++;
    }
    if (n_sym == 0) return TUNA_OK;
    sym[n_sym - 1].next = -1;
    size_t n_heap = 0;
    for (int32_t i = 0; i + 1 < n_sym; i++) push_pair(tok, sym, sc->heap, &n_heap, i);
    while (n_heap) {
        struct tuna_bpe_merge top = heap_pop(sc->heap, &n_heap);
        struct tuna_bpe_symbol *left = &sym[top.pos];
        if (!left->alive || left->next < 0) continue;
        struct tuna_bpe_symbol *right = &sym[left->next];
        uint32_t rank;
        int32_t new_id;
        if (!tuna_merge_lookup(tok, left->id, right->id, &rank, &new_id) || new_id != top.new_id) continue;
        left->id = top.new_id;
        right->alive = 0;
        left->next = right->next;
        if (right->next >= 0) sym[right->next].prev = (int32_t)top.pos;
        if (left->prev >= 0) push_pair(tok, sym, sc->heap, &n_heap, left->prev);
        push_pair(tok, sym, sc->heap, &n_heap, (int32_t)top.pos);
    }
    size_t first = ids->len;
    for (int32_t i = 0; i >= 0; i = sym[i].next) TUNA_TRY(tuna_ids_push(ids, sym[i].id, err));
    size_t produced = ids->len - first;
    if (h && produced <= TUNA_TOK_CACHE_IDS) cache_put(tok, h, w, n, ids->data + first, produced);
    return TUNA_OK;
}
