#include "autograd/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/hugepage.h"

#define GT_ARENA_ALIGN 64

struct gt_arena_block {
    gt_arena_block *next;
    size_t size;
    size_t off;
    unsigned char *mem;
};

void gt_arena_init(gt_arena *a, size_t min_block) {
    memset(a, 0, sizeof *a);
    a->min_block = min_block ? min_block : ((size_t)16 << 20);
}

static void free_blocks(gt_arena_block *b) {
    while (b) {
        gt_arena_block *next = b->next;
        free(b->mem);
        free(b);
        b = next;
    }
}

void gt_arena_free(gt_arena *a) {
    free_blocks(a->head);
    memset(a, 0, sizeof *a);
}

static gt_arena_block *block_new(size_t size) {
    gt_arena_block *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->mem = aligned_alloc(GT_ARENA_ALIGN, size);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    gt_hugepage_advise(b->mem, size); /* a step's activations: reused every step */
    b->size = size;
    return b;
}

void *gt_arena_alloc(gt_arena *a, size_t bytes) {
    if (bytes > SIZE_MAX / 2) return NULL;
    size_t need = (bytes + GT_ARENA_ALIGN - 1) & ~(size_t)(GT_ARENA_ALIGN - 1);
    if (need == 0) need = GT_ARENA_ALIGN;
    gt_arena_block *b = a->head;
    if (!b || b->size - b->off < need) {
        size_t size = need > a->min_block ? need : a->min_block;
        gt_arena_block *nb = block_new(size);
        if (!nb) return NULL;
        nb->next = a->head;
        a->head = nb;
        a->capacity += size;
        b = nb;
    }
    void *p = b->mem + b->off;
    b->off += need;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void *gt_arena_calloc(gt_arena *a, size_t bytes) {
    void *p = gt_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void gt_arena_reset(gt_arena *a) {
    if (a->head && a->head->next) {
        /* Fold into one block big enough for the whole high-water mark. */
        size_t want = a->peak > a->min_block ? a->peak : a->min_block;
        free_blocks(a->head);
        a->head = NULL;
        a->capacity = 0;
        gt_arena_block *nb = block_new((want + GT_ARENA_ALIGN - 1) & ~(size_t)(GT_ARENA_ALIGN - 1));
        if (nb) {
            a->head = nb;
            a->capacity = nb->size;
        }
    } else if (a->head) {
        a->head->off = 0;
    }
    a->used = 0;
}
