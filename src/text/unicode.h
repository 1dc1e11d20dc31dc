/* Unicode helpers for the tokenizer (SPEC section 3): UTF-8 repair, NFC pinned
 * to Hugging Face's tables, and the GPT-2 / Qwen2 ByteLevel byte <-> char map.
 * Internal to src/text. */
#ifndef TUNA_TEXT_UNICODE_H
#define TUNA_TEXT_UNICODE_H

#include "core/status.h"

#include <stddef.h>
#include <stdint.h>

/* Decode one code point at s[0..n) of VALID UTF-8; returns its byte length. */
int tuna_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Encode cp (< 0x110000, not a surrogate) into out[4]; returns the length. */
int tuna_utf8_encode(uint32_t cp, unsigned char *out);

/* Length of the well-formed UTF-8 sequence at s[0..n): 1..4, or 0 when s[0..k)
 * is not one. *maximal_subpart gets the number of bytes that a U+FFFD replaces
 * (the "maximal subpart" of Unicode 3.9 / W3C, what Python's and Rust's lossy
 * decoders use) and *incomplete is set when the bytes are a valid prefix cut
 * short by the end of the buffer. */
int tuna_utf8_sequence(const unsigned char *s, size_t n, size_t *maximal_subpart, int *incomplete);

/* 1 when s[0..n) is well-formed UTF-8. */
int tuna_utf8_valid(const unsigned char *s, size_t n);

/* Copy s[0..n) with every ill-formed maximal subpart replaced by U+FFFD (EF BF BD).
 * *out is malloc'd (NUL-terminated), *out_len its length. */
tuna_status tuna_utf8_repair(const unsigned char *s, size_t n, char **out, size_t *out_len, tuna_error *err);

/* NFC of valid UTF-8 s[0..n), as HF's normalizer computes it. Sets *out to NULL
 * when the text is already in NFC by a cheap test (then s is the answer); else
 * *out is malloc'd. HF uses older Unicode tables than utf8proc: code points
 * that HF does not know as combining marks or composable are cut out of the
 * utf8proc runs (see unicode_hf_tables.h). */
tuna_status tuna_nfc(const char *s, size_t n, char **out, size_t *out_len, tuna_error *err);

/* ByteLevel map (GPT-2's bytes_to_unicode): byte b is written as code point
 * tuna_byte_to_cp(b); tuna_cp_to_byte inverts it (-1 for other code points). */
uint32_t tuna_byte_to_cp(unsigned char b);
int tuna_cp_to_byte(uint32_t cp);

/* Rust's char::is_whitespace (the White_Space property) and is_alphanumeric
 * (approximated as general category L* or N*), used for added-token flags. */
int tuna_is_whitespace(uint32_t cp);
int tuna_is_alphanumeric(uint32_t cp);

/* Rewrite a pre-tokenizer regex from tokenizer.json so that PCRE2 sees the
 * character classes as HF's Oniguruma does: \p{L}, \p{N}, \s and \S get the
 * code points on which PCRE2's (older or newer) Unicode tables disagree with
 * HF's added or removed. Everything else in the pattern is passed through as is.
 * *out is malloc'd, or NULL when nothing needed changing. */
tuna_status tuna_regex_pin_classes(const char *pattern, size_t len, char **out, size_t *out_len, tuna_error *err);

#endif
