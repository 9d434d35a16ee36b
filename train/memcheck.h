/* memcheck.h: the up-front peak-memory estimate of a training run (internal to train/).
 *
 * Before step 1 the trainer adds up what the run will hold at its peak: the model's weights (fp32,
 * or bf16 / Q8_0 for frozen LoRA base weights), the trainable values' gradients and optimizer state, and
 * the activations one micro-batch keeps for backward (per layer: norms, projections, attention
 * scores, MLP branches; plus the LM head's chunk_rows x vocab logits and their gradient). The
 * activation part is a deliberately round upper estimate (the 270M at seq 512 measures about 30%
 * below it). What the machine can give is MemAvailable (/proc/meminfo), capped by the cgroup's
 * limit less its usage (v2 memory.max, v1 memory.limit_in_bytes), shared among the ranks on the
 * node; memory the process already holds counts as had. Test hook:
 * GT_FAULT_INJECT=mem_available:N reports N bytes available.
 * Contract: nothing allocates; unknown quantities are reported as -1 (available) or 0 (resident),
 * never as an error. */
#ifndef GT_MEMCHECK_H
#define GT_MEMCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "models/gemma.h"

typedef struct gt_mem_estimate {
    int64_t weights, trainable, activations; /* bytes */
    int64_t total;
} gt_mem_estimate;

/* rows: a micro-batch; seq: its length; trainable: values the optimizer updates; state_kinds:
 * optimizer arrays per value (Adam 2, SGD with momentum 1, else 0). */
void gt_mem_estimate_run(const gt_gemma *m, int64_t trainable, int state_kinds, int64_t rows, int64_t seq,
                         int64_t chunk_rows, gt_mem_estimate *e);
/* Bytes this process could still get (see above), or -1 when unknown. */
int64_t gt_mem_available(void);
/* Resident bytes of this process now (/proc/self/statm), or 0. */
int64_t gt_mem_resident(void);

#endif
