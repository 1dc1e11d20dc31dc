/* Seeded random numbers. Every random choice in the engine draws from a
 * tuna_rng that the caller seeded, so a run is reproducible from its seed.
 * The generator is xoshiro256** seeded through splitmix64; normals come from
 * the Box-Muller transform. The state is four words, saved in checkpoints. */
#ifndef TUNA_CORE_RNG_H
#define TUNA_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state[4];
} tuna_rng;

void tuna_rng_seed(tuna_rng *rng, uint64_t seed);
uint64_t tuna_rng_next(tuna_rng *rng);
/* Uniform in [0, 1) with 24 random bits (exact in f32). */
float tuna_rng_uniform(tuna_rng *rng);
/* Uniform integer in [0, n). */
uint64_t tuna_rng_below(tuna_rng *rng, uint64_t n);
/* Standard normal N(0, 1). */
float tuna_rng_normal(tuna_rng *rng);
/* Fill out[0..n) with mean + std * N(0, 1). */
void tuna_rng_fill_normal(tuna_rng *rng, float *out, long n, float mean, float std);

#endif
