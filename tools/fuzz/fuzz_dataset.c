/* fuzz_dataset.c: libFuzzer target for JSONL datasets (data/dataset.h): the input is a JSONL
 * file (in a memfd); it is opened as one record format (auto, prompt/response, text, chat), with
 * or without skipping bad lines, picked by the input's length mod 8 (one byte more or less is a
 * mutation away, so the fuzzer reaches all eight on the same text; opening all eight per input
 * cost 8x the time), every record is read back in file order and in one shuffled epoch over 3
 * ranks.
 * Properties: no crash, leak or UB; a failure's message names the file; n + skipped never exceeds
 * the lines.
 * seeds: tools/fuzz/seeds/dataset tests/fixtures/debian-eval-50.jsonl
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "data/dataset.h"

/* One memfd for the whole run, rewritten per input (a memfd_create and close per input cost
 * more than the short inputs' parse); the product opens its /proc/self/fd path afresh each time. */
static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fd = memfd_create("fuzz.jsonl", MFD_CLOEXEC);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ftruncate(fd, (off_t)size) || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    char err[1024];
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    static const gt_ds_format formats[] = {GT_DS_AUTO, GT_DS_PROMPT_RESPONSE, GT_DS_TEXT, GT_DS_CHAT};
    int f = (int)(size % 4), skip = (int)(size / 4 % 2);
    gt_dataset ds;
    err[0] = 0;
    if (gt_dataset_open(path, formats[f], skip, &ds, err, sizeof err)) {
        if (strncmp(err, path, strlen(path))) abort(); /* messages name the file */
        return 0;
    }
    if ((size_t)(ds.n + ds.skipped) > lines) abort();
    for (int64_t i = 0; i < ds.n; i++) {
        gt_example ex;
        if (gt_dataset_read(&ds, i, &ex, err, sizeof err) == 0) gt_example_free(&ex);
    }
    for (int rank = 0; rank < 3 && ds.n; rank++) {
        if (gt_dataset_set_order(&ds, 7, true, rank, 3, err, sizeof err)) break;
        for (int64_t k = 0; k < ds.n / 3 + 1; k++) {
            gt_example ex;
            int64_t epoch;
            if (gt_dataset_next(&ds, &ex, &epoch, err, sizeof err)) break;
            gt_example_free(&ex);
        }
    }
    gt_dataset_close(&ds);
    return 0;
}
