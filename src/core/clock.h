/* Wall-clock time for progress, ETAs, budgets and rates. */
#ifndef TUNA_CORE_CLOCK_H
#define TUNA_CORE_CLOCK_H

/* Seconds on the monotonic clock (an arbitrary origin: use differences). */
double tuna_now_seconds(void);

#endif
