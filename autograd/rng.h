/* rng.h: the project's one pseudo-random stream, splitmix64 (Steele et al.): a 64-bit state
 * advanced by a constant, so a state saved in a checkpoint resumes the exact sequence. Used for
 * initialisation, LoRA's He-uniform A, data shuffling and sampling.
 * The state is a value the caller holds (no allocation, nothing fails). */
#ifndef GT_RNG_H
#define GT_RNG_H

#include <stdint.h>

static inline uint64_t gt_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 53 random bits */
static inline double gt_rng_uniform(uint64_t *state) {
    return (double)(gt_rng_next(state) >> 11) / 9007199254740992.0;
}

#endif
