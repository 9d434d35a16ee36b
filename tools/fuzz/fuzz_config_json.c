/* fuzz_config_json.c: libFuzzer target for the model config.json readers: the Hugging Face
 * mapping (gt_hf_gemma_config) and the KerasHub preset mapping (gt_keras_preset_config). Both
 * take a path, so each input is written to DIR/config.json in a private tmpfs directory.
 * seeds: tests/fixtures/hf/gemma1/config.json tests/fixtures/hf/gemma2/config.json tests/fixtures/hf/gemma3/config.json tests/fixtures/hf/gemma3_mm/config.json tests/fixtures/hf/gemma4/config.json tests/fixtures/presets/gemma1/config.json tests/fixtures/presets/gemma2/config.json tests/fixtures/presets/gemma3/config.json tests/fixtures/presets/gemma4/config.json
 * dict: tools/fuzz/tokenizer_json.dict
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/io/hf_gemma.h"
#include "models/io/keras_preset.h"

static char dir[64], path[96];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/gt-fuzz-config-%d", (int)getpid());
        mkdir(dir, 0700);
        snprintf(path, sizeof path, "%s/config.json", dir);
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
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
