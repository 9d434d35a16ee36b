/* eval.h: evaluation of a job's model on a dataset, and the eval job behind `gemmatrain eval`.
 *
 * gt_job_evaluate owns the eval order (examples sorted by length once per job, so each batch is
 * little padding) and the per-rank split (ranks take batches in turn; the sums are added over
 * them). Both return 0 or -1 with a message in err. */
#ifndef GT_EVAL_H
#define GT_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/autograd.h"
#include "data/dataset.h"
#include "train/config.h"
#include "train/job.h"

typedef struct gt_eval_result {
    double wce, w;           /* weighted cross-entropy sum and weight sum: the loss is wce / w */
    int64_t examples;
} gt_eval_result;

/* The first eval.max_examples (0: all) examples of ds, in batches of j's rows. per_example:
 * one JSON line per example in file order (one process only), or NULL. */
int gt_job_evaluate(gt_job *j, gt_dataset *ds, gt_ctx *ctx, FILE *per_example, gt_eval_result *res, char *err,
                    size_t errn);

/* Evaluate on data.eval (else data.train), printing the loss as JSON on stdout.
 * adapters_from_file (`eval --lora`): with lora.enabled, the adapters of lora.weights take the
 * file's rank and targets (shown in the effective config) instead of having to match lora.rank
 * and lora.targets. */
int gt_eval_job(const gt_config *cfg, bool adapters_from_file, char *err, size_t errn);

#endif
