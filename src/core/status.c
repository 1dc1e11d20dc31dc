#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void format_message(tuna_error *err, const char *fmt, va_list ap) {
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

tuna_status tuna_fail(tuna_error *err, tuna_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        format_message(err, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

tuna_status tuna_fail_context(tuna_error *err, tuna_status code, const char *fmt, ...) {
    if (err) {
        char previous[sizeof err->message];
        memcpy(previous, err->message, sizeof previous);
        char prefix[sizeof err->message];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        /* prefix + ": " + previous, cut to the message size (long chains lose their tail) */
        size_t used = strnlen(prefix, sizeof err->message - 1);
        memcpy(err->message, prefix, used);
        const char *rest[2] = {": ", previous};
        for (int i = 0; i < 2; i++) {
            size_t n = strnlen(rest[i], sizeof err->message - 1 - used);
            memcpy(err->message + used, rest[i], n);
            used += n;
        }
        err->message[used] = '\0';
        err->code = code;
    }
    return code;
}

const char *tuna_status_name(tuna_status s) {
    switch (s) {
    case TUNA_OK: return "ok";
    case TUNA_ERR_IO: return "i/o error";
    case TUNA_ERR_FORMAT: return "bad file format";
    case TUNA_ERR_NOMEM: return "out of memory";
    case TUNA_ERR_INVALID: return "invalid argument";
    case TUNA_ERR_UNSUPPORTED: return "unsupported";
    case TUNA_ERR_LIMIT: return "size limit exceeded";
    case TUNA_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

int tuna_mul_overflows(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

int tuna_add_overflows(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out);
}
