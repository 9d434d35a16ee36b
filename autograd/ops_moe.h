/* ops_moe.h: Mixture-of-Experts routing and grouped expert GEMMs (Gemma 4 26B-A4B's MoE block).
 *
 * gt_moe_route picks each token's k experts from router logits and returns their weights plus a
 * plan (the token -> expert assignment, grouped by expert). gt_moe_up and gt_moe_down then run
 * one GEMM per expert over only the rows routed to it, so the cost follows the active experts;
 * their backwards touch only the chosen experts' weights (the others get no gradient work).
 * Together: y[t] = sum_j w[t,j] down_e(gelu(gate_e x_t) * up_e x_t), e = idx[t,j].
 * Expert weights are stacked per expert in (out, in) layout: gate, up [E*I, D], down [E*D, I].
 * Contract (tape.h): ops return a new step tensor in ctx's arena, or NULL with ctx's sticky error
 * set; the plan lives in the arena too (valid until gt_ctx_reset). */
#ifndef GT_OPS_MOE_H
#define GT_OPS_MOE_H

#include "autograd/tape.h"

typedef struct gt_moe_plan {
    int64_t tokens, k, experts;
    int32_t *idx;     /* [tokens * k]: chosen experts per token, best first (ties: lower index) */
    int64_t *start;   /* [experts + 1]: expert e owns grouped rows start[e] .. start[e+1] */
    int64_t *slot;    /* [tokens * k]: grouped row r holds assignment slot[r] = t * k + j */
    int64_t *row;     /* [tokens * k]: inverse of slot */
} gt_moe_plan;

/* logits [T, E] -> w [T, k]: the softmax of each row renormalised over its k largest entries
 * (KerasHub Gemma4Router: softmax, top_k, divide by max(sum, 1e-9)), times scale[e] when scale
 * ([E], per_expert_scale) is given. *plan receives the assignment. Gradients reach the chosen
 * logits only (the others do not move the renormalised weights) and scale. 1 <= k <= E. */
gt_tensor *gt_moe_route(gt_ctx *ctx, gt_tensor *logits, gt_tensor *scale, int64_t k,
                        const gt_moe_plan **plan);
/* x [T, D] (any shape with T*D values, rows of D) -> h [T*k, I] in grouped row order:
 * h = gelu(x gate_e^T) * (x up_e^T) for each assignment. gate, up [E*I, D]. */
gt_tensor *gt_moe_up(gt_ctx *ctx, gt_tensor *x, gt_tensor *gate, gt_tensor *up, const gt_moe_plan *plan);
/* h [T*k, I] (grouped), down [E*D, I], w [T, k] -> y [T, D] = sum_j w[t,j] (h down_e^T)[t,j]. */
gt_tensor *gt_moe_down(gt_ctx *ctx, gt_tensor *h, gt_tensor *down, gt_tensor *w, const gt_moe_plan *plan);

#endif
