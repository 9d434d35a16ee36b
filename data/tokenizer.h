/* tokenizer.h: Gemma tokenizer (SentencePiece-style BPE with byte fallback) in C.
 *
 * Loads a vocabulary from a Hugging Face tokenizer.json, a SentencePiece model proto
 * (KerasHub's assets/tokenizer/vocabulary.spm) or GGUF metadata (through gt_tok_from_pieces).
 * Encoding never adds BOS/EOS (the preprocessor does).
 *
 * A SentencePiece model may also be a WORD model (each U+2581-started word one piece, else <unk>)
 * or a UNIGRAM model (Viterbi over the piece scores: USER_DEFINED pieces get bytes * max score
 * - 0.1, a character that starts no one-character piece gets <unk> at min score - 10, UNUSED
 * pieces are skipped), as sentencepiece encodes them; runs of <unk> fuse into one, which byte
 * fallback turns into bytes. Its normalizer may carry a precompiled_charsmap (nmt_nfkc and the
 * like): before anything else, each position of the text is replaced by the longest rule of the
 * charsmap's double array (else kept a character), special pieces passing through unchanged;
 * then remove_extra_whitespaces, add_dummy_prefix and escape_whitespaces apply to the result, as
 * in SentencePiece's Normalizer. With remove_extra_whitespaces a U+2581 at the end of the text is
 * dropped like a space (SentencePiece strips the escaped text).
 *
 * Two merge rules, chosen by the source:
 *   - tokenizer.json: the file's merges, lowest rank first (Hugging Face `tokenizers` BPE);
 *   - .spm and gt_tok_from_pieces: any adjacent pair whose concatenation is a piece, highest
 *     piece score first (SentencePiece BPE; ties go to the leftmost pair).
 * Both run a heap over a linked list of symbols: O(n log n) in the text length. Characters not
 * in the vocabulary become <0xNN> byte pieces when the vocabulary has them (byte fallback),
 * else <unk> (runs of <unk> fuse into one).
 *
 * Text that spells a piece of type USER_DEFINED (Gemma: newline and tab runs, HTML tags,
 * <unusedN>, <mask>) always encodes as that one piece, as SentencePiece and `tokenizers` do. With
 * SentencePiece rules (a .spm, a GGUF vocabulary) such a piece is matched in the escaped text, so
 * "\u2581\u2581" (Gemma's whitespace runs) matches two spaces; a GGUF's plain-space spellings of
 * them are respelled with U+2581 on load, so a .spm written from a GGUF is SentencePiece's own.
 * CONTROL and UNKNOWN pieces ("<bos>", "<start_of_turn>", "<unk>", ...) are matched in the text
 * only when match_special is true; with false (the default for training data) they are encoded
 * as ordinary text, so data cannot inject control tokens. Among pieces that match at one
 * position the longest wins. A tokenizer.json's added tokens with "special": true are CONTROL
 * (UNKNOWN for its unk_token), the other added tokens USER_DEFINED.
 *
 * Input text must be valid UTF-8 (else an error naming the byte offset). Decoding concatenates
 * the pieces with U+2581 turned back into spaces; runs of byte pieces become their bytes, or one
 * U+FFFD per byte when the run is not valid UTF-8 (as `tokenizers`' ByteFallback decoder does).
 * Control pieces decode to their own text unless skip_special. A U+2581 in the input text encodes
 * like a space and so decodes as one (as in SentencePiece and `tokenizers`).
 *
 * A gt_tokenizer is immutable after loading: encode/decode may run concurrently on one.
 * Loading a big tokenizer.json parses slices of it (jansson parses every byte) on the OpenMP
 * threads. While a tokenizer.json parse runs (and only then) jansson's process-wide allocator
 * hooks (json_set_alloc_funcs) are installed: they hand every allocation to the functions
 * installed before, except jansson's own on the threads doing this parse (those go to an arena,
 * dropped whole); the previous functions are put back when the last such parse ends.
 * Implementation: tokenizer.c (core), tok_json.c and tok_json_parse.c (tokenizer.json),
 * tok_spm.c (SentencePiece), sharing data/tok_internal.h.
 * Errors: return code != 0 and a one-line message in err (may be NULL) naming the file and,
 * where it applies, the JSON key or proto field. */
#ifndef GT_TOKENIZER_H
#define GT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gt_tokenizer gt_tokenizer;

/* Piece kinds, as SentencePiece numbers them. */
enum { GT_PIECE_NORMAL = 1, GT_PIECE_UNKNOWN = 2, GT_PIECE_CONTROL = 3,
       GT_PIECE_USER_DEFINED = 4, GT_PIECE_UNUSED = 5, GT_PIECE_BYTE = 6 };

/* By content: a GGUF file (or its comma-separated chunk files: the vocabulary only, no
 * weights), tokenizer.json, or a SentencePiece model. */
int gt_tok_load(const char *path, gt_tokenizer **out, char *err, size_t errn);
/* Reads model (BPE), added_tokens, normalizer (null, Replace with a String pattern, Prepend,
 * Sequence), pre_tokenizer (null, Split with a String pattern) and decoder (Replace,
 * ByteFallback, Fuse, Strip, Sequence); any other kind is an error naming it. post_processor,
 * truncation and padding are ignored. Scores for gt_tok_save_spm are derived from the merge
 * ranks (a piece scores minus the rank of the first merge that makes it). */
int gt_tok_load_hf_json(const char *path, gt_tokenizer **out, char *err, size_t errn);
/* ModelProto with trainer_spec.model_type UNIGRAM, BPE or WORD, and a normalizer that is identity
 * or a precompiled_charsmap ([uint32 LE trie size][darts-clone units][NUL-separated strings];
 * every index into it is bounded, a broken one only fails to match); add_dummy_prefix,
 * remove_extra_whitespaces and escape_whitespaces are honoured. Refused, naming the file and
 * field: CHAR models, treat_whitespace_as_suffix, normalization_rule_tsv without a charsmap, a
 * charsmap whose trie size does not fit it, no UNKNOWN piece. */
int gt_tok_load_spm(const char *path, gt_tokenizer **out, char *err, size_t errn);
/* The same two from len bytes in memory (fuzzing, embedded files); name is used in messages.
 * Nothing of buf is kept. */
int gt_tok_load_hf_json_buffer(const char *buf, size_t len, const char *name, gt_tokenizer **out,
                               char *err, size_t errn);
int gt_tok_load_spm_buffer(const char *buf, size_t len, const char *name, gt_tokenizer **out,
                           char *err, size_t errn);
/* From parallel arrays (GGUF: tokenizer.ggml.tokens/scores/token_type). Copies everything.
 * scores may be NULL (all 0); types may be NULL (<0xNN> pieces BYTE, the rest NORMAL).
 * Gemma conventions: spaces become U+2581, no dummy prefix, byte fallback when byte pieces
 * exist; BOS/EOS/PAD are found by name (<bos>/<s>, <eos>/</s>, <pad>): see gt_tok_set_special. */
int gt_tok_from_pieces(const char *const *pieces, const float *scores, const int32_t *types,
                       int32_t n, gt_tokenizer **out, char *err, size_t errn);
/* The tokenizer.ggml.* vocabulary (tokens, scores, token_type, special ids) of an open GGUF
 * (models/io/gguf.h), or of the GGUF at path. */
struct gt_gguf;
int gt_tok_from_gguf(const struct gt_gguf *g, gt_tokenizer **out, char *err, size_t errn);
int gt_tok_load_gguf(const char *path, gt_tokenizer **out, char *err, size_t errn);
/* Overrides the BOS/EOS/PAD ids (-1 = none), e.g. from GGUF's tokenizer.ggml.bos_token_id. */
int gt_tok_set_special(gt_tokenizer *tok, int32_t bos, int32_t eos, int32_t pad, char *err,
                       size_t errn);
/* Write a SentencePiece model proto (for KerasHub presets' vocabulary.spm): the model type,
 * normalizer name and precompiled_charsmap of a loaded .spm are written back as read. Fails when
 * the tokenizer uses something a ModelProto cannot say (a Split pre-tokenizer that can fire, a
 * normalizer other than space escaping / dummy prefix) or has no UNKNOWN piece. */
int gt_tok_save_spm(const gt_tokenizer *tok, const char *path, char *err, size_t errn);
void gt_tok_free(gt_tokenizer *tok);

/* Growable id buffer owned by the caller (zero-initialise; free with gt_ids_free). */
typedef struct { int32_t *ids; size_t n, cap; } gt_ids;
void gt_ids_free(gt_ids *v);
int gt_ids_push(gt_ids *v, int32_t id); /* 0, or -1 when out of memory */

/* Appends the ids of text[0..len) to out. On error out->n is left as it was. */
int gt_tok_encode(const gt_tokenizer *tok, const char *text, size_t len, bool match_special,
                  gt_ids *out, char *err, size_t errn);
/* Appends the UTF-8 text of ids to a malloc'd NUL-terminated string *out (caller frees);
 * skip_special drops control tokens (<bos>, <pad>, ...). out_len may be NULL. */
int gt_tok_decode(const gt_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                  char **out, size_t *out_len, char *err, size_t errn);

int32_t gt_tok_vocab_size(const gt_tokenizer *tok);
/* Id of an exact piece ("<start_of_turn>"), or -1. */
int32_t gt_tok_piece_id(const gt_tokenizer *tok, const char *piece);
const char *gt_tok_piece(const gt_tokenizer *tok, int32_t id); /* NULL if out of range */
int gt_tok_piece_type(const gt_tokenizer *tok, int32_t id);    /* GT_PIECE_*, 0 if out of range */
float gt_tok_piece_score(const gt_tokenizer *tok, int32_t id); /* 0 if out of range */
int32_t gt_tok_bos(const gt_tokenizer *tok);
int32_t gt_tok_eos(const gt_tokenizer *tok);
int32_t gt_tok_pad(const gt_tokenizer *tok);
int32_t gt_tok_unk(const gt_tokenizer *tok);

#endif
