/* dataset.h: JSONL datasets streamed from disk, shuffled per epoch, sharded by rank.
 *
 * Lines are {"prompt", "response"}, {"text"}, or {"messages": [{"role", "content"}, ...]}.
 * Prompt and chat records may carry "images": ["path", ...] (Gemma 3 with images), paths relative
 * to the JSONL file's folder unless absolute, one per "<start_of_image>" marker of the prompt or
 * the user turns; opening checks that each file can be opened (decoding happens when used).
 * Any record may carry "audio": ["clip.wav", ...] (paths relative to the JSONL file).
 * Opening reads the file once to validate every line and build an index of line offsets (8 bytes
 * per record; the text itself is read back by seeking, so memory does not grow with file size).
 * A malformed line, a missing field or a wrong type is an error "file:line: reason", or, with
 * skip_bad, the line is left out and counted. Order: epoch e uses a Fisher-Yates permutation
 * from splitmix64 seeded by (seed, e) (or file order without shuffle); rank r of W takes global
 * positions r, r+W, r+2W, ... so ranks read disjoint records that together cover the epoch.
 * The position (epoch, next global index) can be saved and restored exactly.
 * Ownership: gt_dataset_open fills a caller-owned gt_dataset (gt_dataset_close releases the open
 * file and the index); records read back are the caller's (gt_example_free). */
#ifndef GT_DATASET_H
#define GT_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { GT_DS_AUTO, GT_DS_PROMPT_RESPONSE, GT_DS_TEXT, GT_DS_CHAT } gt_ds_format;

typedef struct gt_example {
    gt_ds_format kind;
    char *prompt, *response;  /* prompt/response records */
    char *text;               /* text records */
    int n_turns;              /* chat records */
    char **roles, **contents;
    char **images;            /* n_images paths, resolved against the JSONL file's folder */
    int n_images;
    int64_t line;             /* 1-based line in the file */
    char **audio;             /* "audio": WAV paths (data/media.h), relative to the file's dir */
    int n_audio;
} gt_example;

void gt_example_free(gt_example *e);

typedef struct gt_dataset {
    char path[512];
    FILE *f;
    gt_ds_format format;      /* AUTO: from each line's keys */
    uint64_t *offsets;        /* start of each valid record */
    int64_t *lines;           /* its line number */
    int64_t n;                /* valid records */
    int64_t skipped;          /* bad lines left out (skip_bad) */
    /* iteration */
    uint64_t seed;
    bool shuffle;
    int rank, world;
    int64_t epoch, next;      /* next global index into the epoch's order */
    int64_t *order;           /* permutation of the current epoch */
} gt_dataset;

int gt_dataset_open(const char *path, gt_ds_format format, bool skip_bad, gt_dataset *ds,
                    char *err, size_t errn);
void gt_dataset_close(gt_dataset *ds);
/* Record i (file order) into *ex (caller frees with gt_example_free). */
int gt_dataset_read(gt_dataset *ds, int64_t i, gt_example *ex, char *err, size_t errn);
/* Set the iteration order and restart at epoch 0. */
int gt_dataset_set_order(gt_dataset *ds, uint64_t seed, bool shuffle, int rank, int world,
                         char *err, size_t errn);
/* This rank's next record (advancing epochs as needed); *epoch_out gets its epoch. */
int gt_dataset_next(gt_dataset *ds, gt_example *ex, int64_t *epoch_out, char *err, size_t errn);
/* Skip this rank's next record without reading it (another rank reads it). */
void gt_dataset_advance(gt_dataset *ds);
/* Resume at (epoch, next). */
int gt_dataset_seek(gt_dataset *ds, int64_t epoch, int64_t next, char *err, size_t errn);

#endif
