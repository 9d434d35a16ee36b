/* fuzz_config_json.c: libFuzzer target for the model config.json readers: the Hugging Face
 * mapping (gt_hf_gemma_config) and the KerasHub preset mapping (gt_keras_preset_config). Both
 * take a path, so each input is written to DIR/config.json in a private tmpfs directory
 * (tools/fuzz/fuzz_tmp.h: removed at exit, or by the next run after a crash).
 * seeds: tests/fixtures/hf/gemma1/config.json tests/fixtures/hf/gemma2/config.json tests/fixtures/hf/gemma3/config.json tests/fixtures/hf/gemma3_mm/config.json tests/fixtures/hf/gemma4/config.json tests/fixtures/presets/gemma1/config.json tests/fixtures/presets/gemma2/config.json tests/fixtures/presets/gemma3/config.json tests/fixtures/presets/gemma4/config.json tools/fuzz/seeds/config_json
 * dict: tools/fuzz/tokenizer_json.dict
 * Run through tools/fuzz/run.sh. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/io/hf_gemma.h"
#include "models/io/keras_preset.h"
#include "tools/fuzz/fuzz_tmp.h"

static char dir[256];
static int fd = -1; /* DIR/config.json, kept open: each input is written over it */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char path[300];
    if (fuzz_tmp_dir("config", dir, sizeof dir)) abort();
    snprintf(path, sizeof path, "%s/config.json", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ftruncate(fd, (off_t)size) || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    gt_gemma_config cfg;
    char arch[128], err[1024];
    if (gt_hf_gemma_config(dir, &cfg, arch, sizeof arch, err, sizeof err) == 0) {
        if (gt_gemma_config_validate(&cfg, err, sizeof err) != 0) abort(); /* accepted = valid */
    } else if (!strstr(err, "config.json") && !strstr(err, dir)) {
        abort(); /* messages name the file */
    }
    if (gt_keras_preset_config(dir, &cfg, err, sizeof err) == 0) {
        if (gt_gemma_config_validate(&cfg, err, sizeof err) != 0) abort();
    } else if (!strstr(err, "config.json") && !strstr(err, dir)) {
        abort();
    }
    return 0;
}
