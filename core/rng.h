/* A small seeded RNG for the C side (colors, shuffles, splits): xoshiro256** seeded
 * through splitmix64, so a seed gives the same stream on every machine. */
#ifndef FL_RNG_H
#define FL_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } fl_rng;

void fl_rng_seed(fl_rng *r, uint64_t seed);
/* A generator for stream k of seed: independent streams for independent uses. */
void fl_rng_seed_stream(fl_rng *r, uint64_t seed, uint64_t stream);
uint64_t fl_rng_u64(fl_rng *r);
double fl_rng_uniform(fl_rng *r);              /* [0, 1), 53 bits */
double fl_rng_normal(fl_rng *r);               /* N(0, 1), Marsaglia polar */
uint64_t fl_rng_below(fl_rng *r, uint64_t n);  /* uniform in [0, n), unbiased */
void fl_rng_shuffle(fl_rng *r, int64_t *a, int64_t n);  /* Fisher–Yates */

#endif
