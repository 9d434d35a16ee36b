/* contrastive.h: KerasHub's ContrastiveSampler (contrastive search) for gt_generate.
 *
 * Each step takes the k most probable next tokens (softmax(logits / temperature), ties: lower
 * id), feeds each to the model, and keeps the one with the highest
 *   (1 - alpha) * p(token) - alpha * max_j cos(h(token), h_j)
 * where h is the final-normalised hidden state (KerasHub's call_with_cache hidden_states) and
 * h_j runs over every earlier position, prompt included (ties: the more probable candidate).
 * Generation ends after a stop token or at max_length. Costs k + 1 one-token decoder passes and
 * one LM head per token.
 * Contract: called by gt_generate with a validated sampler (kind GT_SAMPLER_CONTRASTIVE); the
 * model is read only; errors are -1 with a one-line message. */
#ifndef GT_CONTRASTIVE_H
#define GT_CONTRASTIVE_H

#include "models/generate.h"

int gt_generate_contrastive(const gt_gemma *m, const int32_t *prompt, int64_t n_prompt,
                            const gt_generate_opts *o, int32_t *out, int64_t cap, int64_t *n_out,
                            bool *stopped, void (*on_token)(int32_t id, void *user), void *user,
                            char *err, size_t errn);

#endif
