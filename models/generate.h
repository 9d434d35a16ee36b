/* generate.h: sampling and KV-cached autoregressive generation (KerasHub's generate() semantics).
 *
 * Samplers follow keras_hub.samplers: probabilities are softmax(logits / temperature) in double;
 * greedy = argmax; random = the full distribution; top_k keeps the k most probable tokens;
 * top_p keeps, in descending order (optionally among the top k only), every token whose exclusive
 * cumulative probability is <= p (so the first is always kept). Sampling is reproducible from the
 * seed. beam (BeamSampler): num_beams sequences, each step the num_beams best continuations by
 * summed log-probability over all beams' next tokens (ties: lower beam, then lower id); beams go
 * on after their stop token until every beam has one or max_length is reached, then the best
 * beam is the result, cut after its first stop token (KerasHub's generate output).
 * contrastive (ContrastiveSampler, models/contrastive.h): of the k most probable tokens, the one
 * best in (1 - alpha) p - alpha * (max cosine similarity of its hidden state with earlier ones).
 * Contract: the model is read only; outputs go to caller-owned arrays; errors are -1 with a
 * one-line message (bad sampler spec, empty prompt, no room left by max_length, a failed op). */
#ifndef GT_GENERATE_H
#define GT_GENERATE_H

#include "models/gemma.h"

typedef enum { GT_SAMPLER_GREEDY, GT_SAMPLER_RANDOM, GT_SAMPLER_TOP_K, GT_SAMPLER_TOP_P, GT_SAMPLER_BEAM,
               GT_SAMPLER_CONTRASTIVE } gt_sampler_kind;

typedef struct gt_sampler {
    gt_sampler_kind kind;
    int64_t k;           /* top_k, contrastive: k (KerasHub default 5); top_p: optional pre-filter, 0 = none */
    double p;            /* top_p: p (KerasHub default 0.1) */
    double temperature;  /* 1.0 default */
    int64_t num_beams;   /* beam: KerasHub BeamSampler's num_beams (default 5) */
    double alpha;        /* contrastive: the similarity penalty's weight (KerasHub default 0.6) */
    uint64_t seed;
    uint64_t state;      /* advanced by each draw; set from seed by gt_sampler_init */
} gt_sampler;

/* Parse "greedy", "random", "top_k", "top_p", "beam", "contrastive" with optional
 * ":key=value,..." (k, p, temperature, seed, num_beams, alpha), e.g. "top_k:k=5,temperature=0.8,seed=2"
 * or "contrastive:k=4,alpha=0.5". Unknown names/keys are errors. */
int gt_sampler_parse(const char *spec, gt_sampler *s, char *err, size_t errn);
void gt_sampler_init(gt_sampler *s, gt_sampler_kind kind);
/* Next token id from logits[0..V). scratch: 2*V doubles+indices are allocated per call. */
int32_t gt_sampler_next(gt_sampler *s, const gt_real *logits, int64_t V);

typedef struct gt_generate_opts {
    int64_t max_length;      /* prompt + generated tokens at most (KerasHub's max_length) */
    const int32_t *stop_ids; /* generation ends after producing one of these */
    int n_stop;
    gt_sampler sampler;
    /* Gemma 3 with images: n_soft rows of hidden_dim values (the vision encoder's output) for
     * the prompt's placeholder positions soft_pos (ascending); NULL / 0: text only. */
    const gt_real *soft_tokens;
    const int32_t *soft_pos;
    int64_t n_soft;
    /* Gemma 4 (models/gemma4_mm.h's gt_gemma4_media_rows): per soft row, 1 where its run is
     * bidirectional (images with vision_bidir), 0 where causal (audio); NULL: every run open. */
    const uint8_t *soft_open;
} gt_generate_opts;

/* Generates after prompt[0..n_prompt) into out (capacity cap). *n_out gets the number of new
 * tokens, including a final stop token if one was produced (*stopped = true). on_token, when not
 * NULL, is called for each new token as it is produced (streaming output). */
int gt_generate(const gt_gemma *m, const int32_t *prompt, int64_t n_prompt,
                const gt_generate_opts *opts, int32_t *out, int64_t cap, int64_t *n_out,
                bool *stopped, void (*on_token)(int32_t id, void *user), void *user, char *err,
                size_t errn);

#endif
