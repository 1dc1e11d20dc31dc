/* Error reporting for the whole engine.
 *
 * Every function that can fail returns a tuna_status and, when the caller
 * passes a tuna_error, writes a human-readable message into it. There is no
 * global "last error": the message travels with the call that failed. */
#ifndef TUNA_CORE_STATUS_H
#define TUNA_CORE_STATUS_H

#include "tuna.h"

/* Record an error and return its code, so a failing path reads
 *     return tuna_fail(err, TUNA_ERR_FORMAT, "bad header in %s", path);
 * err may be NULL (the message is then dropped). */
tuna_status tuna_fail(tuna_error *err, tuna_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in err with context ("loading x: " + old). */
tuna_status tuna_fail_context(tuna_error *err, tuna_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Propagate a failing status: TUNA_TRY(f(x, err)); */
#define TUNA_TRY(expr)                          \
    do {                                        \
        tuna_status tuna_try_s_ = (expr);       \
        if (tuna_try_s_ != TUNA_OK) return tuna_try_s_; \
    } while (0)

/* Overflow-checked size arithmetic for untrusted sizes: return 0 on overflow. */
int tuna_mul_overflows(size_t a, size_t b, size_t *out);
int tuna_add_overflows(size_t a, size_t b, size_t *out);

#endif
