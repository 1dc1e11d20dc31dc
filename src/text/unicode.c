/* UTF-8 repair, NFC and the ByteLevel map (SPEC section 3). */
#include "text/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/unicode_hf_tables.h"

int tuna_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char b = s[0];
    if (b < 0x80 || n < 2) { *cp = b; return 1; }
    if (b < 0xE0) { *cp = ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (b < 0xF0 || n < 4) {
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
          (s[3] & 0x3F);
    return 4;
}

int tuna_utf8_encode(uint32_t cp, unsigned char *o) {
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Table 3-7 of the Unicode standard: the well-formed byte sequences. The second
 * byte's range depends on the lead byte (no overlongs, no surrogates, <= U+10FFFF). */
int tuna_utf8_sequence(const unsigned char *s, size_t n, size_t *maximal_subpart, int *incomplete) {
    unsigned char b = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    *incomplete = 0;
    if (b < 0x80) { *maximal_subpart = 1; return 1; }
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) { need = 3; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
    else if (b >= 0xF0 && b <= 0xF4) { need = 4; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
    else { *maximal_subpart = 1; return 0; }
    size_t k = 1;
    for (; k < (size_t)need; k++) {
        if (k >= n) { *incomplete = 1; *maximal_subpart = k; return 0; }
        unsigned char c = s[k];
        unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (c < l || c > h) { *maximal_subpart = k; return 0; }
    }
    *maximal_subpart = (size_t)need;
    return need;
}

int tuna_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII runs, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) { i++; continue; }
        size_t sub;
        int inc;
        int len = tuna_utf8_sequence(s + i, n - i, &sub, &inc);
        if (len == 0) return 0;
        i += (size_t)len;
    }
    return 1;
}

tuna_status tuna_utf8_repair(const unsigned char *s, size_t n, char **out, size_t *out_len, tuna_error *err) {
    /* each input byte yields at most 3 output bytes (one U+FFFD) */
    size_t cap;
    if (tuna_mul_overflows(n, 3, &cap) || tuna_add_overflows(cap, 1, &cap))
        return tuna_fail(err, TUNA_ERR_LIMIT, "text of %zu bytes is too long", n);
    unsigned char *o = malloc(cap);
    if (!o) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory repairing %zu bytes of UTF-8", n);
    size_t i = 0, j = 0;
    while (i < n) {
        size_t sub;
        int inc;
        int len = tuna_utf8_sequence(s + i, n - i, &sub, &inc);
        if (len > 0) {
            memcpy(o + j, s + i, (size_t)len);
            j += (size_t)len;
            i += (size_t)len;
        } else {
            o[j++] = 0xEF; o[j++] = 0xBF; o[j++] = 0xBD;
            i += sub;
        }
    }
    o[j] = 0;
    *out = (char *)o;
    *out_len = j;
    return TUNA_OK;
}

/* Code points that cannot change under NFC and cannot combine with a neighbour
 * that is itself one of them: below U+0300 (no combining marks there), CJK
 * ideographs, Hangul syllables (they compose only with trailing jamo, which are
 * not in this set). A run made only of these is already NFC. */
static int nfc_inert(uint32_t cp) {
    return cp < 0x300 || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
           (cp >= 0xAC00 && cp <= 0xD7A3);
}

static int hf_nfc_barrier(uint32_t cp) {
    size_t lo = 0, hi = sizeof tuna_hf_nfc_barriers / sizeof tuna_hf_nfc_barriers[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tuna_hf_nfc_barriers[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < sizeof tuna_hf_nfc_barriers / sizeof tuna_hf_nfc_barriers[0] && tuna_hf_nfc_barriers[lo] == cp;
}

typedef struct {
    char *data;
    size_t len, cap;
} byte_buf;

static int buf_append(byte_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 1;
}

static int nfc_run(byte_buf *b, const char *s, size_t n) {
    if (n == 0) return 1;
    utf8proc_uint8_t *mapped = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &mapped,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (r < 0) { free(mapped); return buf_append(b, s, n); } /* cannot happen on valid UTF-8 */
    int ok = buf_append(b, mapped, (size_t)r);
    free(mapped);
    return ok;
}

tuna_status tuna_nfc(const char *s, size_t n, char **out, size_t *out_len, tuna_error *err) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    int inert = 1, barrier = 0;
    while (i < n) {
        if (u[i] < 0xCC) { i++; continue; } /* ASCII, continuation bytes, leads below U+0300 */
        uint32_t cp;
        i += (size_t)tuna_utf8_decode(u + i, n - i, &cp);
        if (!nfc_inert(cp)) inert = 0;
        if (hf_nfc_barrier(cp)) barrier = 1;
    }
    *out = NULL;
    *out_len = n;
    if (inert) return TUNA_OK;
    byte_buf b = {0};
    int ok = 1;
    if (!barrier) {
        ok = nfc_run(&b, s, n);
    } else {
        /* HF treats these as plain starters that compose with nothing: NFC the
         * runs between them separately and keep them as they are. */
        size_t start = 0;
        i = 0;
        while (i < n && ok) {
            uint32_t cp;
            int len = tuna_utf8_decode(u + i, n - i, &cp);
            if (hf_nfc_barrier(cp)) {
                ok = nfc_run(&b, s + start, i - start) && buf_append(&b, s + i, (size_t)len);
                start = i + (size_t)len;
            }
            i += (size_t)len;
        }
        if (ok) ok = nfc_run(&b, s + start, n - start);
    }
    if (!ok) {
        free(b.data);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory in NFC of %zu bytes", n);
    }
    if (!b.data) ok = buf_append(&b, "", 0);
    if (!ok) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory in NFC");
    *out = b.data;
    *out_len = b.len;
    return TUNA_OK;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes are mapped, in order, to U+0100, U+0101, ... */
static int byte_is_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

/* The 68 other bytes, in order: 0..32 (-> U+0100..U+0120), 127..160 (-> U+0121..U+0142),
 * 173 (-> U+0143). */
uint32_t tuna_byte_to_cp(unsigned char b) {
    if (byte_is_printable(b)) return b;
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33 + (b - 127u);
    return 256u + 67; /* 173, the soft hyphen */
}

int tuna_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    if (n <= 32) return (int)n;
    if (n <= 66) return (int)(127 + n - 33);
    return 173;
}

int tuna_is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

int tuna_is_alphanumeric(uint32_t c) {
    if (c >= 0x110000) return 0;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static int buf_printf_ranges(byte_buf *b, const uint32_t (*r)[2], size_t n) {
    char item[40];
    for (size_t i = 0; i < n; i++) {
        int len = r[i][0] == r[i][1] ? snprintf(item, sizeof item, "\\x{%X}", r[i][0])
                                     : snprintf(item, sizeof item, "\\x{%X}-\\x{%X}", r[i][0], r[i][1]);
        if (!buf_append(b, item, (size_t)len)) return 0;
    }
    return 1;
}

/* Appends the class body (no brackets) standing for \p{L}, \p{N} or \s as HF sees it. */
static int append_class(byte_buf *b, char which) {
    if (which == 'L') return buf_append(b, "\\p{L}", 5) && buf_printf_ranges(b, tuna_hf_L_add, TUNA_HF_L_ADD_COUNT);
    if (which == 'N') return buf_append(b, "\\p{N}", 5) && buf_printf_ranges(b, tuna_hf_N_add, TUNA_HF_N_ADD_COUNT);
    return buf_printf_ranges(b, tuna_hf_S, TUNA_HF_S_COUNT);
}

tuna_status tuna_regex_pin_classes(const char *p, size_t n, char **out, size_t *out_len, tuna_error *err) {
    byte_buf b = {0};
    int in_class = 0, ok = 1;
    size_t class_start = 0;
    for (size_t i = 0; i < n && ok;) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char which = 0, negated = 0;
            size_t len = 2;
            if (i + 4 < n && (p[i + 1] == 'p' || p[i + 1] == 'P') && p[i + 2] == '{' &&
                (p[i + 3] == 'L' || p[i + 3] == 'N') && p[i + 4] == '}') {
                which = p[i + 3];
                negated = p[i + 1] == 'P';
                len = 5;
            } else if (p[i + 1] == 's' || p[i + 1] == 'S') {
                which = 's';
                negated = p[i + 1] == 'S';
            }
            if (which && !in_class) {
                ok = buf_append(&b, negated ? "[^" : "[", negated ? 2 : 1) && append_class(&b, which) &&
                     buf_append(&b, "]", 1);
            } else if (which && !negated) {
                ok = append_class(&b, which);
            } else {
                ok = buf_append(&b, p + i, len); /* any other escape, or a negated class inside [...] */
            }
            i += len;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            class_start = i;
        } else if (c == ']' && in_class) {
            /* a ']' right after '[' or '[^' is a literal */
            size_t body = class_start + 1 + (p[class_start + 1] == '^');
            if (i > body) in_class = 0;
        }
        ok = buf_append(&b, p + i, 1);
        i++;
    }
    if (!ok) {
        free(b.data);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory rewriting a regex");
    }
    if (!b.data && !buf_append(&b, "", 0)) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    *out = b.data;
    *out_len = b.len;
    return TUNA_OK;
}
