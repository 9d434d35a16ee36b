/* arena.h: bump allocator for one training step's activations, gradients and tape.
 *
 * Allocations are 64-byte aligned and live until gt_arena_reset(). The arena grows by
 * malloc'ed blocks when full; on reset, a multi-block arena is folded into one block of the
 * high-water size, so from the second step on a step of the same shape allocates nothing.
 * Ownership: the arena owns every block; gt_arena_free releases them all.
 * Errors: gt_arena_alloc/calloc return NULL when malloc fails; the arena is unchanged then. */
#ifndef GT_ARENA_H
#define GT_ARENA_H

#include <stddef.h>

typedef struct gt_arena_block gt_arena_block;

typedef struct gt_arena {
    gt_arena_block *head;   /* block being filled; older blocks follow via ->next */
    size_t min_block;       /* smallest block to malloc */
    size_t used;            /* bytes handed out since the last reset (incl. padding) */
    size_t peak;            /* high-water mark of used over the arena's life */
    size_t capacity;        /* bytes held in all blocks */
} gt_arena;

void gt_arena_init(gt_arena *a, size_t min_block);
void gt_arena_free(gt_arena *a);
/* Returns NULL when malloc fails or bytes overflows; never aborts. */
void *gt_arena_alloc(gt_arena *a, size_t bytes);
void *gt_arena_calloc(gt_arena *a, size_t bytes);
void gt_arena_reset(gt_arena *a);

#endif
