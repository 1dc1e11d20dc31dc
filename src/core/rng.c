#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tuna_rng_seed(tuna_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->state[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tuna_rng_next(tuna_rng *rng) {
    uint64_t *s = rng->state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float tuna_rng_uniform(tuna_rng *rng) {
    return (float)(tuna_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

uint64_t tuna_rng_below(tuna_rng *rng, uint64_t n) {
    if (n == 0) return 0;
    /* rejection sampling removes modulo bias */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = tuna_rng_next(rng); while (x >= limit);
    return x % n;
}

float tuna_rng_normal(tuna_rng *rng) {
    /* Box-Muller: z = sqrt(-2 ln u1) cos(2 pi u2), u1 in (0, 1] */
    double u1 = ((double)(tuna_rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(tuna_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void tuna_rng_fill_normal(tuna_rng *rng, float *out, long n, float mean, float std) {
    for (long i = 0; i < n; i++) out[i] = mean + std * tuna_rng_normal(rng);
}
