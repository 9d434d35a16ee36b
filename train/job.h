/* job.h: the state a train or eval job is built from (internal to train/).
 *
 * A gt_job owns the model, its LoRA adapters (NULL for full fine-tuning), the tokenizer, the
 * optimizer's view of the trainable tensors (slices) and one global batch of rows, and fills
 * those rows from a dataset through the KerasHub preprocessor (packed or one example a row).
 * Training setup prints the effective config (rank 0) and writes output_dir/config.yaml. Everything
 * returns 0 or -1 with a message in err; gt_job_free releases whatever was built. */
#ifndef GT_JOB_H
#define GT_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/preprocess.h"
#include "data/tokenizer.h"
#include "models/gemma.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/optim.h"
#include "train/media4_rows.h"
#include "train/vision_rows.h"

typedef struct gt_job {
    const gt_config *cfg;
    gt_gemma *model;
    gt_lora *lora;
    gt_tokenizer *tok;
    gt_param_slice *slices;
    int n_slices;
    gt_pp_cfg pp;
    /* one global batch of rows */
    int64_t rows, S;
    int32_t *ids, *labels;
    uint8_t *mask;
    gt_real *weights;
    int32_t *positions, *segments; /* packing only */
    gt_example carry;              /* packing: the example that did not fit the last row */
    bool has_carry;
    int64_t carry_epoch, carry_next; /* the dataset position the carried example was read from */
    gt_dist *dist;                 /* this rank's place in the job (rank 0 of 1 without MPI) */
    bool sharded;                  /* the update is sharded over the ranks (gt_dist_shards) */
    struct gt_eval_key *eval_keys; /* eval examples by length (computed at the first eval, eval.c) */
    int64_t *eval_lines;           /* their line numbers, in file order */
    gt_vrows vis;                  /* the vision encoder and the rows' images (Gemma 3 with images) */
    gt_m4rows m4;                  /* Gemma 4's towers and the rows' images and clips */
} gt_job;

/* Zeroes j and sets its config and rank; applies train.threads (with MPI and no GT_THREADS, the
 * node's cores shared out among its ranks). */
void gt_job_init(gt_job *j, const gt_config *c, gt_dist *dist);
void gt_job_free(gt_job *j);

/* The model (model.weights, else a preset / custom architecture with random init) and the
 * tokenizer (tokenizer, else the model file's). */
int gt_job_build_model(gt_job *j, char *err, size_t errn);
/* LoRA adapters (fresh, or lora.weights) or the full model's tensors as the optimizer's slices. */
int gt_job_build_trainables(gt_job *j, char *err, size_t errn);
/* Room for `rows` rows of data.sequence_length tokens, and the preprocessor's settings. */
int gt_job_alloc_rows(gt_job *j, int64_t rows, char *err, size_t errn);
/* The effective config to stderr and, when save_config (a training run; eval never writes the
 * run's files), atomically to output_dir/config.yaml (rank 0). */
int gt_job_announce(gt_job *j, bool save_config, char *err, size_t errn);
/* A training job's whole setup: init, announce, model, trainables, `rows` rows. */
int gt_job_setup(gt_job *j, const gt_config *c, gt_dist *dist, int64_t rows, char *err, size_t errn);
/* eval --lora: opens lora.weights with the file's rank and targets and shows them in c. */
int gt_job_open_adapters(gt_job *j, gt_config *c, char *err, size_t errn);

/* Row r of the batch from example ex of file (errors name file:line). */
int gt_job_fill_row(gt_job *j, const char *file, int64_t r, const gt_example *ex, char *err, size_t errn);
/* The images of rows [first_row, first_row + mb->in.batch) into mb (nothing for a text-only model). */
void gt_job_attach_images(const gt_job *j, int64_t first_row, gt_micro_batch *mb);
/* Packing: row r from whole examples read from ds (the one that does not fit is carried over). */
int gt_job_fill_packed_row(gt_job *j, gt_dataset *ds, int64_t r, char *err, size_t errn);

#endif
