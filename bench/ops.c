/* bench/ops: the engine's ops at Gemma 3 270M shapes, against baselines measured in the same run.
 *
 *   build-xxx/bench/ops [--ce-rows N] [--reps N]        (threads: GT_THREADS, default all cores)
 *
 * One decoder layer on 256 tokens (hidden 640, 4 query heads x 256, 1 KV head, MLP 2048):
 *  - the seven projection GEMMs through gt_matmul as the model calls them (x @ W^T, W [out, in]),
 *    forward and backward (both dX and dW), each as GFLOP/s and as a ratio to bare cblas_sgemm
 *    calls of the same shapes and transposes; plus the sgemm rate of a large square product;
 *  - attention (B=1, T=256, N=4, K=1, H=256, causal), RMSNorm (256 x 640), GeGLU (256 x 2048)
 *    and the cross-entropy (rows x 262144 vocabulary), forward and forward+backward, with
 *    GFLOP/s (attention) or GB/s (the others; bytes = each tensor read or written once), and
 *    the read bandwidth of the logits buffer as the loss's baseline.
 * Each timing: 2 warm-up runs, then at least 7 timed runs (more for short ones, up to about
 * 0.3 s), median reported. Jobs that are compared (gt vs sgemm) run interleaved, so both see
 * the same machine load. OpenMP's wait policy is the CLI's (gt_threads_reexec_spin). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "util/clock.h"

/* Gemma 3 270M */
enum { SEQ = 256, HID = 640, NQ = 4, NKV = 1, HD = 256, MLP = 2048 };
static const int64_t VOCAB = 262144;

static int g_min_reps = 7;

static void die(const char *what, const gt_ctx *ctx) {
    fprintf(stderr, "bench/ops: %s failed: %s\n", what, ctx ? ctx->err : "out of memory");
    exit(1);
}

/* OpenMP threads spinning after a parallel region steal the cores OpenBLAS needs for the next
 * GEMM; libgomp reads its policy at load, so set it by re-executing once (as cli/main.c). */

static unsigned g_rng = 12345;
static float urand(void) {
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)(g_rng >> 8) / 16777216.0f;
}

static gt_tensor *param(int ndim, const int64_t *shape, bool req, float scale) {
    gt_tensor *t = gt_tensor_new(ndim, shape, req);
    if (!t) die("allocation", NULL);
    for (int64_t i = 0; i < t->size; i++) t->data[i] = scale * (2 * urand() - 1);
    return t;
}

static float *buffer(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) die("allocation", NULL);
    for (int64_t i = 0; i < n; i++) p[i] = scale * (2 * urand() - 1);
    return p;
}

/* ---------------------------------------------------------------- timing */

typedef struct job {
    void (*setup)(struct job *); /* untimed, before every run (may be NULL) */
    void (*run)(struct job *);
    gt_ctx *ctx;
    void *p;                     /* the job's own state */
    double median;
} job;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Times jobs round-robin (warm-up 2 each), at least g_min_reps rounds and until about 0.3 s or
 * 60 rounds; stores each job's median in seconds. */
static void time_jobs(job *jobs, int nj) {
    enum { MAX_REPS = 60 };
    double t[8][MAX_REPS];
    for (int w = 0; w < 2; w++)
        for (int j = 0; j < nj; j++) {
            if (jobs[j].setup) jobs[j].setup(&jobs[j]);
            jobs[j].run(&jobs[j]);
        }
    int reps = 0;
    double start = gt_now();
    while (reps < MAX_REPS && (reps < g_min_reps || gt_now() - start < 0.3)) {
        for (int j = 0; j < nj; j++) {
            if (jobs[j].setup) jobs[j].setup(&jobs[j]);
            double t0 = gt_now();
            jobs[j].run(&jobs[j]);
            t[j][reps] = gt_now() - t0;
        }
        reps++;
    }
    for (int j = 0; j < nj; j++) {
        qsort(t[j], (size_t)reps, sizeof(double), cmp_double);
        jobs[j].median = reps % 2 ? t[j][reps / 2] : 0.5 * (t[j][reps / 2 - 1] + t[j][reps / 2]);
    }
}

/* ---------------------------------------------------------------- GEMMs */

/* y[M, N] = x[M, K] @ W^T, W [N, K]; backward dX = dY @ W, dW = dY^T @ X (as gt_matmul). */
typedef struct {
    const char *name;
    int m, n, k;
    gt_tensor *x, *w;          /* persistent, with gradients */
    float *c, *dy, *dx, *dw;   /* sgemm operands */
    gt_tensor *out;
} gemm_case;

static void gemm_gt_fwd_setup(job *j) { gt_ctx_reset(j->ctx); }
static void gemm_gt_fwd(job *j) {
    gemm_case *g = j->p;
    g->out = gt_matmul(j->ctx, g->x, g->w, false, true);
    if (!g->out) die("gt_matmul", j->ctx);
}
/* Forward untimed, the output gradient handed in directly, then the matmul node's backward. */
static void gemm_gt_bwd_setup(job *j) {
    gemm_case *g = j->p;
    gt_ctx_reset(j->ctx);
    gemm_gt_fwd(j);
    g->out->grad = g->dy;
}
static void gemm_gt_bwd(job *j) {
    j->ctx->tape->backward(j->ctx, j->ctx->tape);
    if (!gt_ok(j->ctx)) die("matmul backward", j->ctx);
}
/* The baselines run on OpenBLAS's own pool (the engine keeps it at one thread, see blas.h). */
static void gemm_blas_fwd(job *j) {
    gemm_case *g = j->p;
    gt_blas_pool(gt_threads());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->m, g->n, g->k, 1, g->x->data, g->k,
                g->w->data, g->k, 0, g->c, g->n);
    gt_blas_pool(1);
}
static void gemm_blas_bwd(job *j) {
    gemm_case *g = j->p;
    gt_blas_pool(gt_threads());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->k, g->n, 1, g->dy, g->n,
                g->w->data, g->k, 1, g->dx, g->k);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->n, g->k, g->m, 1, g->dy, g->n,
                g->x->data, g->k, 1, g->dw, g->k);
    gt_blas_pool(1);
}

typedef struct {
    int n;
    float *a, *b, *c;
} square_case;
static void square_run(job *j) {
    square_case *s = j->p;
    gt_blas_pool(gt_threads());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->n, s->n, s->n, 1, s->a, s->n, s->b,
                s->n, 0, s->c, s->n);
    gt_blas_pool(1);
}

static void bench_gemms(gt_ctx *ctx) {
    square_case sq = {.n = 2048};
    int64_t nn = (int64_t)sq.n * sq.n;
    sq.a = buffer(nn, 1);
    sq.b = buffer(nn, 1);
    sq.c = buffer(nn, 0);
    job jsq = {.run = square_run, .p = &sq};
    time_jobs(&jsq, 1);
    printf("sgemm peak, %dx%dx%d: %.1f GFLOP/s\n\n", sq.n, sq.n, sq.n,
           2.0 * sq.n * sq.n * sq.n / jsq.median * 1e-9);
    free(sq.a);
    free(sq.b);
    free(sq.c);

    gemm_case cases[] = {
        {.name = "q_proj", .m = SEQ, .n = NQ * HD, .k = HID},
        {.name = "k_proj", .m = SEQ, .n = NKV * HD, .k = HID},
        {.name = "v_proj", .m = SEQ, .n = NKV * HD, .k = HID},
        {.name = "o_proj", .m = SEQ, .n = HID, .k = NQ * HD},
        {.name = "gate_proj", .m = SEQ, .n = MLP, .k = HID},
        {.name = "up_proj", .m = SEQ, .n = MLP, .k = HID},
        {.name = "down_proj", .m = SEQ, .n = HID, .k = MLP},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    printf("GEMMs of one layer, x[%d,K] @ W[N,K]^T    |          forward            |"
           "   backward (dX and dW)\n", SEQ);
    printf("%-10s %5s %5s %5s | %8s %8s %7s | %8s %8s %7s\n", "op", "M", "N", "K", "gt GF/s",
           "blas", "ratio", "gt GF/s", "blas", "ratio");
    double sum_gt[2] = {0, 0}, sum_blas[2] = {0, 0};
    for (int i = 0; i < nc; i++) {
        gemm_case *g = &cases[i];
        int64_t sx[3] = {1, g->m, g->k}, sw[2] = {g->n, g->k};
        g->x = param(3, sx, true, 1);
        g->w = param(2, sw, true, 0.05f);
        g->c = buffer((int64_t)g->m * g->n, 0);
        g->dy = buffer((int64_t)g->m * g->n, 1);
        g->dx = buffer((int64_t)g->m * g->k, 0);
        g->dw = buffer((int64_t)g->n * g->k, 0);
        job fwd[2] = {{gemm_gt_fwd_setup, gemm_gt_fwd, ctx, g, 0}, {NULL, gemm_blas_fwd, ctx, g, 0}};
        job bwd[2] = {{gemm_gt_bwd_setup, gemm_gt_bwd, ctx, g, 0}, {NULL, gemm_blas_bwd, ctx, g, 0}};
        time_jobs(fwd, 2);
        time_jobs(bwd, 2);
        gt_ctx_reset(ctx);
        double fl = 2.0 * g->m * g->n * g->k;
        printf("%-10s %5d %5d %5d | %8.1f %8.1f %7.3f | %8.1f %8.1f %7.3f\n", g->name, g->m, g->n,
               g->k, fl / fwd[0].median * 1e-9, fl / fwd[1].median * 1e-9,
               fwd[1].median / fwd[0].median, 2 * fl / bwd[0].median * 1e-9,
               2 * fl / bwd[1].median * 1e-9, bwd[1].median / bwd[0].median);
        sum_gt[0] += fwd[0].median;
        sum_blas[0] += fwd[1].median;
        sum_gt[1] += bwd[0].median;
        sum_blas[1] += bwd[1].median;
        gt_tensor_free(g->x);
        gt_tensor_free(g->w);
        free(g->c);
        free(g->dy);
        free(g->dx);
        free(g->dw);
    }
    printf("%-28s | %8.3f ms %5.3f ms %6.3f | %8.3f ms %5.3f ms %6.3f\n\n", "layer total (time)",
           sum_gt[0] * 1e3, sum_blas[0] * 1e3, sum_blas[0] / sum_gt[0], sum_gt[1] * 1e3,
           sum_blas[1] * 1e3, sum_blas[1] / sum_gt[1]);
}

/* ---------------------------------------------------------------- other ops */

typedef struct op_case op_case;
struct op_case {
    gt_tensor *(*forward)(gt_ctx *ctx, op_case *c);
    gt_tensor *in[3];
    float *seed;        /* output gradient (NULL: scalar loss) */
    int32_t *labels;
    gt_attn_cfg attn;
    gt_tensor *out;
};

static void op_setup(job *j) { gt_ctx_reset(j->ctx); }
static void op_fwd(job *j) {
    op_case *c = j->p;
    c->out = c->forward(j->ctx, c);
    if (!c->out) die("forward", j->ctx);
}
static void op_fwd_bwd(job *j) {
    op_case *c = j->p;
    op_fwd(j);
    int st = c->seed ? gt_backward_seed(j->ctx, c->out, c->seed) : gt_backward(j->ctx, c->out);
    if (st != GT_OK) die("backward", j->ctx);
}

static gt_tensor *f_attention(gt_ctx *ctx, op_case *c) {
    return gt_attention(ctx, c->in[0], c->in[1], c->in[2], &c->attn);
}
static gt_tensor *f_rmsnorm(gt_ctx *ctx, op_case *c) {
    return gt_rmsnorm(ctx, c->in[0], c->in[1], 1e-6, true);
}
static gt_tensor *f_geglu(gt_ctx *ctx, op_case *c) { return gt_geglu(ctx, c->in[0], c->in[1]); }
static gt_tensor *f_ce(gt_ctx *ctx, op_case *c) {
    return gt_cross_entropy(ctx, c->in[0], c->labels, NULL, NULL, NULL);
}

/* Times forward and forward+backward of c; prints one row. work_f / work_fb: FLOPs or bytes. */
static void op_row(gt_ctx *ctx, const char *name, const char *shape, op_case *c, double work_f,
                   double work_fb, const char *unit) {
    /* An op that is not in this build yet (or fails) gets a row saying so, not an exit. */
    gt_ctx_reset(ctx);
    if (!c->forward(ctx, c)) {
        printf("%-14s %-22s | failed: %s\n", name, shape, ctx->err);
        gt_ctx_reset(ctx);
        return;
    }
    job j[2] = {{op_setup, op_fwd, ctx, c, 0}, {op_setup, op_fwd_bwd, ctx, c, 0}};
    time_jobs(j, 2);
    gt_ctx_reset(ctx);
    printf("%-14s %-22s | %9.3f %9.1f %-7s | %9.3f %9.1f %-7s\n", name, shape, j[0].median * 1e3,
           work_f / j[0].median * 1e-9, unit, j[1].median * 1e3, work_fb / j[1].median * 1e-9,
           unit);
}

typedef struct {
    const float *data;
    int64_t n;
    double sink;
} stream_case;
static void stream_read(job *j) {
    stream_case *s = j->p;
    const float *d = s->data; /* locals: through s the loop would not vectorise */
    const int64_t n = s->n;
    double total = 0;
    int nt = gt_threads();
#pragma omp parallel for reduction(+ : total) num_threads(nt) schedule(static)
    for (int64_t b = 0; b < n; b += 4096) {
        float part = 0;
        int64_t e = b + 4096 < n ? b + 4096 : n;
#pragma omp simd reduction(+ : part)
        for (int64_t i = b; i < e; i++) part += d[i];
        total += part;
    }
    s->sink += total;
}

static void bench_ops(gt_ctx *ctx, int64_t ce_rows) {
    printf("%-14s %-22s | %9s %9s %-7s | %9s %9s %-7s\n", "op", "shape", "fwd ms", "rate", "",
           "fwd+bwd ms", "rate", "");

    /* Attention: FLOPs of the visible (causal) score and value products; backward counts 2x. */
    op_case at = {.forward = f_attention};
    int64_t sq[4] = {1, SEQ, NQ, HD}, skv[4] = {1, SEQ, NKV, HD};
    at.in[0] = param(4, sq, true, 1);
    at.in[1] = param(4, skv, true, 1);
    at.in[2] = param(4, skv, true, 1);
    at.seed = buffer(at.in[0]->size, 1);
    at.attn = (gt_attn_cfg){.scale = 1.0 / sqrt((double)HD), .causal = true};
    double pairs = (double)SEQ * (SEQ + 1) / 2;
    double at_fl = 4.0 * NQ * HD * pairs;
    op_row(ctx, "attention", "B1 T256 N4 K1 H256", &at, at_fl, 3 * at_fl, "GFLOP/s");
    for (int i = 0; i < 3; i++) gt_tensor_free(at.in[i]);
    free(at.seed);

    /* RMSNorm: fwd reads x and writes y; bwd reads x and dy and updates dx (read + write). */
    op_case rn = {.forward = f_rmsnorm};
    int64_t sx[2] = {SEQ, HID}, sw[1] = {HID};
    rn.in[0] = param(2, sx, true, 1);
    rn.in[1] = param(1, sw, true, 0.1f);
    rn.seed = buffer(rn.in[0]->size, 1);
    double rn_b = 4.0 * SEQ * HID;
    op_row(ctx, "rmsnorm", "256x640 (1+w)", &rn, 2 * rn_b, 6 * rn_b, "GB/s");
    gt_tensor_free(rn.in[0]);
    gt_tensor_free(rn.in[1]);
    free(rn.seed);

    /* GeGLU: fwd reads gate, up, writes y; bwd reads dy, gate, up, updates dgate and dup. */
    op_case gg = {.forward = f_geglu};
    int64_t sg[2] = {SEQ, MLP};
    gg.in[0] = param(2, sg, true, 2);
    gg.in[1] = param(2, sg, true, 2);
    gg.seed = buffer(gg.in[0]->size, 1);
    double gg_b = 4.0 * SEQ * MLP;
    op_row(ctx, "geglu", "256x2048", &gg, 3 * gg_b, 10 * gg_b, "GB/s");
    gt_tensor_free(gg.in[0]);
    gt_tensor_free(gg.in[1]);
    free(gg.seed);

    /* Cross-entropy: fwd reads the logits; bwd reads them and updates their gradient. Logits
     * spread like an LM head's (a bulk within a few units, labels anywhere). */
    op_case ce = {.forward = f_ce};
    int64_t sz[2] = {ce_rows, VOCAB};
    ce.in[0] = param(2, sz, true, 4);
    ce.labels = malloc((size_t)ce_rows * sizeof *ce.labels);
    if (!ce.labels) die("allocation", NULL);
    for (int64_t i = 0; i < ce_rows; i++) ce.labels[i] = (int32_t)(urand() * (float)(VOCAB - 1));
    double ce_b = 4.0 * (double)ce_rows * (double)VOCAB;
    char shape[32];
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)ce_rows, (long long)VOCAB);
    op_row(ctx, "cross_entropy", shape, &ce, ce_b, 4 * ce_b, "GB/s");
    stream_case st = {ce.in[0]->data, ce.in[0]->size, 0};
    job js = {.run = stream_read, .p = &st};
    time_jobs(&js, 1);
    printf("%-14s %-22s | %9.3f %9.1f %-7s | (baseline: one read of the logits)\n",
           "  memory read", shape, js.median * 1e3, ce_b / js.median * 1e-9, "GB/s");
    gt_tensor_free(ce.in[0]);
    free(ce.labels);
}

int main(int argc, char **argv) {
    gt_threads_reexec_spin(argv);
    int64_t ce_rows = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ce-rows") && i + 1 < argc) {
            ce_rows = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            g_min_reps = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--ce-rows N (default 64)] [--reps N (default 7)]\n"
                            "threads: GT_THREADS (default: all cores)\n", argv[0]);
            return 2;
        }
    }
    if (ce_rows < 1 || g_min_reps < 1 || g_min_reps > 60) {
        fprintf(stderr, "bench/ops: --ce-rows must be >= 1 and --reps in [1, 60]\n");
        return 2;
    }
    gt_threads_set(0);
    const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    printf("bench/ops: Gemma 3 270M shapes, fp32, %d threads (GT_THREADS), OMP_WAIT_POLICY=%s, "
           "GOMP_SPINCOUNT=%s, median of >= %d runs after 2 warm-ups\nOpenBLAS: %s\n", gt_threads(),
           wait ? wait : "(unset)", spin ? spin : "(unset)", g_min_reps, openblas_get_config());
    gt_ctx ctx;
    gt_ctx_init(&ctx, 0);
    bench_gemms(&ctx);
    bench_ops(&ctx, ce_rows);
    gt_ctx_free(&ctx);
    return 0;
}
