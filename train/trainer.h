/* trainer.h: the train and eval jobs behind `gemmatrain train` / `gemmatrain eval`.
 *
 * From a validated config: builds or loads the model (a GGUF file, or a preset / custom
 * architecture with random init) and its tokenizer, enables LoRA (or full fine-tuning), streams
 * the JSONL data through the KerasHub preprocessor, and runs gt_step_run per global batch with
 * the configured optimizer and schedule. Progress goes to stderr (a bar on a terminal, plain
 * lines otherwise), metrics to a JSONL file, the effective config to stderr and
 * output_dir/config.yaml. SIGINT or SIGTERM stops after the current step (every rank at the same
 * one), writes the checkpoint and outputs, and returns 130 (SIGINT) or 143 (SIGTERM); a second
 * signal ends the process at once. Returns 0 when done, or -1 with a message.
 *
 * trainer.c holds the run (setup, step loop, checkpoints, teardown); the job's model, trainables
 * and batch rows are train/job.h's, evaluation and gt_eval_job train/eval.h's, progress and
 * metrics lines train/report.h's, the peak-memory estimate train/memcheck.h's. */
#ifndef GT_TRAINER_H
#define GT_TRAINER_H

#include <stddef.h>

#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/vision.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/eval.h" /* gt_eval_job */

/* dist: this process's place in an MPI job, or NULL for one process. Every rank calls it with
 * the same config; rank 0 logs, writes metrics and checkpoints. */
int gt_train_job(const gt_config *cfg, gt_dist *dist, char *err, size_t errn);
/* The model, adapters (NULL for full fine-tuning) and tokenizer of a run as checkpoint ckpt left
 * them: built from config c (the checkpoint's own, see gt_ckpt_read_config), then the trained
 * tensors loaded. *model->lora points at *lora. The caller frees all three. */
int gt_train_restore(const gt_config *c, const char *ckpt, gt_gemma **model, gt_lora **lora,
                     gt_tokenizer **tok, int64_t *step, char *err, size_t errn);
/* The same, and the run's vision encoder (trained weights or adapters included; NULL for a text
 * model) into *vision, the caller's. */
int gt_train_restore_mm(const gt_config *c, const char *ckpt, gt_gemma **model, gt_lora **lora, gt_vision **vision,
                        gt_tokenizer **tok, int64_t *step, char *err, size_t errn);

#endif
