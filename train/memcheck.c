/* memcheck.c: the up-front peak-memory estimate (train/memcheck.h). */
#include "train/memcheck.h"

#include "autograd/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void gt_mem_estimate_run(const gt_gemma *m, int64_t trainable, int state_kinds, int64_t rows, int64_t seq,
                         int64_t chunk_rows, gt_mem_estimate *e) {
    const gt_gemma_config *c = &m->cfg;
    int64_t params = gt_gemma_param_count(c);
    /* frozen base weights (LoRA): bf16 2 bytes each, Q8_0 34 per 32; trainable ones and
     * everything else fp32 */
    e->weights = m->frozen_dtype == GT_FROZEN_BF16   ? 2 * params + 4 * trainable
                 : m->frozen_dtype == GT_FROZEN_Q8_0 ? gt_q8_bytes(params) + 4 * trainable
                                                     : 4 * params;
    if (m->frozen_dtype == GT_FROZEN_Q4_K) /* a block type per matrix: count what is stored */
        e->weights = gt_gemma_stored_bytes(m) + 4 * trainable;
    e->trainable = 4 * trainable * (1 + state_kinds); /* gradient + optimizer arrays */
    int64_t qkv = (c->num_query_heads + 2 * c->num_kv_heads) * c->head_dim;
    int64_t per_layer = seq * (6 * c->hidden_dim + 3 * c->intermediate_dim + 2 * qkv) + c->num_query_heads * seq * seq;
    /* Gemma 4 MoE: the branch's norms and sum, router logits, and per chosen expert its gate/up
     * pre-activations, hidden and output rows (autograd/ops_moe.c keeps them for backward) */
    if (c->moe)
        per_layer += seq * (5 * c->hidden_dim + c->num_experts +
                            c->experts_per_token * (3 * c->expert_dim + c->hidden_dim));
    int64_t head_rows = chunk_rows < rows * seq ? chunk_rows : rows * seq;
    e->activations = 4 * (rows * per_layer * c->num_layers + 2 * head_rows * c->vocab_size + 2 * rows * seq * c->hidden_dim);
    e->total = e->weights + e->trainable + e->activations;
}

/* The first integer after "key" in a /proc-style file, scaled by unit; -1 when absent. */
static int64_t read_field(const char *path, const char *key, int64_t unit) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    int64_t v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) {
            long long x;
            if (sscanf(line + kl, " %lld", &x) == 1) v = (int64_t)x * unit;
            break;
        }
    fclose(f);
    return v;
}

/* One number from a cgroup file ("max": none), or -1. */
static int64_t read_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long x;
    int ok = fscanf(f, "%lld", &x) == 1;
    fclose(f);
    return ok && x >= 0 ? (int64_t)x : -1;
}

/* The cgroup's room left (limit - usage), or -1 without a limit. */
static int64_t cgroup_room(void) {
    char dir[512] = "/sys/fs/cgroup", line[512], p[700];
    FILE *f = fopen("/proc/self/cgroup", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) { /* cgroup v2: this process's own group */
            line[strcspn(line, "\n")] = 0;
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", strcmp(line + 3, "/") ? line + 3 : "");
        }
    if (f) fclose(f);
    snprintf(p, sizeof p, "%s/memory.max", dir);
    int64_t limit = read_number(p), used;
    if (limit >= 0) {
        snprintf(p, sizeof p, "%s/memory.current", dir);
        used = read_number(p);
    } else { /* cgroup v1 */
        limit = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
        used = read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
        if (limit >= ((int64_t)1 << 60)) limit = -1; /* "unlimited" is a huge number in v1 */
    }
    if (limit < 0) return -1;
    return used >= 0 && used < limit ? limit - used : 0;
}

int64_t gt_mem_available(void) {
    const char *s = getenv("GT_FAULT_INJECT");
    long long n;
    if (s && sscanf(s, "mem_available:%lld", &n) == 1) return n;
    int64_t avail = read_field("/proc/meminfo", "MemAvailable:", 1024), room = cgroup_room();
    if (room >= 0 && (avail < 0 || room < avail)) avail = room;
    return avail;
}

int64_t gt_mem_resident(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long long size, res;
    int ok = fscanf(f, "%lld %lld", &size, &res) == 2;
    fclose(f);
    return ok ? (int64_t)res * sysconf(_SC_PAGESIZE) : 0;
}
