/* dist.h: the data-parallel process group (Open MPI) behind `mpirun -np N gemmatrain train`.
 *
 * gt_dist_init joins MPI only when the process was started by mpirun (Open MPI's
 * OMPI_COMM_WORLD_SIZE in the environment); otherwise it is rank 0 of 1 and no MPI call is ever
 * made, so single-process runs pay nothing and load none of MPI's state.
 *
 * Every rank holds the whole model and optimizer; the step's reduce hook (gt_dist_reduce_grads,
 * for gt_step_cfg.reduce) sums the gradient slices and the loss scalars over the ranks, so every
 * rank applies the same update. Gradients are summed in place, in buckets of at most
 * GT_DIST_BUCKET_BYTES (4 MiB moves about twice as fast here as one large message), with up to
 * GT_DIST_INFLIGHT buckets in flight at once; adjacent slices that are contiguous in memory (full
 * fine-tuning: one gradient allocation) are merged into one run first, so LoRA's many small
 * adapters and full fine-tuning's one large buffer both travel in few messages. With
 * gt_dist_grad_ready as the step's ready hook, buckets start during backward as soon as their
 * gradients are final, and communication overlaps the rest of backward.
 *
 * Errors return -1 with a message. A rank that fails alone would leave the others waiting in a
 * collective, so the CLI calls gt_dist_abort after printing its error when world > 1. */
#ifndef GT_DIST_H
#define GT_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/real.h"
#include "train/optim.h"

#define GT_DIST_BUCKET_BYTES (4 << 20)
#define GT_DIST_INFLIGHT 4

typedef struct gt_dist {
    int rank, world;
    int local_world;       /* ranks on this node (threads per rank are shared out among them) */
    bool mpi;              /* MPI was initialised here (finalize it) */
    double reduce_s;       /* wall time spent waiting for gradient reductions so far (the part
                              not hidden behind backward) */
    int64_t reduce_bytes;  /* gradient bytes this rank sent into reductions so far */
    /* reductions started during backward (gt_dist_grad_ready), finished by gt_dist_reduce_grads */
    void *reqs;            /* MPI_Request array */
    int n_reqs, cap_reqs;
    bool *started;         /* per slice */
    int n_started;
    gt_real *run_lo, *run_hi; /* the contiguous run of final slices not started yet */
    int run_err;           /* first MPI error code of a started reduction, 0 if none */
} gt_dist;

/* Join the job (or become rank 0 of 1). 0 or -1 with a message. */
int gt_dist_init(gt_dist *d, int *argc, char ***argv, char *err, size_t errn);
/* Frees the reduction state and finalizes MPI if it was initialised here. */
void gt_dist_finalize(gt_dist *d);
/* End the whole job now with `code` (MPI_Abort when world > 1; a no-op otherwise). */
void gt_dist_abort(const gt_dist *d, int code);
/* Threads per rank when the config and GT_THREADS leave it open: the CPUs this process may run
 * on, shared among the ranks of this node when they are not bound apart. */
int gt_dist_default_threads(const gt_dist *d);

/* In-place sums over all ranks (no-ops for one rank). */
int gt_dist_sum_f64(gt_dist *d, double *v, int n, char *err, size_t errn);
int gt_dist_sum_real(gt_dist *d, gt_real *v, int64_t n, char *err, size_t errn);
/* Rank 0's value of *v on every rank. */
int gt_dist_bcast_i64(gt_dist *d, int64_t *v, char *err, size_t errn);
/* 0 when every rank passed the same value, else -1 with a message naming `what`. */
int gt_dist_check_same(gt_dist *d, uint64_t v, const char *what, char *err, size_t errn);
int gt_dist_barrier(gt_dist *d, char *err, size_t errn);

/* gt_step_cfg.ready: starts reducing final gradients during backward. Adjacent final slices are
 * merged into runs that start once they reach GT_DIST_BUCKET_BYTES (or when the next final slice
 * is not adjacent); backward order makes full fine-tuning's layers arrive as one descending run. */
void gt_dist_grad_ready(void *user, const gt_param_slice *p, int n, int i);
/* gt_reduce_fn for gt_step_cfg: user is the gt_dist. Starts what is left, waits for all. */
int gt_dist_reduce_grads(void *user, const gt_param_slice *p, int n, double *scalars,
                         int n_scalars, char *err, size_t errn);

/* Sharded update, for lists of at least GT_DIST_SHARD_MIN values (full fine-tuning): after the
 * reduction every rank holds the same summed gradients, so rank r applies the optimizer only to
 * its share [N r / W, N (r + 1) / W) of the N values (gt_optim_step_range) and the ranks then
 * gather each other's updated values: each does 1/W of the update's work, and the weights are
 * bit-identical to an unsharded update. The optimizer state outside a rank's share goes stale;
 * gt_dist_gather_state brings every rank the whole state again (before a checkpoint). */
#define GT_DIST_SHARD_MIN ((int64_t)1 << 20)
/* Whether the update is sharded: world > 1 and GT_DIST_SHARD_MIN values (or GT_SHARD set, for
 * tests on small models). */
bool gt_dist_shards(const gt_dist *d, const gt_optim *o);
/* gt_step_cfg.update; user is the gt_dist. */
int gt_dist_sharded_update(void *user, gt_optim *o, double lr, char *err, size_t errn);
int gt_dist_gather_state(gt_dist *d, gt_optim *o, char *err, size_t errn);

#endif
