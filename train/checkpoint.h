/* checkpoint.h: training checkpoints in HDF5, written atomically, resumed exactly.
 *
 * File layout (format "gemmatrain-checkpoint", version 1; every number as written in memory):
 *   /                 attrs format (string), format_version, step
 *   /config           the run's effective config as YAML text (a string dataset)
 *   /model            attrs generation, vocab_size, num_layers, hidden_dim, intermediate_dim,
 *                     num_query_heads, num_key_value_heads, head_dim: the shape it was trained on
 *   /lora             attrs enabled, rank, alpha, targets ("query,value"): the adapter layout
 *   /params/NAME      float32 dataset per trainable slice (LoRA adapters or every model weight),
 *                     NAME the slice's name (KerasHub path, e.g. decoder_block_0/attention/query/...)
 *   /optimizer        attrs name (adamw|adam|sgd), iterations (updates applied)
 *   /optimizer/NAME/momentum, /optimizer/NAME/velocity   the optimizer's state arrays (Keras names)
 *   /state            attrs step (updates done), data_epoch, data_next (position of the next unread
 *                     example), tokens (tokens trained so far), elapsed_s, world (ranks that wrote it)
 *   /rng              attrs train_seed, shuffle_seed, lora_seed: every random stream of a run is a
 *                     pure function of these and (epoch, step) (shuffle: per-epoch permutation,
 *                     LoRA dropout: per-step mask), so they plus /state restore all random state.
 *
 * The HDF5 data starts at byte 512 (an HDF5 user block, which libhdf5 and h5py skip); the block
 * begins with the seal: "GTCKSUM1", the file size and a 64-bit hash of bytes [512, size), little-
 * endian, written once the file is complete. Every reader checks it before libhdf5 opens the file
 * (libhdf5 1.10 crashes on some corrupted files instead of failing): a changed, truncated or
 * extended file is refused by name. A file without the magic (written before the seal) is read
 * unchecked, as before.
 * gt_ckpt_save writes DIR/.NAME.tmp-PID, flushes it, seals it, fsyncs it, renames it to NAME and fsyncs DIR,
 * so a crash at any point leaves either the old set of checkpoints or the new one, never a
 * half-written NAME. Test hook: with GT_FAULT_INJECT=ckpt_kill:STEP in the environment the
 * process kills itself (SIGKILL) half-way through writing the checkpoint of step STEP.
 * gt_ckpt_load checks the format, the model shape, the LoRA layout and every slice's name and size
 * before it overwrites anything; each mismatch is one line naming what differs.
 * Ownership: gt_ckpt_read_config returns a malloc'ed string the caller frees; nothing else is
 * kept. Errors: -1 and a one-line message naming the file (and the dataset or attribute). */
#ifndef GT_CHECKPOINT_H
#define GT_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/gemma_config.h"
#include "models/lora.h"
#include "train/optim.h"

#define GT_CKPT_FORMAT "gemmatrain-checkpoint"
#define GT_CKPT_VERSION 1

typedef struct gt_ckpt_state {
    int64_t step;                 /* optimizer updates completed */
    int64_t data_epoch, data_next;
    int64_t tokens;
    double elapsed_s;
    int64_t world;
    int64_t train_seed, shuffle_seed, lora_seed;
} gt_ckpt_state;

/* What the trainable slices belong to: the model shape and the LoRA layout (lora NULL: full
 * fine-tuning). */
typedef struct gt_ckpt_model {
    const gt_gemma_config *cfg;
    const gt_lora *lora;
    const char *optimizer;        /* "adamw", "adam", "sgd" */
} gt_ckpt_model;

int gt_ckpt_save(const char *path, const char *config_yaml, const gt_ckpt_model *model,
                 const gt_param_slice *p, int n, const gt_optim *opt, const gt_ckpt_state *st,
                 char *err, size_t errn);
/* Restore slices, optimizer state and *st from path. config_yaml (optional) gets the stored config
 * text, malloc'ed (caller frees). Nothing is modified unless every check passes. */
int gt_ckpt_load(const char *path, const gt_ckpt_model *model, const gt_param_slice *p, int n,
                 gt_optim *opt, gt_ckpt_state *st, char **config_yaml, char *err, size_t errn);

/* True when path starts as a checkpoint does: the seal's magic (see checkpoint.c) or, for files
 * written before the seal, the HDF5 signature at offset 0. A quick look for the CLI's choice of
 * input kind, not a check of the contents. */
bool gt_ckpt_sniff(const char *path);

/* The effective config stored in a checkpoint (malloc'ed YAML text), for tools that rebuild the
 * run's model from it (gemmatrain export CHECKPOINT). */
int gt_ckpt_read_config(const char *path, char **config_yaml, char *err, size_t errn);

/* DIR/ckpt-STEP.h5 (STEP zero-padded to 8 digits). */
void gt_ckpt_path(const char *dir, int64_t step, char *out, size_t n);
/* The steps of dir's complete checkpoints, ascending (*steps malloc'ed, NULL when none; the caller
 * frees it): 0, or -1 when dir cannot be read. */
int gt_ckpt_list(const char *dir, int64_t **steps, int *count, char *err, size_t errn);
/* The newest complete checkpoint in dir: 0 (filling out and step), 1 when there is none, -1 on error. */
int gt_ckpt_latest(const char *dir, char *out, size_t n, int64_t *step, char *err, size_t errn);
/* Keep the newest `keep` checkpoints in dir, remove the older ones and stale temporary files. */
int gt_ckpt_prune(const char *dir, int keep, char *err, size_t errn);
/* Compares the trained state of two checkpoints: every float dataset under /params and
 * /optimizer, bit for bit. *n gets the number of datasets in a, *differ those that differ or are
 * missing from b (first one named in first, may be NULL). 0, or -1 when a file cannot be read. */
int gt_ckpt_compare(const char *a, const char *b, int *n, int *differ, char *first, size_t firstn, char *err,
                    size_t errn);

#endif
