#include "autograd/ops_elem.h"

#include <string.h>
#include <tgmath.h>

#include "autograd/blas.h"
#include "autograd/ops_bf16.h"
#include "autograd/rng.h"
#include "autograd/rowmath.h"

/* Column block of the broadcast-gradient reduction; its accumulator lives on the stack. */
#define RED_BLOCK 256
/* Widest b reduced with per-thread partial rows (nt * inner doubles of scratch). */
#define RED_PARTIAL_MAX 4096

/* ---------------------------------------------------------------- add / mul */

/* b fits a when its shape equals a's trailing axes; then a is [outer, inner], inner = b->size. */
static bool bcast_fits(const gt_tensor *a, const gt_tensor *b) {
    if (b->ndim > a->ndim) return false;
    for (int i = 1; i <= b->ndim; i++)
        if (a->shape[a->ndim - i] != b->shape[b->ndim - i]) return false;
    return true;
}

static void bcast_dims(const gt_tensor *a, const gt_tensor *b, int64_t *outer, int64_t *inner) {
    *inner = b->size;
    *outer = b->size ? a->size / b->size : 0;
}

/* db[j] += sum_o dy[o,j] * (a ? a[o,j] : 1), summed in double so long reductions stay exact to
 * gt_real. Results depend only on the thread count, not on scheduling. */
static void reduce_rows(gt_ctx *ctx, const gt_real *dy, const gt_real *a, int64_t outer,
                        int64_t inner, gt_real *db) {
    bool p = gt_par(outer * inner);
    int nt = p ? gt_threads() : 1;
    if (p && inner <= RED_PARTIAL_MAX && outer >= nt) {
        /* Narrow b: each thread sums a contiguous band of rows into its own partial row. */
        double *part = gt_alloc(ctx, (size_t)nt * (size_t)inner * sizeof(double));
        if (!part) return;
        memset(part, 0, (size_t)nt * (size_t)inner * sizeof(double));
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int c = 0; c < nt; c++) {
            double *acc = part + (int64_t)c * inner;
            for (int64_t o = outer * c / nt; o < outer * (c + 1) / nt; o++) {
                const gt_real *g = dy + o * inner;
                if (a) {
                    const gt_real *ar = a + o * inner;
                    for (int64_t j = 0; j < inner; j++) acc[j] += (double)g[j] * (double)ar[j];
                } else {
                    for (int64_t j = 0; j < inner; j++) acc[j] += (double)g[j];
                }
            }
        }
        for (int64_t j = 0; j < inner; j++) {
            double s = 0;
            for (int c = 0; c < nt; c++) s += part[(int64_t)c * inner + j];
            db[j] += (gt_real)s;
        }
        return;
    }
    /* Wide b (or one thread): threads own column blocks and walk every row. */
    int64_t nblk = (inner + RED_BLOCK - 1) / RED_BLOCK;
#pragma omp parallel for schedule(static) if (p)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t j0 = blk * RED_BLOCK, w = inner - j0 < RED_BLOCK ? inner - j0 : RED_BLOCK;
        double acc[RED_BLOCK] = {0};
        for (int64_t o = 0; o < outer; o++) {
            const gt_real *g = dy + o * inner + j0;
            if (a) {
                const gt_real *ar = a + o * inner + j0;
                for (int64_t j = 0; j < w; j++) acc[j] += (double)g[j] * (double)ar[j];
            } else {
                for (int64_t j = 0; j < w; j++) acc[j] += (double)g[j];
            }
        }
        for (int64_t j = 0; j < w; j++) db[j0 + j] += (gt_real)acc[j];
    }
}

static void add_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *a = node->in[0], *b = node->in[1];
    const gt_real *dy = gt_grad(ctx, node->out);
    bool fresh = false; /* da stored, not added (gt_grad_w); db's is taken after da is written */
    gt_real *da = gt_needs_grad(a) ? gt_grad_w(ctx, a, &fresh) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t n = a->size, outer, inner;
    bcast_dims(a, b, &outer, &inner);
    /* Separate loops: a and b may be the same tensor, so da and db may alias. The copy is split
     * between the threads too: one thread's memcpy of the residual stream's gradient was 1.4% of
     * a bf16 LoRA step with the other thread waiting. */
    if (da) {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t i = 0; i < n; i++) da[i] = fresh ? dy[i] : da[i] + dy[i];
    }
    bool bfresh = false; /* db stored when it is b's first gradient and b shares no storage with a */
    const gt_tensor *ra = a->root ? a->root : a, *rb = b->root ? b->root : b;
    gt_real *db = !gt_needs_grad(b) ? NULL : inner == n && ra != rb ? gt_grad_w(ctx, b, &bfresh) : gt_grad(ctx, b);
    if (!gt_ok(ctx)) return;
    if (db) {
        if (inner == n) {
#pragma omp parallel for schedule(static) if (gt_par(n))
            for (int64_t i = 0; i < n; i++) db[i] = bfresh ? dy[i] : db[i] + dy[i];
        } else {
            reduce_rows(ctx, dy, NULL, outer, inner, db);
        }
    }
}

static void mul_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *a = node->in[0], *b = node->in[1];
    const gt_real *dy = gt_grad(ctx, node->out);
    gt_real *da = gt_needs_grad(a) ? gt_grad(ctx, a) : NULL;
    gt_real *db = gt_needs_grad(b) ? gt_grad(ctx, b) : NULL;
    if (!gt_ok(ctx)) return;
    /* reads: mul_reads */
    const gt_real *A = db ? gt_saved_data(ctx, node, 0) : NULL;
    const gt_real *B = da ? gt_saved_data(ctx, node, 1) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t n = a->size, outer, inner;
    bcast_dims(a, b, &outer, &inner);
    if (da) {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t o = 0; o < outer; o++) {
            gt_real *d = da + o * inner;
            const gt_real *g = dy + o * inner;
            for (int64_t j = 0; j < inner; j++) d[j] += g[j] * B[j];
        }
    }
    if (db) {
        if (inner == n) {
#pragma omp parallel for schedule(static) if (gt_par(n))
            for (int64_t i = 0; i < n; i++) db[i] += dy[i] * A[i];
        } else {
            reduce_rows(ctx, dy, A, outer, inner, db);
        }
    }
}

/* What mul's backward reads: b for a's gradient, a for b's. add's reads nothing. */
static unsigned mul_reads(const gt_tensor *a, const gt_tensor *b) {
    return (gt_needs_grad(a) ? GT_READ_IN(1) : 0) | (gt_needs_grad(b) ? GT_READ_IN(0) : 0);
}

static gt_tensor *binary(gt_ctx *ctx, gt_tensor *a, gt_tensor *b, bool is_mul) {
    const char *op = is_mul ? "mul" : "add";
    if (!gt_ok(ctx)) return NULL;
    if (!a || !b)
        return gt_fail(ctx, GT_ERR_ARG, "%s: NULL input (%s, %s)", op, gt_shp(a), gt_shp(b));
    if (!bcast_fits(a, b))
        return gt_fail(ctx, GT_ERR_SHAPE, "%s: shapes %s and %s do not fit (b must equal a's shape "
                       "or its trailing axes)", op, gt_shp(a), gt_shp(b));
    gt_tensor *in[2] = {a, b};
    gt_tensor *out = gt_op_out(ctx, a->ndim, a->shape, in, 2);
    if (!out) return NULL;
    int64_t n = a->size, outer, inner;
    bcast_dims(a, b, &outer, &inner);
    const gt_real *A = a->data, *B = b->data;
    gt_real *Y = out->data;
    if (inner == n) {
        if (is_mul) {
#pragma omp parallel for schedule(static) if (gt_par(n))
            for (int64_t i = 0; i < n; i++) Y[i] = A[i] * B[i];
        } else {
#pragma omp parallel for schedule(static) if (gt_par(n))
            for (int64_t i = 0; i < n; i++) Y[i] = A[i] + B[i];
        }
    } else {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t o = 0; o < outer; o++) {
            const gt_real *ar = A + o * inner;
            gt_real *yr = Y + o * inner;
            if (is_mul)
                for (int64_t j = 0; j < inner; j++) yr[j] = ar[j] * B[j];
            else
                for (int64_t j = 0; j < inner; j++) yr[j] = ar[j] + B[j];
        }
    }
    if (!gt_record(ctx, op, is_mul ? mul_backward : add_backward, out, in, 2, NULL,
                   is_mul ? mul_reads(a, b) : 0))
        return NULL;
    return out;
}

gt_tensor *gt_add(gt_ctx *ctx, gt_tensor *a, gt_tensor *b) { return binary(ctx, a, b, false); }
gt_tensor *gt_mul(gt_ctx *ctx, gt_tensor *a, gt_tensor *b) { return binary(ctx, a, b, true); }

/* ---------------------------------------------------------------- scale */

static void scale_backward(gt_ctx *ctx, gt_node *node) {
    gt_real s = *(const gt_real *)node->saved;
    gt_real *dx = gt_grad(ctx, node->in[0]);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    int64_t n = node->out->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) dx[i] += s * dy[i];
}

gt_tensor *gt_scale(gt_ctx *ctx, gt_tensor *x, double s) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "scale: NULL input");
    if (!isfinite(s))
        return gt_fail(ctx, GT_ERR_ARG, "scale: factor %g is not finite (x %s)", s, gt_shp(x));
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, &x, 1);
    if (!out) return NULL;
    gt_real f = (gt_real)s, *Y = out->data;
    const gt_real *X = x->data;
    int64_t n = x->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) Y[i] = X[i] * f;
    if (out->requires_grad) {
        gt_real *saved = gt_alloc(ctx, sizeof *saved);
        if (!saved) return NULL;
        *saved = f;
        if (!gt_record(ctx, "scale", scale_backward, out, &x, 1, saved, 0)) return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- softcap */

static void softcap_backward(gt_ctx *ctx, gt_node *node) {
    gt_real cap = *(const gt_real *)node->saved;
    gt_real *dx = gt_grad(ctx, node->in[0]);
    const gt_real *dy = gt_grad(ctx, node->out), *Y = gt_saved_data(ctx, node, GT_OUT);
    if (!gt_ok(ctx)) return;
    int64_t n = node->out->size;
    /* d/dx cap tanh(x/cap) = 1 - tanh^2, and tanh = y / cap is already in the output. */
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) {
        gt_real t = Y[i] / cap;
        dx[i] += dy[i] * (1 - t * t);
    }
}

gt_tensor *gt_softcap(gt_ctx *ctx, gt_tensor *x, double cap) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "softcap: NULL input");
    if (!(cap > 0) || !isfinite(cap))
        return gt_fail(ctx, GT_ERR_ARG, "softcap: cap must be positive and finite, got %g (x %s)",
                       cap, gt_shp(x));
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, &x, 1);
    if (!out) return NULL;
    gt_real c = (gt_real)cap, *Y = out->data;
    const gt_real *X = x->data;
    int64_t n = x->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) Y[i] = c * tanh(X[i] / c);
    if (out->requires_grad) {
        gt_real *saved = gt_alloc(ctx, sizeof *saved);
        if (!saved) return NULL;
        *saved = c;
        /* backward reads the output (tanh is in it), not x */
        if (!gt_record(ctx, "softcap", softcap_backward, out, &x, 1, saved, GT_READ_OUT)) return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- gelu / geglu */

static inline gt_real gelu_val(gt_real x) { return x * gt_gelu_sig(x); }

static void gelu_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *x = node->in[0];
    gt_real *dx = gt_grad(ctx, x);
    const gt_real *dy = gt_grad(ctx, node->out), *X = gt_saved_data(ctx, node, 0);
    if (!gt_ok(ctx)) return;
    int64_t n = x->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * gt_gelu_der(X[i], gt_gelu_sig(X[i]));
}

gt_tensor *gt_gelu(gt_ctx *ctx, gt_tensor *x) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "gelu: NULL input");
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, &x, 1);
    if (!out) return NULL;
    const gt_real *X = x->data;
    gt_real *Y = out->data;
    int64_t n = x->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) Y[i] = gelu_val(X[i]);
    if (!gt_record(ctx, "gelu", gelu_backward, out, &x, 1, NULL, GT_READ_IN(0))) return NULL; /* x */
    return out;
}

/* True when the gradients of a and b (equal sizes) overlap: one root, intersecting ranges. */
static bool grads_overlap(const gt_tensor *a, const gt_tensor *b) {
    const gt_tensor *ra = a->root ? a->root : a, *rb = b->root ? b->root : b;
    int64_t oa = a->root ? a->offset : 0, ob = b->root ? b->offset : 0;
    return ra == rb && oa < ob + b->size && ob < oa + a->size;
}

/* Both geglu gradients in one pass over separate buffers, stored (store) or added. restrict:
 * without it the loop with two stores was not vectorised and cost twice the two loops. The
 * if clause names parallel: a bare if() also turns the simd off when the loop runs on one
 * thread (OpenMP 5), which left it scalar at GT_THREADS=1 and in one-thread MPI ranks. */
static void geglu_grads(int64_t n, const gt_real *restrict dy, const gt_real *restrict G,
                        const gt_real *restrict U, gt_real *restrict dg, gt_real *restrict du, bool store) {
    if (store) {
#pragma omp parallel for simd schedule(static) if (parallel : gt_par(n))
        for (int64_t i = 0; i < n; i++) {
            gt_real g = G[i], s = gt_gelu_sig(g);
            dg[i] = dy[i] * U[i] * gt_gelu_der(g, s);
            du[i] = dy[i] * (g * s);
        }
    } else {
#pragma omp parallel for simd schedule(static) if (parallel : gt_par(n))
        for (int64_t i = 0; i < n; i++) {
            gt_real g = G[i], s = gt_gelu_sig(g);
            dg[i] += dy[i] * U[i] * gt_gelu_der(g, s);
            du[i] += dy[i] * (g * s);
        }
    }
}

/* geglu's backward on the values of gate (G) and up (U; NULL when gate needs no gradient). */
static void geglu_backward_on(gt_ctx *ctx, gt_node *node, const gt_real *G, const gt_real *U) {
    gt_tensor *gate = node->in[0], *up = node->in[1];
    const gt_real *dy = gt_grad(ctx, node->out);
    bool fg = false, fu = false; /* stored, not added (gt_grad_w) */
    gt_real *dg = gt_needs_grad(gate) ? gt_grad_w(ctx, gate, &fg) : NULL;
    bool apart = !dg || !grads_overlap(gate, up);
    gt_real *du = gt_needs_grad(up) && apart ? gt_grad_w(ctx, up, &fu) : NULL;
    if (!gt_ok(ctx)) return;
    int64_t n = gate->size;
    if (dg && du) { /* apart: one pass, one gelu per element */
        if (fg != fu) memset(fg ? dg : du, 0, (size_t)n * sizeof(gt_real)); /* rare: add to both */
        geglu_grads(n, dy, G, U, dg, du, fg && fu);
        return;
    }
    /* at most one gradient, or gate and up share theirs: dg first, du after, never both in one
     * statement */
    if (dg && fg) memset(dg, 0, (size_t)n * sizeof(gt_real)); /* rare: one add loop */
    if (dg) {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t i = 0; i < n; i++) dg[i] += dy[i] * U[i] * gt_gelu_der(G[i], gt_gelu_sig(G[i]));
    }
    if (!du && gt_needs_grad(up) && !(du = gt_grad(ctx, up))) return;
    if (du && fu) memset(du, 0, (size_t)n * sizeof(gt_real));
    if (du) {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t i = 0; i < n; i++) du[i] += dy[i] * gelu_val(G[i]);
    }
}

static void geglu_backward(gt_ctx *ctx, gt_node *node) {
    /* reads: geglu_reads */
    const gt_real *G = gt_saved_data(ctx, node, 0);
    const gt_real *U = gt_needs_grad(node->in[0]) ? gt_saved_data(ctx, node, 1) : NULL;
    if (gt_ok(ctx)) geglu_backward_on(ctx, node, G, U);
}

/* gt_geglu_bf16's saved inputs: gate and up rounded to bf16 (up only when gate needs a gradient) */
typedef struct {
    uint16_t *g, *u;
    int64_t n;
} geglu16_saved;

/* Both gradients of elements [0, n) from bf16 gate and up values, stored or added, on the calling
 * thread: the values are widened a cache-sized piece at a time, never as whole fp32 tensors. */
static void geglu16_grads_range(int64_t n, const gt_real *restrict dy, const uint16_t *g16, const uint16_t *u16,
                                gt_real *restrict dg, gt_real *restrict du, bool store) {
    enum { PIECE = 1024 };
    gt_real G[PIECE], U[PIECE];
    for (int64_t p0 = 0; p0 < n; p0 += PIECE) {
        int64_t m = n - p0 < PIECE ? n - p0 : PIECE;
        for (int64_t i = 0; i < m; i++) G[i] = (gt_real)gt_bf16_to_f32(g16[p0 + i]);
        for (int64_t i = 0; i < m; i++) U[i] = (gt_real)gt_bf16_to_f32(u16[p0 + i]);
        const gt_real *y = dy + p0;
        gt_real *a = dg + p0, *b = du + p0;
        if (store) {
#pragma omp simd
            for (int64_t i = 0; i < m; i++) {
                gt_real g = G[i], s = gt_gelu_sig(g);
                a[i] = y[i] * U[i] * gt_gelu_der(g, s);
                b[i] = y[i] * (g * s);
            }
        } else {
#pragma omp simd
            for (int64_t i = 0; i < m; i++) {
                gt_real g = G[i], s = gt_gelu_sig(g);
                a[i] += y[i] * U[i] * gt_gelu_der(g, s);
                b[i] += y[i] * (g * s);
            }
        }
    }
}

static void geglu16_backward(gt_ctx *ctx, gt_node *node) {
    geglu16_saved *sv = node->saved;
    gt_tensor *gate = node->in[0], *up = node->in[1];
    int64_t n = sv->n;
    if (gt_needs_grad(gate) && gt_needs_grad(up) && !grads_overlap(gate, up)) { /* the usual case */
        const gt_real *dy = gt_grad(ctx, node->out);
        bool fg = false, fu = false;
        gt_real *dg = gt_grad_w(ctx, gate, &fg), *du = gt_grad_w(ctx, up, &fu);
        if (!gt_ok(ctx)) return;
        if (fg != fu) memset(fg ? dg : du, 0, (size_t)n * sizeof(gt_real)); /* rare: add to both */
        int64_t bands = gt_par(n) ? gt_threads() : 1;
#pragma omp parallel for schedule(static) if (bands > 1)
        for (int64_t t = 0; t < bands; t++) {
            int64_t i0 = n * t / bands, i1 = n * (t + 1) / bands;
            geglu16_grads_range(i1 - i0, dy + i0, sv->g + i0, sv->u + i0, dg + i0, du + i0, fg && fu);
        }
    } else { /* one gradient, or gate and up share theirs: widen whole, then geglu's own backward */
        size_t bytes = (size_t)n * sizeof(gt_real);
        gt_real *G = gt_alloc(ctx, bytes), *U = sv->u ? gt_alloc(ctx, bytes) : NULL;
        if (!gt_ok(ctx)) return;
        gt_bf16_expand(sv->g, G, n);
        if (U) gt_bf16_expand(sv->u, U, n);
        geglu_backward_on(ctx, node, G, U);
        gt_release(ctx, G, bytes);
        if (U) gt_release(ctx, U, bytes);
    }
    gt_release(ctx, sv->g, (size_t)n * 2);
    if (sv->u) gt_release(ctx, sv->u, (size_t)n * 2);
}

/* What geglu's backward reads: gate for either gradient, up only for gate's. */
static unsigned geglu_reads(const gt_tensor *gate, const gt_tensor *up) {
    return GT_READ_IN(0) | (gt_needs_grad(gate) ? GT_READ_IN(1) : 0);
}

/* geglu's forward (both variants): checks the inputs, then y = gelu(gate) * up. With save16
 * and a gradient wanted, *sv gets bf16 copies of gate (and of up where gate needs a gradient),
 * written in the same sweep as y (one read of gate and up instead of two). */
static gt_tensor *geglu_forward(gt_ctx *ctx, gt_tensor *gate, gt_tensor *up, bool save16, geglu16_saved **sv) {
    if (!gt_ok(ctx)) return NULL;
    if (!gate || !up)
        return gt_fail(ctx, GT_ERR_ARG, "geglu: NULL input (gate %s, up %s)", gt_shp(gate), gt_shp(up));
    if (!gt_shape_eq(gate, up))
        return gt_fail(ctx, GT_ERR_SHAPE, "geglu: gate %s and up %s must have equal shapes",
                       gt_shp(gate), gt_shp(up));
    gt_tensor *in[2] = {gate, up};
    gt_tensor *out = gt_op_out(ctx, gate->ndim, gate->shape, in, 2);
    if (!out) return NULL;
    const gt_real *G = gate->data, *U = up->data;
    gt_real *Y = out->data;
    int64_t n = gate->size;
    uint16_t *g16 = NULL, *u16 = NULL;
    if (save16 && out->requires_grad) {
        geglu16_saved *s = gt_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        s->n = n;
        s->g = g16 = gt_alloc(ctx, (size_t)n * 2);
        s->u = u16 = gt_needs_grad(gate) ? gt_alloc(ctx, (size_t)n * 2) : NULL;
        if (!gt_ok(ctx)) return NULL;
        *sv = s;
    }
    /* three loops, not one with tests inside: that one ran GeGLU's forward 6% slower (270M bf16
     * step, 3 alternated pairs: 18.6-19.0 against 17.5-17.8 ms) */
    if (!g16) {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t i = 0; i < n; i++) Y[i] = gelu_val(G[i]) * U[i];
    } else if (!u16) {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t i = 0; i < n; i++) {
            Y[i] = gelu_val(G[i]) * U[i];
            g16[i] = gt_f32_to_bf16((float)G[i]);
        }
    } else {
#pragma omp parallel for schedule(static) if (gt_par(n))
        for (int64_t i = 0; i < n; i++) {
            Y[i] = gelu_val(G[i]) * U[i];
            g16[i] = gt_f32_to_bf16((float)G[i]);
            u16[i] = gt_f32_to_bf16((float)U[i]);
        }
    }
    return out;
}

gt_tensor *gt_geglu(gt_ctx *ctx, gt_tensor *gate, gt_tensor *up) {
    gt_tensor *out = geglu_forward(ctx, gate, up, false, NULL), *in[2] = {gate, up};
    if (!out || !gt_record(ctx, "geglu", geglu_backward, out, in, 2, NULL, geglu_reads(gate, up))) return NULL;
    return out;
}

gt_tensor *gt_geglu_bf16(gt_ctx *ctx, gt_tensor *gate, gt_tensor *up) {
    geglu16_saved *sv = NULL;
    gt_tensor *out = geglu_forward(ctx, gate, up, true, &sv), *in[2] = {gate, up};
    if (!out || !out->requires_grad) return out;
    if (!gt_record(ctx, "geglu", geglu16_backward, out, in, 2, sv, 0)) return NULL; /* reads its copies */
    return out;
}

/* ---------------------------------------------------------------- softmax */

static void softmax_backward(gt_ctx *ctx, gt_node *node) {
    gt_tensor *x = node->in[0];
    gt_real *dx = gt_grad(ctx, x);
    const gt_real *dy = gt_grad(ctx, node->out), *Y = gt_saved_data(ctx, node, GT_OUT);
    if (!gt_ok(ctx)) return;
    int64_t rows = gt_rows(x), d = gt_cols(x);
    /* dx = y * (dy - <dy, y>) per row. */
#pragma omp parallel for schedule(static) if (gt_par(x->size))
    for (int64_t r = 0; r < rows; r++) {
        const gt_real *y = Y + r * d, *g = dy + r * d;
        gt_real *o = dx + r * d;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < d; j++) acc += (double)(g[j] * y[j]);
        gt_real dot = (gt_real)acc;
        for (int64_t j = 0; j < d; j++) o[j] += y[j] * (g[j] - dot);
    }
}

gt_tensor *gt_softmax(gt_ctx *ctx, gt_tensor *x) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "softmax: NULL input");
    if (x->ndim < 1)
        return gt_fail(ctx, GT_ERR_SHAPE, "softmax: needs at least one axis, got %s", gt_shp(x));
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, &x, 1);
    if (!out) return NULL;
    int64_t rows = gt_rows(x), d = gt_cols(x);
    const gt_real *X = x->data;
    gt_real *Y = out->data;
#pragma omp parallel for schedule(static) if (gt_par(x->size))
    for (int64_t r = 0; r < rows; r++) {
        const gt_real *xr = X + r * d;
        gt_real *yr = Y + r * d;
        gt_real m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < d; j++) m = xr[j] > m ? xr[j] : m;
        if (m == -INFINITY) { /* every logit masked: no distribution, give zeros */
            memset(yr, 0, (size_t)d * sizeof(gt_real));
            continue;
        }
        double sum = 0; /* rows can be a whole vocabulary wide */
        for (int64_t j = 0; j < d; j++) {
            yr[j] = exp(xr[j] - m);
            sum += (double)yr[j];
        }
        gt_real inv = (gt_real)(1 / sum);
        for (int64_t j = 0; j < d; j++) yr[j] *= inv;
    }
    if (!gt_record(ctx, "softmax", softmax_backward, out, &x, 1, NULL, GT_READ_OUT)) return NULL; /* y */
    return out;
}

/* ---------------------------------------------------------------- dropout */

typedef struct {
    double p;
    uint64_t seed;
    int64_t offset, row_len, row_stride; /* element i draws offset + (i / row_len) * row_stride + i % row_len */
} dropout_saved;

static inline bool dropout_keep(uint64_t seed, int64_t i, double p) {
    uint64_t s = seed ^ ((uint64_t)i * 0xD1B54A32D192ED03ull);
    return gt_rng_uniform(&s) >= p;
}

static inline int64_t dropout_pos(const dropout_saved *s, int64_t i) {
    return s->offset + i / s->row_len * s->row_stride + i % s->row_len;
}

static void dropout_backward(gt_ctx *ctx, gt_node *node) {
    const dropout_saved *s = node->saved;
    gt_real *dx = gt_grad(ctx, node->in[0]);
    const gt_real *dy = gt_grad(ctx, node->out);
    if (!gt_ok(ctx)) return;
    gt_real scale = (gt_real)(1.0 / (1.0 - s->p));
    int64_t n = node->out->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++)
        if (dropout_keep(s->seed, dropout_pos(s, i), s->p)) dx[i] += dy[i] * scale;
}

gt_tensor *gt_dropout(gt_ctx *ctx, gt_tensor *x, double p, uint64_t seed) {
    return gt_dropout_at(ctx, x, p, seed, 0);
}

gt_tensor *gt_dropout_at(gt_ctx *ctx, gt_tensor *x, double p, uint64_t seed, int64_t offset) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "dropout: NULL input");
    return gt_dropout_rows(ctx, x, p, seed, offset, x->size > 0 ? x->size : 1, x->size > 0 ? x->size : 1);
}

gt_tensor *gt_dropout_rows(gt_ctx *ctx, gt_tensor *x, double p, uint64_t seed, int64_t offset,
                           int64_t row_len, int64_t row_stride) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "dropout: NULL input");
    if (row_len < 1 || row_stride < row_len)
        return gt_fail(ctx, GT_ERR_ARG, "dropout: rows of %lld values %lld apart for %s", (long long)row_len,
                       (long long)row_stride, gt_shp(x));
    if (!(p >= 0 && p < 1)) return gt_fail(ctx, GT_ERR_ARG, "dropout: rate %g outside [0, 1) for %s", p, gt_shp(x));
    if (p == 0) return x;
    gt_tensor *out = gt_op_out(ctx, x->ndim, x->shape, &x, 1);
    dropout_saved *s = gt_alloc(ctx, sizeof *s);
    if (!out || !s) return NULL;
    *s = (dropout_saved){p, seed, offset, row_len, row_stride};
    gt_real scale = (gt_real)(1.0 / (1.0 - p));
    const gt_real *X = x->data;
    gt_real *Y = out->data;
    int64_t n = x->size;
#pragma omp parallel for schedule(static) if (gt_par(n))
    for (int64_t i = 0; i < n; i++) Y[i] = dropout_keep(seed, dropout_pos(s, i), p) ? X[i] * scale : 0;
    if (!gt_record(ctx, "dropout", dropout_backward, out, &x, 1, s, 0)) return NULL; /* mask from seed */
    return out;
}
