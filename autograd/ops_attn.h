/* ops_attn.h: fused causal multi-head attention with grouped-query heads.
 *
 * q: [B, T, N, H], k: [B, S, K, H], v: [B, S, K, Hv], N % K == 0; query head n reads kv head
 * n / (N/K). For each batch b, head n, query i (absolute index qi = q_offset + i among the keys):
 *   s_j = scale * q_i . k_j;  if softcap > 0: s_j = softcap * tanh(s_j / softcap)
 *   key j is visible iff (!causal || j <= qi || j < bidir_end[b,qi])
 *                        && (window == 0 || |qi - j| < window, or qi - j < window if !bidir_end)
 *                        && key_mask[b,j] != 0 && segment_ids[b,j] == segment_ids[b,qi]
 *   p = softmax over visible j (fp32);  out_i = sum_j p_j v_j;  a row with no visible key is 0.
 * Output [B, T, N, Hv]. The probabilities are kept for backward (B*N*T*S values).
 * Contract (tape.h): returns a new step tensor in ctx's arena, or NULL with ctx's sticky error
 * set (message names the op and the shapes); inputs are never modified. */
#ifndef GT_OPS_ATTN_H
#define GT_OPS_ATTN_H

#include "autograd/tape.h"

/* Query rows per block of a causal or sliding-window call: a block computes only the key
 * columns its rows can see (tests use it to span several blocks). 32, not 64: on packed
 * examples of about 32 tokens a 64-row block spans three of them and multiplies about 3x the
 * keys its rows see; 32 ran attention 14-24% faster there (in one process, alternated), 6-7% at
 * 128-token examples, the same on one causal 512-token example; 16 was slower again. */
#define GT_ATTN_QBLOCK 32

typedef struct gt_attn_cfg {
    double scale;                  /* multiplier on q.k, given by the caller (e.g. H^-0.5) */
    double softcap;                /* attention-logit soft-cap; 0 = none */
    int64_t window;                /* sliding window in tokens incl. self; 0 = none */
    bool causal;
    int64_t q_offset;              /* index of query row 0 among the S keys (KV cache) */
    const uint8_t *key_mask;       /* [B, S], 0 = padding key; NULL = all keys real */
    const int32_t *segment_ids;    /* [B, S] packed-example ids; NULL = one segment */
    /* [B, S] or NULL: a query at key index qi also sees the later keys before bidir_end[b, qi]
     * (the end of the contiguous span holding it, e.g. an image's soft tokens, which Gemma 3
     * lets see each other both ways; 0 for text). With a window the span is cut at qi + window
     * (KerasHub's symmetric band). */
    const int32_t *bidir_end;
    /* bf16 arithmetic (model.compute_dtype bfloat16): the four products of the forward and the
     * backward round their operands (q, k, v, P, dO, dS) to bf16 and accumulate in fp32 on the
     * CPU's bf16 kernel (autograd/bf16_gemm.h); softmax and its backward stay fp32. Taken only
     * where that kernel is active and H, Hv are multiples of 32 (never in the f64 build);
     * otherwise the fp32 path runs as if this were false. */
    bool bf16;
} gt_attn_cfg;

gt_tensor *gt_attention(gt_ctx *ctx, gt_tensor *q, gt_tensor *k, gt_tensor *v,
                        const gt_attn_cfg *cfg);

#endif
