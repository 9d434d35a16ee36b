/* fuzz_tokenizer_spm.c: libFuzzer target for the SentencePiece ModelProto loader
 * (gt_tok_load_spm_buffer: KerasHub's vocabulary.spm; BPE, UNIGRAM and WORD models, the
 * precompiled_charsmap's double array), then encode / decode of fixed texts (NFKC cases among
 * them, so that a mutated charsmap is walked).
 * seeds: tools/fuzz/seeds/tokenizer_spm
 * Run through tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gt_tokenizer *t;
    char err[512] = "";
    if (gt_tok_load_spm_buffer((const char *)data, size, "fuzz.spm", &t, err, sizeof err) != 0) {
        if (strncmp(err, "fuzz.spm", 8) != 0) abort(); /* messages name the file */
        return 0;
    }
    static const char text[] = "hello world  <bos>a\n\nb\t<unk> \xC3\xA9\xF0\x9F\x98\x80 the cat"
                               " \xEF\xBC\xA1\xEF\xBC\x91\xEF\xAC\x81\xE3\x80\x80\xE2\x91\xA0" "e\xCC\x81 AB \xE2\x96\x81";
    gt_ids ids = {0};
    char *back = NULL;
    for (int special = 0; special < 2; special++) {
        ids.n = 0;
        if (gt_tok_encode(t, text, sizeof text - 1, special, &ids, err, sizeof err) != 0) continue;
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= gt_tok_vocab_size(t)) abort(); /* ids are in range */
        if (gt_tok_decode(t, ids.ids, ids.n, special, &back, NULL, err, sizeof err) == 0) free(back);
    }
    gt_ids_free(&ids);
    gt_tok_free(t);
    return 0;
}
