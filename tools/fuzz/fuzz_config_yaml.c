/* fuzz_config_yaml.c: libFuzzer target for the YAML training config (gt_config_parse_text), the
 * derived defaults and checks, and one "key=value" override made of the input's first line.
 * Property: a parsed config written back with gt_config_write parses to the same struct.
 * seeds: configs tools/fuzz/seeds/config_yaml
 * dict: tools/fuzz/config_yaml.dict
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"

/* The defaults do not depend on the input: built once (they parse every schema default, a
 * sixth of the time when done three times per input), copied per use. */
static gt_config dflt;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    gt_config_defaults(&dflt);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static gt_config c, back; /* large: keep them off the stack */
    char err[1024] = "";
    c = dflt;
    if (gt_config_parse_text((const char *)data, size, "fuzz.yaml", &c, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz.yaml", 9) != 0) abort(); /* messages name the file */
    } else {
        gt_config_resolve(&c);
        gt_config_check(&c, err, sizeof err);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f) return 0;
        gt_config_write(&c, f);
        fclose(f);
        back = dflt;
        if (gt_config_parse_text(text, len, "written.yaml", &back, err, sizeof err) != 0) {
            fprintf(stderr, "written config does not parse back: %s\n---\n%s", err, text);
            abort();
        }
        const char *diff = gt_config_diff(&c, &back);
        if (diff) {
            fprintf(stderr, "written config differs at %s\n---\n%s", diff, text);
            abort();
        }
        free(text);
    }
    /* the first line as an override, e.g. "train={steps: 5}" */
    size_t n = 0;
    while (n < size && n < 4096 && data[n] != '\n') n++;
    char *kv = malloc(n + 1);
    if (!kv) return 0;
    memcpy(kv, data, n);
    kv[n] = 0;
    c = dflt;
    gt_config_override(&c, kv, err, sizeof err);
    free(kv);
    return 0;
}
