/* tok_internal.h: what the tokenizer's modules share, not part of the public API.
 *
 * Contract: struct gt_tokenizer and its lookup tables, and the builder functions that the
 * loaders (tok_json.c: tokenizer.json, tok_spm.c: SentencePiece ModelProto, tokenizer.c:
 * gt_tok_from_pieces) call to fill one. A loader sets t->type and t->score, calls tok_build
 * (pieces, piece hash, special-piece trie), then either fills the merge table itself
 * (tok_merge_table_alloc + tok_merge_put, tokenizer.json's ranks) or calls
 * tok_build_pair_table (SentencePiece BPE scores; not for spm_model UNIGRAM or WORD, which
 * read the pieces and scores only), and sets the text rules (and, for a .spm, the charsmap).
 * Only tokenizer.c reads the tables to encode and decode. Errors as in tokenizer.h: != 0 and a message naming src. */
#ifndef GT_TOK_INTERNAL_H
#define GT_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

enum { OP_REPLACE, OP_PREPEND };
typedef struct {
    int kind;
    char *pat, *rep; /* OP_PREPEND uses rep only */
    size_t pat_len, rep_len;
} text_op;

enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_PREVIOUS, SPLIT_NEXT, SPLIT_CONTIGUOUS };

#define MAX_OPS 8

/* Piece hash slot: tag and length screen candidates before the one text comparison. */
typedef struct { int32_t id; uint32_t tag, off, len; } piece_slot;      /* id -1: empty */
/* Merge of the pair in key (left id << 32 | right id) into piece id; lower prio first. */
typedef struct { uint64_t key; uint32_t prio; int32_t id; } merge_slot; /* key ~0: empty */
typedef struct { int32_t child, sibling, id; uint8_t byte; } trie_node; /* id -1: no piece ends here */

struct gt_tokenizer {
    int32_t n;
    char *blob;              /* the pieces, NUL-terminated, back to back */
    uint32_t *off, *len;
    float *score;
    uint8_t *type;
    int16_t *byte_of;        /* byte a <0xNN> piece decodes to, else -1 */
    int32_t byte_id[256];    /* BYTE piece of each byte, else -1 */
    int32_t *cp_id;          /* piece that is exactly code point c < cp_n, else -1 */
    uint32_t cp_n;           /* 1 + the largest such c below 0x10000: no piece is c >= cp_n */
    piece_slot *ph;
    size_t ph_mask;
    bool use_merges;         /* tokenizer.json: merge ranks; else SentencePiece scores */
    merge_slot *mt;          /* merges, or (SentencePiece) every split of every mergeable piece */
    size_t mt_mask;
    int mt_shift;            /* 64 - log2(table size) */
    uint64_t *bloom;         /* 2-probe Bloom filter of the merge pairs: most failed lookups */
    int bloom_shift;         /* end in this cache-resident bitmap instead of the big table */
    trie_node *trie;         /* CONTROL, UNKNOWN and USER_DEFINED pieces, matched in raw text */
    int32_t trie_n, trie_cap;
    uint8_t trie_first[256];
    text_op norm[MAX_OPS];   /* normalizer, applied in order to each text segment */
    int n_norm;
    bool spm_dummy;          /* SentencePiece add_dummy_prefix: one space before the text */
    bool spm_remove_ws;      /* SentencePiece remove_extra_whitespaces */
    bool spm_escape;         /* SentencePiece escape_whitespaces */
    char *split_pat;         /* pre_tokenizer Split (NULL: none) */
    size_t split_len;
    int split_behavior;
    text_op dec[MAX_OPS];    /* decoder Replace steps, per piece */
    int n_dec;
    bool dec_bytes;          /* decoder ByteFallback */
    char *dec_strip;         /* decoder Strip: content and counts, on the joined text */
    size_t dec_strip_len;
    int dec_strip_start, dec_strip_stop;
    bool byte_fallback, fuse_unk, ignore_merges, has_unused;
    int spm_model;           /* SentencePiece trainer_spec.model_type: 1 UNIGRAM, 3 WORD; else BPE */
    float uni_min, uni_max;  /* UNIGRAM: min and max NORMAL score, as SentencePiece computes them */
    size_t max_piece_len;    /* UNIGRAM: longest piece in bytes */
    char *norm_name;         /* normalizer_spec.name of a .spm (NULL: identity), written back */
    char *charsmap;          /* normalizer_spec.precompiled_charsmap as read, or NULL */
    size_t charsmap_len;
    uint32_t *cm_units;      /* its darts-clone double array, decoded */
    size_t cm_n;
    const char *cm_norm;     /* its NUL-separated replacement strings (inside charsmap) */
    size_t cm_norm_len;
    int32_t bos, eos, pad, unk;
};

/* One piece lookup of a batch (tok_piece_find_many): s, n in; id out (-1: not a piece). */
typedef struct { const char *s; size_t n; uint64_t h; size_t slot; int32_t id; } piece_query;

static inline uint64_t merge_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

/* Fibonacci hashing: the top bits of the product depend on every bit of both ids. */
static inline size_t merge_home(const gt_tokenizer *t, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> t->mt_shift);
}

/* ---------------------------------------------------------------- tokenizer.c */

/* Length of the valid UTF-8 character at s (no overlongs, surrogates or > U+10FFFF), or 0. */
size_t tok_utf8_char(const uint8_t *s, size_t n, uint32_t *cp);
int tok_byte_piece(const char *s, size_t n); /* <0xNN> (either case) -> NN, else -1 */
char *tok_memdup0(const char *s, size_t n);  /* n bytes and a NUL, malloc'd */
/* A whole file, NUL-terminated; *n gets its size. */
char *tok_read_file(const char *path, size_t *n, char *err, size_t errn);

int32_t tok_piece_find(const gt_tokenizer *t, const char *s, size_t n); /* id, or -1 */
/* k lookups at once, in stages, so that the cache misses of one overlap those of others. */
void tok_piece_find_many(const gt_tokenizer *t, piece_query *q, size_t k);

gt_tokenizer *tok_alloc(void); /* empty, bos/eos/pad/unk -1 */
/* Builds the piece storage and every lookup table from strs/lens (n pieces; t->type and
 * t->score must be set). src names the file for messages. */
int tok_build(gt_tokenizer *t, const char *const *strs, const size_t *lens, int32_t n, const char *src,
              char *err, size_t errn);
/* Merge table for m pairs; then tok_merge_put each (a repeated key: the later one wins). */
int tok_merge_table_alloc(gt_tokenizer *t, size_t m);
void tok_merge_put(gt_tokenizer *t, uint64_t key, uint32_t prio, int32_t id);
/* SentencePiece's merge rule as a pair table: every split of every mergeable piece. */
int tok_build_pair_table(gt_tokenizer *t, const char *src, char *err, size_t errn);
/* Appends a normalizer or decoder step: 0, -1 out of memory, -2 more than MAX_OPS. */
int tok_add_op(text_op *ops, int *n, int kind, const char *pat, size_t pat_len, const char *rep,
               size_t rep_len);
/* SentencePiece-style text handling: spaces as U+2581 and the same back on decode. -1: out of memory. */
int tok_set_spm_text_rules(gt_tokenizer *t, bool escape, bool dummy, bool remove_ws);
void tok_set_default_specials(gt_tokenizer *t); /* bos/eos/pad by name: <bos>/<s>, <eos>/</s>, <pad> */

/* ---------------------------------------------------------------- tok_json_parse.c */

struct json_t;
/* model.vocab and model.merges, possibly parsed in slices (in file order). */
#define MAX_PARTS 8
typedef struct {
    struct json_t *vocab[MAX_PARTS], *merges[MAX_PARTS];
    int nv, nm;
} hf_parts;

typedef struct tok_json_doc tok_json_doc;
/* Parses the n bytes of buf as JSON (big files in slices, on the OpenMP threads): *root is the
 * document (with model.vocab and model.merges emptied when sliced), parts those two (absent ones
 * left out). The values live until tok_json_doc_free(*doc), which also runs after an error. */
int tok_json_parse(const char *buf, size_t n, const char *src, tok_json_doc **doc, struct json_t **root,
                   hf_parts *parts, char *err, size_t errn);
void tok_json_doc_free(tok_json_doc *doc);

#endif
