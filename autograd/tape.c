#include "autograd/tape.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/blas.h"
#include "util/clock.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static void unpoison_free_pieces(gt_ctx *ctx);

/* ---- GT_OP_PROFILE=1: wall time per op name (a development aid; one thread records) ---- */
enum { PROF_OPS = 64 };
static struct {
    int on; /* -1: environment not read yet */
    int n;
    const char *op[PROF_OPS];
    double fwd[PROF_OPS], bwd[PROF_OPS];
    long calls[PROF_OPS];
    double mark;
} g_prof = {.on = -1};

static bool prof_on(void) {
    if (g_prof.on < 0) g_prof.on = getenv("GT_OP_PROFILE") && atoi(getenv("GT_OP_PROFILE")) > 0;
    return g_prof.on;
}

static int prof_slot(const char *op) {
    for (int i = 0; i < g_prof.n; i++)
        if (g_prof.op[i] == op || !strcmp(g_prof.op[i], op)) return i;
    if (g_prof.n == PROF_OPS) return PROF_OPS - 1;
    g_prof.op[g_prof.n] = op;
    return g_prof.n++;
}

/* Clears what was gathered; on: 1, 0, or -1 (read the environment at the next use). */
static void prof_reset(int on) {
    memset(&g_prof, 0, sizeof g_prof);
    g_prof.on = on;
}

void gt_op_profile_set(int on) { prof_reset(on < 0 ? -1 : on > 0); }

void gt_op_profile_mark(void) {
    if (prof_on()) g_prof.mark = gt_now();
}

void gt_op_profile_report(FILE *f, double scale) {
    if (!prof_on()) return;
    if (scale == 0) { /* clear only */
        prof_reset(1);
        return;
    }
    double tf = 0, tb = 0;
    for (int i = 0; i < g_prof.n; i++) tf += g_prof.fwd[i], tb += g_prof.bwd[i];
    fprintf(f, "op profile (ms%s; forward: time since the previous recorded op): forward %.1f, backward %.1f\n",
            scale != 1 ? " per step" : "", tf * 1e3 * scale, tb * 1e3 * scale);
    for (int i = 0; i < g_prof.n; i++)
        fprintf(f, "  %-16s calls %6ld  forward %8.1f  backward %8.1f\n", g_prof.op[i], g_prof.calls[i],
                g_prof.fwd[i] * 1e3 * scale, g_prof.bwd[i] * 1e3 * scale);
    prof_reset(1);
}

void gt_ctx_init(gt_ctx *ctx, size_t arena_block_bytes) {
    memset(ctx, 0, sizeof *ctx);
    gt_arena_init(&ctx->arena, arena_block_bytes);
    ctx->grad_enabled = true;
}

void gt_ctx_free(gt_ctx *ctx) {
    unpoison_free_pieces(ctx);
    gt_arena_free(&ctx->arena);
    memset(ctx, 0, sizeof *ctx);
}

void gt_ctx_reset(gt_ctx *ctx) {
    unpoison_free_pieces(ctx); /* the arena hands that memory out again */
    gt_arena_reset(&ctx->arena);
    ctx->free_grads = NULL;
    ctx->live = NULL;
    ctx->tape = NULL;
    ctx->n_nodes = 0;
    ctx->status = GT_OK;
    ctx->err[0] = 0;
}

void *gt_fail(gt_ctx *ctx, int status, const char *fmt, ...) {
    if (ctx->status != GT_OK) return NULL;
    ctx->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return NULL;
}

void *gt_alloc(gt_ctx *ctx, size_t bytes) {
    void *p = gt_arena_alloc(&ctx->arena, bytes);
    if (!p) gt_fail(ctx, GT_ERR_NOMEM, "out of memory allocating %zu bytes (arena holds %zu)",
                    bytes, ctx->arena.capacity);
    return p;
}

const char *gt_shp(const gt_tensor *t) {
    static _Thread_local char bufs[4][96];
    static _Thread_local int slot;
    char *b = bufs[slot++ & 3];
    if (!t) return "(null)";
    return gt_shape_str(t, b, sizeof bufs[0]);
}

static void *take_released(gt_ctx *ctx, size_t bytes);

static gt_tensor *step_tensor(gt_ctx *ctx, int ndim, const int64_t *shape, bool zero) {
    int64_t n = gt_shape_size(ndim, shape);
    if (n < 0) return gt_fail(ctx, GT_ERR_SHAPE, "tensor: invalid shape (ndim %d)", ndim);
    gt_tensor *t = gt_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    size_t bytes = (size_t)n * sizeof(gt_real);
    gt_real *data = take_released(ctx, bytes);
    if (data && zero) memset(data, 0, bytes);
    if (!data) data = zero ? gt_arena_calloc(&ctx->arena, bytes) : gt_arena_alloc(&ctx->arena, bytes);
    if (!data)
        return gt_fail(ctx, GT_ERR_NOMEM, "out of memory allocating %zu bytes for a tensor", bytes);
    gt_tensor_wrap(t, data, NULL, ndim, shape, false);
    t->life = GT_LIFE_LIVE;
    t->next_step = ctx->live;
    ctx->live = t;
    return t;
}

gt_tensor *gt_empty(gt_ctx *ctx, int ndim, const int64_t *shape) {
    if (!gt_ok(ctx)) return NULL;
    return step_tensor(ctx, ndim, shape, false);
}

gt_tensor *gt_zeros(gt_ctx *ctx, int ndim, const int64_t *shape) {
    if (!gt_ok(ctx)) return NULL;
    return step_tensor(ctx, ndim, shape, true);
}

gt_tensor *gt_from_data(gt_ctx *ctx, const gt_real *data, int ndim, const int64_t *shape,
                        bool requires_grad) {
    gt_tensor *t = gt_empty(ctx, ndim, shape);
    if (!t) return NULL;
    memcpy(t->data, data, (size_t)t->size * sizeof(gt_real));
    t->requires_grad = requires_grad;
    return t;
}

static gt_tensor *make_view(gt_ctx *ctx, gt_tensor *x, int64_t offset, int ndim,
                            const int64_t *shape) {
    gt_tensor *v = gt_alloc(ctx, sizeof *v);
    if (!v) return NULL;
    gt_tensor *root = x->root ? x->root : x;
    int64_t base = x->root ? x->offset : 0;
    gt_tensor_wrap(v, root->data + base + offset, NULL, ndim, shape, x->requires_grad);
    v->root = root;
    v->offset = base + offset;
    memcpy(v->name, x->name, sizeof v->name);
    return v;
}

gt_tensor *gt_reshape(gt_ctx *ctx, gt_tensor *x, int ndim, const int64_t *shape) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "reshape: NULL input");
    int64_t n = gt_shape_size(ndim, shape);
    if (n != x->size) {
        gt_tensor tmp;
        if (n < 0 || gt_tensor_wrap(&tmp, NULL, NULL, ndim, shape, false) != 0)
            return gt_fail(ctx, GT_ERR_SHAPE, "reshape: invalid target shape for %s", gt_shp(x));
        return gt_fail(ctx, GT_ERR_SHAPE, "reshape: %s has %lld elements, target %s has %lld",
                       gt_shp(x), (long long)x->size, gt_shp(&tmp), (long long)n);
    }
    return make_view(ctx, x, 0, ndim, shape);
}

gt_tensor *gt_slice_rows(gt_ctx *ctx, gt_tensor *x, int64_t start, int64_t count) {
    if (!gt_ok(ctx)) return NULL;
    if (!x) return gt_fail(ctx, GT_ERR_ARG, "slice_rows: NULL input");
    if (x->ndim < 1 || start < 0 || count < 0 || start + count > x->shape[0])
        return gt_fail(ctx, GT_ERR_SHAPE, "slice_rows: rows [%lld,%lld) out of range for %s",
                       (long long)start, (long long)(start + count), gt_shp(x));
    int64_t shape[GT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = count;
    int64_t row = x->shape[0] ? x->size / x->shape[0] : 0;
    return make_view(ctx, x, start * row, x->ndim, shape);
}

static gt_tensor *root_of(gt_tensor *t) { return t->root ? t->root : t; }

gt_tensor *gt_op_out(gt_ctx *ctx, int ndim, const int64_t *shape, gt_tensor *const *in, int n) {
    if (!gt_ok(ctx)) return NULL;
    for (int i = 0; i < n; i++)
        if (in[i] && root_of(in[i])->life >= GT_LIFE_DONE)
            return gt_fail(ctx, GT_ERR_STATE, "op input %d %s is read after the scope that made it "
                           "ended (%s): name it in that gt_scope_end's keep list", i, gt_shp(in[i]),
                           root_of(in[i])->life == GT_LIFE_RELEASED ? "released" : "kept only for backward");
    gt_tensor *out = gt_empty(ctx, ndim, shape);
    if (!out) return NULL;
    bool req = false;
    for (int i = 0; i < n; i++) req = req || (in[i] && in[i]->requires_grad);
    out->requires_grad = req && ctx->grad_enabled;
    return out;
}

bool gt_record(gt_ctx *ctx, const char *op, gt_backward_fn fn, gt_tensor *out,
               gt_tensor *const *in, int n_in, void *saved, unsigned reads) {
    if (prof_on()) {
        double t = gt_now();
        int i = prof_slot(op);
        if (g_prof.mark > 0) g_prof.fwd[i] += t - g_prof.mark;
        g_prof.calls[i]++;
        g_prof.mark = t;
    }
    if (!out->requires_grad) return true;
    gt_node *node = gt_alloc(ctx, sizeof *node);
    if (!node) return false;
    node->op = op;
    node->backward = fn;
    node->out = out;
    node->n_in = n_in;
    for (int i = 0; i < n_in && i < GT_NODE_MAX_IN; i++) node->in[i] = in[i];
    node->saved = saved;
    node->reads = reads;
    /* each declared read holds its value's storage until this node's backward has run */
    for (int i = -1; i < n_in && i < GT_NODE_MAX_IN; i++) {
        gt_tensor *t = i < 0 ? out : in[i];
        if (t && (reads & (i < 0 ? GT_READ_OUT : GT_READ_IN(i))) && root_of(t)->life != GT_LIFE_NONE)
            root_of(t)->readers++; /* persistent tensors are never released: not counted */
    }
    node->prev = ctx->tape;
    ctx->tape = node;
    ctx->n_nodes++;
    return true;
}

/* Released memory: a list of free pieces sorted by address, each piece's first bytes holding
 * its link. Pieces are whole 64-byte arena units, so any piece can hold a gradient. */
typedef struct free_piece {
    struct free_piece *next;
    size_t bytes;
} free_piece;

#define UNIT ((size_t)64)

static size_t units(size_t bytes) { return (bytes + UNIT - 1) & ~(UNIT - 1); }

void gt_release(gt_ctx *ctx, void *p, size_t bytes) {
    bytes = units(bytes);
    if (!p || bytes < sizeof(free_piece)) return;
    unsigned char *c = p;
    free_piece **at = (free_piece **)&ctx->free_grads, *prev = NULL;
    while (*at && (unsigned char *)*at < c) {
        prev = *at;
        at = &(*at)->next;
    }
    free_piece *next = *at, *f = p;
    f->bytes = bytes;
    f->next = next;
    if (next && c + bytes == (unsigned char *)next) { /* merge with the following piece */
        f->bytes += next->bytes;
        f->next = next->next;
    }
    if (prev && (unsigned char *)prev + prev->bytes == c) { /* and into the preceding one */
        prev->bytes += f->bytes;
        prev->next = f->next;
        f = prev;
    } else {
        *at = f;
    }
    /* sanitizer builds: a read of free memory is reported (only the link stays readable) */
    POISON((unsigned char *)f + sizeof *f, f->bytes - sizeof *f);
}

static void unpoison_free_pieces(gt_ctx *ctx) {
    for (free_piece *f = ctx->free_grads; f; f = f->next) UNPOISON(f, f->bytes);
}

/* Smallest released piece that holds bytes (the rest stays free), or NULL. */
static void *take_released(gt_ctx *ctx, size_t bytes) {
    bytes = units(bytes);
    free_piece **best = NULL;
    for (free_piece **at = (free_piece **)&ctx->free_grads; *at; at = &(*at)->next)
        if ((*at)->bytes >= bytes && (!best || (*at)->bytes < (*best)->bytes)) best = at;
    if (!best) return NULL;
    free_piece *f = *best;
    UNPOISON(f, bytes);
    if (f->bytes - bytes >= UNIT) {
        free_piece *rest = (free_piece *)((unsigned char *)f + bytes);
        UNPOISON(rest, sizeof *rest);
        rest->bytes = f->bytes - bytes;
        rest->next = f->next;
        *best = rest;
    } else {
        *best = f->next;
    }
    return f;
}

/* Zero n bytes at p, split over the threads when large: a serial memset of the step's biggest
 * gradients left the second core idle (4% of the 270M step's CPU time, more of its wall). */
static void zero_bytes(void *p, size_t n) {
    const size_t chunk = (size_t)1 << 18;
    int64_t nc = (int64_t)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (nc > 1 && gt_threads() > 1)
    for (int64_t c = 0; c < nc; c++) {
        size_t off = (size_t)c * chunk, len = n - off < chunk ? n - off : chunk;
        memset((unsigned char *)p + off, 0, len);
    }
}

/* The root's gradient, allocated on first use: zeroed unless the caller overwrites it whole. */
static gt_real *grad_of(gt_ctx *ctx, gt_tensor *t, bool zero, bool *fresh) {
    gt_tensor *root = t->root ? t->root : t;
    *fresh = false;
    if (!root->grad) {
        size_t bytes = (size_t)root->size * sizeof(gt_real);
        root->grad = take_released(ctx, bytes);
        if (!root->grad) root->grad = gt_arena_alloc(&ctx->arena, bytes);
        if (!root->grad) {
            gt_fail(ctx, GT_ERR_NOMEM, "out of memory allocating the gradient of %s",
                    gt_shp(root));
            return NULL;
        }
        if (zero) zero_bytes(root->grad, bytes);
#if defined(__SANITIZE_ADDRESS__)
        /* sanitizer builds: an op that claims a fresh gradient but misses an element reads NaN */
        else for (int64_t i = 0; i < root->size; i++) root->grad[i] = (gt_real)NAN;
#endif
        *fresh = !zero;
    }
    return t->root ? root->grad + t->offset : root->grad;
}

gt_real *gt_grad(gt_ctx *ctx, gt_tensor *t) {
    bool fresh;
    return grad_of(ctx, t, true, &fresh);
}

gt_real *gt_grad_w(gt_ctx *ctx, gt_tensor *t, bool *fresh) {
    gt_tensor *root = t->root ? t->root : t;
    bool whole = root == t || (t->offset == 0 && t->size == root->size);
    return grad_of(ctx, t, !whole, fresh);
}

static void release_data(gt_ctx *ctx, gt_tensor *t) {
    gt_release(ctx, t->data, (size_t)t->size * sizeof(gt_real));
    t->data = NULL;
    t->life = GT_LIFE_RELEASED;
}

gt_scope gt_scope_begin(gt_ctx *ctx) { return (gt_scope){ctx->live}; }

static bool kept(const gt_tensor *t, gt_tensor *const *keep, int n) {
    for (int i = 0; i < n; i++)
        if (keep[i] && root_of(keep[i]) == t) return true;
    return false;
}

gt_tensor *gt_scope_end(gt_ctx *ctx, gt_scope s, gt_tensor *const *keep, int n_keep) {
    gt_tensor **at = &ctx->live;
    while (*at && *at != s.mark) {
        gt_tensor *t = *at;
        if (kept(t, keep, n_keep)) {
            at = &t->next_step;
            continue;
        }
        *at = t->next_step;
        t->next_step = NULL;
        t->life = GT_LIFE_DONE;
        if (t->readers == 0) release_data(ctx, t);
    }
    return n_keep > 0 ? keep[0] : NULL;
}

const gt_real *gt_saved_data(gt_ctx *ctx, const gt_node *node, int i) {
    if (i < GT_OUT || i >= node->n_in || i >= GT_NODE_MAX_IN || (i >= 0 && !node->in[i]))
        return gt_fail(ctx, GT_ERR_ARG, "%s backward: no input %d to read", node->op, i);
    gt_tensor *t = i < 0 ? node->out : node->in[i];
    if (!(node->reads & (i < 0 ? GT_READ_OUT : GT_READ_IN(i))))
        return gt_fail(ctx, GT_ERR_STATE, "%s backward reads its %s %s without declaring it (gt_record's "
                       "reads): the tape may have released it", node->op, i < 0 ? "output" : "input",
                       gt_shp(t));
    if (root_of(t)->life == GT_LIFE_RELEASED)
        return gt_fail(ctx, GT_ERR_STATE, "%s backward reads %s %s, released too early", node->op,
                       i < 0 ? "output" : "input", gt_shp(t));
    return t->data;
}

/* Node n's backward has run (or had nothing to do): its reads no longer hold their values. */
static void drop_reads(gt_ctx *ctx, gt_node *n) {
    for (int i = -1; i < n->n_in && i < GT_NODE_MAX_IN; i++) {
        gt_tensor *t = i < 0 ? n->out : n->in[i];
        if (!t || !(n->reads & (i < 0 ? GT_READ_OUT : GT_READ_IN(i)))) continue;
        gt_tensor *r = root_of(t);
        if (r->life != GT_LIFE_NONE && --r->readers == 0 && r->life == GT_LIFE_DONE) release_data(ctx, r);
    }
}

static int run_tape(gt_ctx *ctx) {
    for (gt_node *n = ctx->tape; n && gt_ok(ctx); n = n->prev) {
        gt_tensor *root = root_of(n->out);
        if (root->grad) { /* else nothing downstream used this output */
            double t0 = prof_on() ? gt_now() : 0;
            n->backward(ctx, n);
            if (t0 > 0) g_prof.bwd[prof_slot(n->op)] += gt_now() - t0;
            /* every consumer of the output ran before its producer: its gradient is dead now */
            gt_release(ctx, root->grad, (size_t)root->size * sizeof(gt_real));
            root->grad = NULL;
        }
        drop_reads(ctx, n);
        if (ctx->on_node) ctx->on_node(ctx->on_node_user, n);
    }
    ctx->tape = NULL;
    return ctx->status;
}

int gt_backward_seed(gt_ctx *ctx, gt_tensor *out, const gt_real *seed) {
    if (!gt_ok(ctx)) return ctx->status;
    if (!out) return gt_fail(ctx, GT_ERR_ARG, "backward: NULL output"), ctx->status;
    if (!out->requires_grad)
        return gt_fail(ctx, GT_ERR_STATE, "backward: %s does not depend on any tensor that "
                       "requires a gradient", gt_shp(out)), ctx->status;
    gt_real *g = gt_grad(ctx, out);
    if (!g) return ctx->status;
    for (int64_t i = 0; i < out->size; i++) g[i] += seed[i];
    return run_tape(ctx);
}

int gt_backward(gt_ctx *ctx, gt_tensor *loss) {
    if (!gt_ok(ctx)) return ctx->status;
    if (loss && loss->size != 1)
        return gt_fail(ctx, GT_ERR_STATE, "backward: loss must have one element, got %s",
                       gt_shp(loss)), ctx->status;
    const gt_real one = 1;
    return gt_backward_seed(ctx, loss, &one);
}
