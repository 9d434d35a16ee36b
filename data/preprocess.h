/* preprocess.h: examples to training rows with KerasHub's CausalLMPreprocessor semantics.
 *
 * A row of length S comes from a packed sequence of S+1 tokens: token_ids = seq[:S],
 * labels = seq[1:], padding_mask = (token != pad) on seq[:S], sample weights on labels.
 *  - text: [bos] tokens [eos], right-truncated to S+1 (bos/eos kept), right-padded; every real
 *    label has weight 1 (Gemma 1/2 CausalLMPreprocessor).
 *  - prompt/response (Gemma3CausalLMPreprocessor): [bos] prompt response [eos] pad...; when too
 *    long the budget S+1 - #special is shared round-robin (MultiSegmentPacker: a short segment
 *    keeps all of it, two long ones split it, the prompt getting the odd token); label t has
 *    weight 1 iff token t+1 is a response token or the final eos, so the last prompt position
 *    (predicting the first response token) is weighted and the prompt is not.
 *  - template gemma_chat wraps the prompt as <start_of_turn>user\n{prompt}<end_of_turn>\n
 *    <start_of_turn>model\n and the response as {response}<end_of_turn>; turn markers are
 *    inserted as ids, user text is encoded without matching special tokens.
 *  - chat records (messages): every turn in that template (system text prepended to the first
 *    user turn with "\n\n"; role assistant is written model); each model turn's reply and its
 *    <end_of_turn> are response tokens (weighted), everything else, the newline after
 *    <end_of_turn> included, is prompt; right-truncated to S+1.
 *  - template gemma4_chat: the same with Gemma 4's markers <|turn> / <turn|> (prompt
 *    <|turn>user\n{prompt}<turn|>\n<|turn>model\n, response {response}<turn|>); in chat records a
 *    system message is a turn of its own (<|turn>system\n...<turn|>) and turns are joined by "\n"
 *    (none after the last), so a conversation ending in a model turn is, token for token, what
 *    KerasHub's Gemma4CausalLMPreprocessor makes of (the history, the last reply + <turn|>).
 *  - template auto: the chat template of cfg->chat_default (gemma4_chat, else gemma_chat); chat
 *    records under template none use it too (the job sets it from the model's generation).
 * Weights are 0 on padding. Labels where the weight is 0 are still valid ids (pad). Packing
 * (optional) is described with gt_pp_pack_append below.
 * Ownership: every output array is the caller's (S values each); nothing is kept. Errors: -1 and
 * a one-line message (a vocabulary without the chat template's markers, out of memory). */
#ifndef GT_PREPROCESS_H
#define GT_PREPROCESS_H

#include "autograd/real.h"
#include "data/dataset.h"
#include "data/tokenizer.h"

typedef enum { GT_TEMPLATE_NONE, GT_TEMPLATE_GEMMA_CHAT, GT_TEMPLATE_GEMMA4_CHAT, GT_TEMPLATE_AUTO } gt_template;

typedef struct gt_pp_cfg {
    int64_t seq_len;      /* S */
    bool add_bos, add_eos;
    gt_template template_;
    gt_template chat_default; /* GT_TEMPLATE_GEMMA4_CHAT for Gemma 4 models; else gemma_chat */
    /* Gemma 3 with images (Gemma3CausalLMPreprocessor): > 0 turns each "<start_of_image>" of a
     * prompt (or user turn) into "\n\n<start_of_image>" + image_tokens x <img> +
     * "<end_of_image>\n\n", the three markers as their ids, the text around them encoded as
     * text; the placeholders are prompt tokens (weight 0). 0: the marker is plain text. */
    int64_t image_tokens;
    /* Gemma 4 with media (Gemma4CausalLMPreprocessor): image4_tokens > 0 turns each "<|image|>"
     * into <|image> + image4_tokens x <|image|> + <image|>, and the k-th "<|audio|>" of the
     * example (audio_tokens[k], k < n_audio: its clip's count) into <|audio> + audio_tokens[k] x
     * <|audio|> + <audio|>; markers as ids, text between them as text, all prompt (weight 0). */
    int64_t image4_tokens;
    const int64_t *audio_tokens;
    int n_audio;
} gt_pp_cfg;

/* vision[t] = (ids[t] is the <img> placeholder), n values; returns how many (0 when the
 * vocabulary has no <img>). The decoder takes the image embeddings at these positions and
 * gt_vision_span_ends makes their attention spans from this mask. */
int64_t gt_pp_vision_mask(const gt_tokenizer *tok, const int32_t *ids, int64_t n, uint8_t *vision);
/* Appends the ids of prompt text to out with its image markers expanded as above (image_tokens
 * > 0), for generation. 0, or -1 with a message. */
int gt_pp_encode_prompt(const gt_tokenizer *tok, const char *text, int64_t image_tokens, gt_ids *out,
                        char *err, size_t errn);
/* Number of image markers in text, "<start_of_image>" (Gemma 3) and "<|image|>" (Gemma 4): the
 * images a record must bring. */
int gt_pp_count_image_markers(const char *text);

/* Fills one row: ids, labels (int32), mask (uint8), weights (gt_real), S values each. */
int gt_pp_example(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const gt_example *ex,
                  int32_t *ids, int32_t *labels, uint8_t *mask, gt_real *weights, char *err,
                  size_t errn);

/* The packing core on ids: prompt (p ids) and response (r ids) -> seq (S+1) and its response
 * mask (1 on response tokens and the final eos). Exposed for tests. */
int64_t gt_pp_pack_pair(const int32_t *p, int64_t np, const int32_t *r, int64_t nr, int32_t bos,
                        int32_t eos, int32_t pad, const gt_pp_cfg *cfg, int32_t *seq, uint8_t *resp);
/* (returns the number of real tokens placed; the rest of seq is padding) */

/* Packing: several examples in one row of S positions. Example k occupies its n_k - 1 first
 * tokens (its last token is only a label), with positions restarting at 0 and segment id k, so
 * the attention op's segment mask keeps examples apart and RoPE sees each from position 0; a row
 * holds whole examples only (one that does not fit starts the next row), the rest is padding
 * (mask 0, weight 0, segment -1). Caller-owned arrays of S values each. */
typedef struct gt_pp_row {
    int32_t *ids, *labels, *positions, *segments;
    uint8_t *mask;
    gt_real *weights;
    int64_t used;       /* positions filled */
    int32_t n_segments; /* examples placed */
} gt_pp_row;

void gt_pp_row_clear(const gt_pp_cfg *cfg, int32_t pad, gt_pp_row *row);
/* 0: appended; 1: does not fit (row unchanged; start a new row); -1: error. */
int gt_pp_pack_append(const gt_tokenizer *tok, const gt_pp_cfg *cfg, const gt_example *ex,
                      gt_pp_row *row, char *err, size_t errn);

/* seq (S+1) and its response flags -> token ids, labels, padding mask, weights (S each). */
void gt_pp_to_row(const gt_pp_cfg *cfg, int32_t pad, const int32_t *seq, const uint8_t *resp,
                  int32_t *ids, int32_t *labels, uint8_t *mask, gt_real *weights);

#endif
