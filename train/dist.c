#include "train/dist.h"

#include <mpi.h>
#include <stdint.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"

#ifdef GT_REAL_DOUBLE
#define GT_MPI_REAL MPI_DOUBLE
#else
#define GT_MPI_REAL MPI_FLOAT
#endif

static int env_int(const char *name, int dflt) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

static int mpi_fail(int rc, const char *what, char *err, size_t errn) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    snprintf(err, errn, "MPI %s failed: %.*s", what, len, msg);
    return -1;
}

int gt_dist_init(gt_dist *d, int *argc, char ***argv, char *err, size_t errn) {
    memset(d, 0, sizeof *d);
    d->world = d->local_world = 1;
    if (env_int("OMPI_COMM_WORLD_SIZE", 0) < 1) return 0; /* not started by mpirun */
    int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return snprintf(err, errn, "MPI_Init_thread failed (code %d)", rc), -1;
    d->mpi = true;
    /* errors come back as codes, so they can be reported with context */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    d->local_world = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    if (d->local_world < 1) d->local_world = 1;
    return 0;
}

void gt_dist_finalize(gt_dist *d) {
    free(d->reqs);
    free(d->started);
    d->reqs = NULL;
    d->started = NULL;
    if (d->mpi) MPI_Finalize();
    d->mpi = false;
}

void gt_dist_abort(const gt_dist *d, int code) {
    if (d && d->mpi && d->world > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

int gt_dist_default_threads(const gt_dist *d) {
    cpu_set_t set;
    int cpus = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
    if (cpus < 1) cpus = 1;
    /* bound ranks see their own cores; unbound ones all see every core and share them */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (d && d->local_world > 1 && cpus >= online) cpus /= d->local_world;
    return cpus < 1 ? 1 : cpus;
}

int gt_dist_sum_f64(gt_dist *d, double *v, int n, char *err, size_t errn) {
    if (d->world < 2) return 0;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "allreduce", err, errn);
}

int gt_dist_sum_real(gt_dist *d, gt_real *v, int64_t n, char *err, size_t errn) {
    if (d->world < 2 || n == 0) return 0;
    const int64_t bucket = GT_DIST_BUCKET_BYTES / (int64_t)sizeof(gt_real);
    MPI_Request req[GT_DIST_INFLIGHT];
    int used = 0;
    double t0 = gt_now();
    for (int64_t o = 0; o < n; o += bucket) {
        int len = (int)(n - o < bucket ? n - o : bucket);
        if (used == GT_DIST_INFLIGHT) { /* wait for the oldest slot before reusing it */
            int rc = MPI_Wait(&req[0], MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) return mpi_fail(rc, "allreduce wait", err, errn);
            memmove(req, req + 1, sizeof req[0] * (GT_DIST_INFLIGHT - 1));
            used--;
        }
        int rc = MPI_Iallreduce(MPI_IN_PLACE, v + o, len, GT_MPI_REAL, MPI_SUM, MPI_COMM_WORLD, &req[used]);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "allreduce", err, errn);
        used++;
    }
    int rc = MPI_Waitall(used, req, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "allreduce wait", err, errn);
    d->reduce_s += gt_now() - t0;
    d->reduce_bytes += n * (int64_t)sizeof(gt_real);
    return 0;
}

int gt_dist_bcast_i64(gt_dist *d, int64_t *v, char *err, size_t errn) {
    if (d->world < 2) return 0;
    int rc = MPI_Bcast(v, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "broadcast", err, errn);
}

int gt_dist_check_same(gt_dist *d, uint64_t v, const char *what, char *err, size_t errn) {
    if (d->world < 2) return 0;
    uint64_t mm[2] = {v, ~v}; /* max of v and of ~v: equal everywhere iff min == max */
    int rc = MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "allreduce", err, errn);
    if (mm[0] != ~mm[1]) return snprintf(err, errn, "ranks disagree on %s", what), -1;
    return 0;
}

int gt_dist_barrier(gt_dist *d, char *err, size_t errn) {
    if (d->world < 2) return 0;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "barrier", err, errn);
}

/* Start the in-place sum of [lo, hi) in buckets, without waiting. */
static int start_run(gt_dist *d, gt_real *lo, gt_real *hi) {
    const int64_t bucket = GT_DIST_BUCKET_BYTES / (int64_t)sizeof(gt_real);
    for (gt_real *o = lo; o < hi; o += bucket) {
        int len = (int)(hi - o < bucket ? hi - o : bucket);
        if (d->n_reqs == d->cap_reqs) {
            int cap = d->cap_reqs ? 2 * d->cap_reqs : 64;
            void *grown = realloc(d->reqs, sizeof(MPI_Request) * (size_t)cap);
            if (!grown) return d->run_err = MPI_ERR_NO_MEM;
            d->reqs = grown;
            d->cap_reqs = cap;
        }
        MPI_Request *r = (MPI_Request *)d->reqs + d->n_reqs;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, o, len, GT_MPI_REAL, MPI_SUM, MPI_COMM_WORLD, r);
        if (rc != MPI_SUCCESS) return d->run_err = rc;
        d->n_reqs++;
        d->reduce_bytes += len * (int64_t)sizeof(gt_real);
    }
    return 0;
}

static void flush_run(gt_dist *d) {
    if (d->run_lo && !d->run_err) start_run(d, d->run_lo, d->run_hi);
    d->run_lo = d->run_hi = NULL;
}

void gt_dist_grad_ready(void *user, const gt_param_slice *p, int n, int i) {
    gt_dist *d = user;
    if (d->world < 2 || d->run_err) return;
    if (i < 0) { /* let started reductions progress (Open MPI progresses inside MPI calls) */
        int done;
        if (d->n_reqs) MPI_Testall(d->n_reqs, d->reqs, &done, MPI_STATUSES_IGNORE);
        return;
    }
    if (!d->started) {
        d->started = calloc((size_t)n, sizeof *d->started);
        if (!d->started) {
            d->run_err = MPI_ERR_NO_MEM;
            return;
        }
    }
    if (d->started[i]) return;
    d->started[i] = true;
    d->n_started++;
    gt_real *lo = p[i].grad, *hi = p[i].grad + p[i].size;
    if (d->run_lo && hi == d->run_lo) d->run_lo = lo;       /* backward order: runs grow down */
    else if (d->run_lo && lo == d->run_hi) d->run_hi = hi;
    else {
        flush_run(d);
        d->run_lo = lo;
        d->run_hi = hi;
    }
    if ((d->run_hi - d->run_lo) * (int64_t)sizeof(gt_real) >= GT_DIST_BUCKET_BYTES) flush_run(d);
}

int gt_dist_reduce_grads(void *user, const gt_param_slice *p, int n, double *scalars,
                         int n_scalars, char *err, size_t errn) {
    gt_dist *d = user;
    if (d->world < 2) return 0;
    double t0 = gt_now();
    flush_run(d);
    for (int i = 0; i < n && !d->run_err;) { /* what backward did not start: merged runs */
        if (d->started && d->started[i]) {
            i++;
            continue;
        }
        gt_real *lo = p[i].grad, *hi = lo + p[i].size;
        int j = i + 1;
        while (j < n && p[j].grad == hi && !(d->started && d->started[j])) hi += p[j++].size;
        start_run(d, lo, hi);
        i = j;
    }
    int rc = d->run_err ? d->run_err : d->n_reqs ? MPI_Waitall(d->n_reqs, d->reqs, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    d->n_reqs = 0;
    d->run_err = 0;
    d->n_started = 0;
    if (d->started) memset(d->started, 0, sizeof *d->started * (size_t)n);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "gradient allreduce", err, errn);
    d->reduce_s += gt_now() - t0;
    return gt_dist_sum_f64(d, scalars, n_scalars, err, errn);
}

bool gt_dist_shards(const gt_dist *d, const gt_optim *o) {
    return d->world > 1 && (o->n_values >= GT_DIST_SHARD_MIN || getenv("GT_SHARD"));
}

/* First value of rank r's share of n (n < 2^40 values and world < 2^20 ranks keep n r exact). */
static int64_t share_start(int64_t n, int r, int world) { return n * r / world; }

/* buf holds the list's values [off, off + size) (one slice, or its state); every rank's share of
 * them goes to every rank, in place. */
static int gather_part(gt_dist *d, gt_real *buf, int64_t off, int64_t size, int64_t n, char *err,
                       size_t errn) {
    if (size > INT32_MAX)
        return snprintf(err, errn, "sharded update: a slice of %lld values is too large for one "
                        "message", (long long)size), -1;
    int W = d->world, *counts = malloc(sizeof(int) * 2 * (size_t)W), *displs = counts + W;
    if (!counts) return snprintf(err, errn, "out of memory"), -1;
    for (int r = 0; r < W; r++) {
        int64_t a = share_start(n, r, W), b = share_start(n, r + 1, W);
        if (a < off) a = off;
        if (a > off + size) a = off + size;
        if (b > off + size) b = off + size;
        if (b < a) b = a;
        counts[r] = (int)(b - a);
        displs[r] = (int)(a - off);
    }
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, GT_MPI_REAL,
                            MPI_COMM_WORLD);
    free(counts);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "allgather", err, errn);
}

int gt_dist_sharded_update(void *user, gt_optim *o, double lr, char *err, size_t errn) {
    gt_dist *d = user;
    int64_t n = o->n_values;
    gt_optim_step_range(o, lr, share_start(n, d->rank, d->world), share_start(n, d->rank + 1, d->world));
    double t0 = gt_now();
    for (int i = 0; i < o->n_params; i++)
        if (gather_part(d, o->params[i].data, o->offset[i], o->params[i].size, n, err, errn)) return -1;
    d->reduce_s += gt_now() - t0;
    return 0;
}

int gt_dist_gather_state(gt_dist *d, gt_optim *o, char *err, size_t errn) {
    if (!gt_dist_shards(d, o)) return 0;
    for (int k = 0; k < o->n_kinds; k++) {
        gt_real *base = k ? o->v : o->m;
        for (int i = 0; i < o->n_params; i++)
            if (gather_part(d, base + o->offset[i], o->offset[i], o->params[i].size, o->n_values, err, errn))
                return -1;
    }
    return 0;
}
