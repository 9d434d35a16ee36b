/* fuzz_tokenizer_json.c: libFuzzer target for the Hugging Face tokenizer.json loader
 * (gt_tok_load_hf_json_buffer), then encode / decode of fixed texts and of the input itself.
 * seeds: tools/fuzz/seeds/tokenizer_json
 * dict: tools/fuzz/tokenizer_json.dict
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"

static void round_trip(const gt_tokenizer *t, const char *text, size_t len) {
    char err[512];
    gt_ids ids = {0};
    char *back = NULL;
    for (int special = 0; special < 2; special++) {
        ids.n = 0;
        if (gt_tok_encode(t, text, len, special, &ids, err, sizeof err) != 0) continue;
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= gt_tok_vocab_size(t)) abort(); /* ids are in range */
        if (gt_tok_decode(t, ids.ids, ids.n, special, &back, NULL, err, sizeof err) == 0) free(back);
    }
    gt_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gt_tokenizer *t;
    char err[512] = "";
    if (gt_tok_load_hf_json_buffer((const char *)data, size, "fuzz.json", &t, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz.json", 9) != 0) abort(); /* messages name the file */
        return 0;
    }
    static const char fixed[] = "hello world  <bos>a\n\nb\t<unk>\xE2\x96\x81x \xC3\xA9\xF0\x9F\x98\x80 the cat";
    round_trip(t, fixed, sizeof fixed - 1);
    round_trip(t, (const char *)data, size < 256 ? size : 256); /* mostly not UTF-8: refused */
    for (int32_t id = -1; id <= gt_tok_vocab_size(t); id++) {
        gt_tok_piece(t, id);
        gt_tok_piece_type(t, id);
        gt_tok_piece_score(t, id);
    }
    gt_tok_free(t);
    return 0;
}
