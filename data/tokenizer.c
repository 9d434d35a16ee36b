#include "data/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/fsutil.h"

/* ================================================================ types */

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
    int32_t *cp_id;          /* piece that is exactly code point c < 0x10000, else -1 */
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
    int32_t bos, eos, pad, unk;
};

/* ================================================================ small helpers */

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* Length of the valid UTF-8 character at s (no overlongs, surrogates or > U+10FFFF), or 0. */
static size_t utf8_char(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static bool utf8_valid(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_char(u + i, n - i, &cp);
        if (!l) return false;
        i += l;
    }
    return true;
}

/* <0xNN> with two hex digits (either case) -> NN, else -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static bool is_byte_piece_upper(const char *s, size_t n) {
    return parse_byte_piece(s, n) >= 0 && !(s[3] >= 'a' && s[3] <= 'f') && !(s[4] >= 'a' && s[4] <= 'f');
}

static char *memdup0(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Reads a whole file; *n gets its size. */
static char *read_file(const char *path, size_t *n, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        gt_errf(err, errn, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, len = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        if (sz > 0) cap = (size_t)sz + 2; /* room for the NUL and for the read that sees EOF */
        rewind(f);
    }
    for (;;) {
        if (!buf || len + 1 >= cap) {
            size_t nc = !buf && cap ? cap : cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(f);
                gt_errf(err, errn, "%s: out of memory reading %zu bytes", path, nc);
                return NULL;
            }
            buf = nb, cap = nc;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        gt_errf(err, errn, "%s: read error: %s", path, strerror(errno));
        return NULL;
    }
    fclose(f);
    buf[len] = 0;
    *n = len;
    return buf;
}

/* ================================================================ lookup tables */

static int32_t piece_probe(const gt_tokenizer *t, const char *s, size_t n, uint64_t h, size_t i) {
    uint32_t tag = (uint32_t)(h >> 32);
    for (;; i = (i + 1) & t->ph_mask) {
        const piece_slot *p = &t->ph[i];
        if (p->id < 0) return -1;
        if (p->tag == tag && p->len == n && memcmp(t->blob + p->off, s, n) == 0) return p->id;
    }
}

static int32_t piece_find(const gt_tokenizer *t, const char *s, size_t n) {
    uint64_t h = hash_bytes(s, n);
    return piece_probe(t, s, n, h, h & t->ph_mask);
}

/* Many lookups at once, in stages, so that the cache misses of one overlap those of others. */
typedef struct { const char *s; size_t n; uint64_t h; size_t slot; int32_t id; } piece_query;

static void piece_find_many(const gt_tokenizer *t, piece_query *q, size_t k) {
    for (size_t i = 0; i < k; i++) {
        q[i].h = hash_bytes(q[i].s, q[i].n);
        __builtin_prefetch(&t->ph[q[i].h & t->ph_mask]);
    }
    for (size_t i = 0; i < k; i++) {
        uint32_t tag = (uint32_t)(q[i].h >> 32);
        q[i].id = -1;
        for (size_t j = q[i].h & t->ph_mask;; j = (j + 1) & t->ph_mask) {
            const piece_slot *p = &t->ph[j];
            if (p->id < 0) break;
            if (p->tag == tag && p->len == q[i].n) {
                q[i].id = p->id, q[i].slot = j;
                __builtin_prefetch(t->blob + p->off);
                break;
            }
        }
    }
    for (size_t i = 0; i < k; i++) {
        if (q[i].id < 0) continue;
        const piece_slot *p = &t->ph[q[i].slot];
        if (memcmp(t->blob + p->off, q[i].s, q[i].n) != 0)
            q[i].id = piece_probe(t, q[i].s, q[i].n, q[i].h, (q[i].slot + 1) & t->ph_mask);
    }
}

static inline uint64_t merge_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

/* Fibonacci hashing: the top bits of the product depend on every bit of both ids. */
static inline size_t merge_home(const gt_tokenizer *t, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> t->mt_shift);
}

static inline uint64_t bloom_hash(uint64_t key) { return key * 0xD6E8FEB86659FD93ull; }

static inline bool bloom_maybe(const gt_tokenizer *t, uint64_t key) {
    uint64_t h = bloom_hash(key), i = h >> t->bloom_shift,
             j = (h >> 7) & ((1ull << (64 - t->bloom_shift)) - 1);
    return (t->bloom[i >> 6] >> (i & 63) & 1) && (t->bloom[j >> 6] >> (j & 63) & 1);
}

static inline void bloom_add(gt_tokenizer *t, uint64_t key) {
    uint64_t h = bloom_hash(key), i = h >> t->bloom_shift,
             j = (h >> 7) & ((1ull << (64 - t->bloom_shift)) - 1);
    t->bloom[i >> 6] |= 1ull << (i & 63);
    t->bloom[j >> 6] |= 1ull << (j & 63);
}

static const merge_slot *merge_find(const gt_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = merge_key(a, b);
    if (!bloom_maybe(t, key)) return NULL;
    for (size_t i = merge_home(t, key);; i = (i + 1) & t->mt_mask) {
        const merge_slot *s = &t->mt[i];
        if (s->key == key) return s;
        if (s->key == ~0ull) return NULL;
    }
}

/* Pair table for m entries (load <= 2/3) and its 8-bits-per-entry Bloom filter (1 MB for
 * Gemma: stays in L2, where it answers the ~40% of lookups that find no merge). */
static int merge_table_alloc(gt_tokenizer *t, size_t m) {
    size_t cap = pow2_at_least(m + m / 2 + 1), bits = pow2_at_least(8 * m + 1024);
    t->mt = malloc(cap * sizeof *t->mt);
    t->bloom = calloc(bits / 64, sizeof *t->bloom);
    if (!t->mt || !t->bloom) return -1;
    t->mt_mask = cap - 1;
    t->mt_shift = 64;
    for (size_t c = cap; c > 1; c >>= 1) t->mt_shift--;
    t->bloom_shift = 64;
    for (size_t c = bits; c > 1; c >>= 1) t->bloom_shift--;
    for (size_t i = 0; i < cap; i++) t->mt[i].key = ~0ull;
    return 0;
}

static void merge_put(gt_tokenizer *t, uint64_t key, uint32_t prio, int32_t id) {
    size_t h = merge_home(t, key);
    while (t->mt[h].key != ~0ull && t->mt[h].key != key) h = (h + 1) & t->mt_mask;
    bloom_add(t, key);
    t->mt[h] = (merge_slot){key, prio, id};
}

static int trie_add(gt_tokenizer *t, const char *s, size_t n, int32_t id) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].sibling;
        if (c < 0) {
            if (t->trie_n == t->trie_cap) {
                int32_t nc = t->trie_cap * 2;
                trie_node *nt = realloc(t->trie, (size_t)nc * sizeof *nt);
                if (!nt) return -1;
                t->trie = nt, t->trie_cap = nc;
            }
            c = t->trie_n++;
            t->trie[c] = (trie_node){-1, t->trie[node].child, -1, b};
            t->trie[node].child = c;
        }
        node = c;
    }
    t->trie[node].id = id;
    t->trie_first[(uint8_t)s[0]] = 1;
    return 0;
}

static inline bool is_special_type(int ty) { return ty == GT_PIECE_CONTROL || ty == GT_PIECE_UNKNOWN; }

/* Longest allowed piece of the trie at the start of s; 0 if none. */
static size_t trie_match(const gt_tokenizer *t, const uint8_t *s, size_t n, bool special, int32_t *id) {
    int32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != s[i]) c = t->trie[c].sibling;
        if (c < 0) break;
        node = c;
        int32_t pid = t->trie[c].id;
        if (pid >= 0 && (special || !is_special_type(t->type[pid]))) best = i + 1, *id = pid;
    }
    return best;
}

static gt_tokenizer *tok_alloc(void) {
    gt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->bos = t->eos = t->pad = t->unk = -1;
    return t;
}

/* Builds the piece storage and every lookup table from strs/lens (n pieces; t->type and
 * t->score must be set). src names the file for messages. */
static int tok_build(gt_tokenizer *t, const char *const *strs, const size_t *lens, int32_t n,
                     const char *src, char *err, size_t errn) {
    t->n = n;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (lens[i] == 0) return gt_errf(err, errn, "%s: piece %d is empty", src, i);
        if (lens[i] > UINT32_MAX / 2 || total > UINT32_MAX / 2)
            return gt_errf(err, errn, "%s: piece %d is too long", src, i);
        if (!utf8_valid(strs[i], lens[i])) return gt_errf(err, errn, "%s: piece %d is not valid UTF-8", src, i);
        total += lens[i] + 1;
    }
    t->blob = malloc(total ? total : 1);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->byte_of = malloc((size_t)n * sizeof *t->byte_of);
    t->cp_id = malloc(0x10000 * sizeof *t->cp_id);
    size_t ph_n = pow2_at_least((size_t)n + (size_t)n / 2 + 1);
    t->ph = malloc(ph_n * sizeof *t->ph);
    t->trie_cap = 256;
    t->trie = malloc((size_t)t->trie_cap * sizeof *t->trie);
    if (!t->blob || !t->off || !t->len || !t->byte_of || !t->cp_id || !t->ph || !t->trie)
        return gt_errf(err, errn, "%s: out of memory for %d pieces", src, n);
    t->ph_mask = ph_n - 1;
    for (size_t i = 0; i < ph_n; i++) t->ph[i].id = -1;
    for (int i = 0; i < 0x10000; i++) t->cp_id[i] = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    t->trie[0] = (trie_node){-1, -1, -1, 0};
    t->trie_n = 1;
    memset(t->trie_first, 0, sizeof t->trie_first);
    size_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s = strs[i];
        size_t l = lens[i];
        memcpy(t->blob + pos, s, l);
        t->blob[pos + l] = 0;
        t->off[i] = (uint32_t)pos, t->len[i] = (uint32_t)l;
        uint64_t h = hash_bytes(s, l);
        size_t k = h & t->ph_mask;
        for (; t->ph[k].id >= 0; k = (k + 1) & t->ph_mask) {
            int32_t o = t->ph[k].id;
            if (t->len[o] == l && memcmp(t->blob + t->off[o], s, l) == 0)
                return gt_errf(err, errn, "%s: duplicate piece \"%s\" (ids %d and %d)", src, t->blob + t->off[o],
                            o, i);
        }
        t->ph[k] = (piece_slot){i, (uint32_t)(h >> 32), (uint32_t)pos, (uint32_t)l};
        pos += l + 1;
        uint32_t cp;
        if (utf8_char((const uint8_t *)s, l, &cp) == l && cp < 0x10000) t->cp_id[cp] = i;
        int ty = t->type[i];
        int b = parse_byte_piece(s, l);
        t->byte_of[i] = (int16_t)((ty == GT_PIECE_BYTE || t->use_merges) ? b : -1);
        if (ty == GT_PIECE_BYTE) {
            if (b < 0)
                return gt_errf(err, errn, "%s: BYTE piece %d \"%s\" is not of the form <0xNN>", src, i,
                            t->blob + t->off[i]);
            if (t->byte_id[b] < 0) t->byte_id[b] = i;
        }
        if (ty == GT_PIECE_UNUSED) t->has_unused = true;
        if ((ty == GT_PIECE_CONTROL || ty == GT_PIECE_UNKNOWN || ty == GT_PIECE_USER_DEFINED) &&
            trie_add(t, s, l, i))
            return gt_errf(err, errn, "%s: out of memory for the special-piece trie", src);
    }
    return 0;
}

static int32_t find_any(const gt_tokenizer *t, const char *a, const char *b) {
    int32_t id = piece_find(t, a, strlen(a));
    if (id < 0 && b) id = piece_find(t, b, strlen(b));
    return id;
}

static void set_default_specials(gt_tokenizer *t) {
    t->bos = find_any(t, "<bos>", "<s>");
    t->eos = find_any(t, "<eos>", "</s>");
    t->pad = find_any(t, "<pad>", NULL);
}

static int add_op(text_op *ops, int *n, int kind, const char *pat, size_t pat_len, const char *rep,
                  size_t rep_len) {
    if (*n == MAX_OPS) return -2;
    text_op *o = &ops[*n];
    o->kind = kind;
    o->pat = pat ? memdup0(pat, pat_len) : NULL;
    o->rep = memdup0(rep, rep_len);
    o->pat_len = pat_len, o->rep_len = rep_len;
    if ((pat && !o->pat) || !o->rep) {
        free(o->pat);
        free(o->rep);
        return -1;
    }
    (*n)++;
    return 0;
}

static void free_ops(text_op *ops, int n) {
    for (int i = 0; i < n; i++) {
        free(ops[i].pat);
        free(ops[i].rep);
    }
}

void gt_tok_free(gt_tokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->byte_of);
    free(t->cp_id);
    free(t->ph);
    free(t->mt);
    free(t->bloom);
    free(t->trie);
    free_ops(t->norm, t->n_norm);
    free_ops(t->dec, t->n_dec);
    free(t->split_pat);
    free(t->dec_strip);
    free(t);
}

static inline uint32_t score_prio(float s) {
    uint32_t u;
    memcpy(&u, &s, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* order-preserving */
    return ~u;                                      /* higher score pops first */
}

/* Pieces a SentencePiece BPE merge may produce (its pieces_ map; control, unknown and byte
 * pieces are reserved). */
static inline bool spm_mergeable(int ty) {
    return ty == GT_PIECE_NORMAL || ty == GT_PIECE_USER_DEFINED || ty == GT_PIECE_UNUSED;
}

/* SentencePiece merges any two adjacent symbols whose text is a mergeable piece, best score
 * first. Symbols that are pieces are matched here by id: every split, at a character boundary,
 * of every mergeable piece into two pieces goes into the pair table with that piece's score as
 * priority, which is what looking the concatenated text up would find. */
typedef struct { merge_slot *p; size_t n, cap; bool oom; } pair_list;

static void pair_list_add(pair_list *l, merge_slot e) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 4096;
        merge_slot *np = realloc(l->p, nc * sizeof *np);
        if (!np) {
            l->oom = true;
            return;
        }
        l->p = np, l->cap = nc;
    }
    l->p[l->n++] = e;
}

/* The splits of pieces [i0, i1) into out (both halves looked up in batches). */
static void collect_splits(const gt_tokenizer *t, int32_t i0, int32_t i1, pair_list *out) {
    enum { MAXQ = 512 };
    piece_query q[MAXQ];
    int32_t owner[MAXQ / 2];
    size_t nq = 0;
    for (int32_t i = i0; i <= i1; i++) {
        /* flush when the next piece might not fit, and after the last one */
        size_t l = i < i1 ? t->len[i] : 0;
        if (nq && (i == i1 || nq + 2 * l > MAXQ)) {
            piece_find_many(t, q, nq);
            for (size_t k = 0; k < nq; k += 2)
                if (q[k].id >= 0 && q[k + 1].id >= 0)
                    pair_list_add(out, (merge_slot){merge_key(q[k].id, q[k + 1].id),
                                                    score_prio(t->score[owner[k / 2]]), owner[k / 2]});
            nq = 0;
        }
        if (i == i1 || !spm_mergeable(t->type[i]) || 2 * l > MAXQ) continue;
        const char *p = t->blob + t->off[i];
        for (size_t k = 1; k < l; k++) {
            if (((uint8_t)p[k] & 0xC0) == 0x80) continue; /* not a character boundary */
            owner[nq / 2] = i;
            q[nq++] = (piece_query){.s = p, .n = k};
            q[nq++] = (piece_query){.s = p + k, .n = l - k};
        }
    }
}

static int build_pair_table(gt_tokenizer *t, const char *src, char *err, size_t errn) {
    int nt = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && t->n > 50000) nt = omp_get_max_threads();
#endif
    if (nt > 64) nt = 64;
    pair_list lists[64];
    memset(lists, 0, sizeof lists);
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
    for (int k = 0; k < nt; k++)
        collect_splits(t, (int32_t)((int64_t)t->n * k / nt), (int32_t)((int64_t)t->n * (k + 1) / nt),
                       &lists[k]);
    /* Very long pieces (more than 255 characters) do not fit a batch: one at a time. */
    for (int32_t i = 0; i < t->n; i++) {
        size_t l = t->len[i];
        if (!spm_mergeable(t->type[i]) || 2 * l <= 512) continue;
        const char *p = t->blob + t->off[i];
        for (size_t k = 1; k < l; k++) {
            if (((uint8_t)p[k] & 0xC0) == 0x80) continue;
            int32_t a = piece_find(t, p, k), b = a < 0 ? -1 : piece_find(t, p + k, l - k);
            if (b >= 0) pair_list_add(&lists[0], (merge_slot){merge_key(a, b), score_prio(t->score[i]), i});
        }
    }
    size_t m = 0;
    bool oom = false;
    for (int k = 0; k < nt; k++) m += lists[k].n, oom |= lists[k].oom;
    int rc = 0;
    if (oom || merge_table_alloc(t, m)) rc = gt_errf(err, errn, "%s: out of memory for the pair table", src);
    for (int k = 0; k < nt; k++) {
        for (size_t e = 0; !rc && e < lists[k].n; e++)
            merge_put(t, lists[k].p[e].key, lists[k].p[e].prio, lists[k].p[e].id);
        free(lists[k].p);
    }
    return rc;
}

/* SentencePiece-style text handling: spaces as U+2581 and the same back on decode. */
static int set_spm_text_rules(gt_tokenizer *t, bool escape, bool dummy, bool remove_ws) {
    t->spm_dummy = dummy;
    t->spm_remove_ws = remove_ws;
    t->dec_bytes = true;
    t->fuse_unk = true;
    if (escape && (add_op(t->norm, &t->n_norm, OP_REPLACE, " ", 1, "\xE2\x96\x81", 3) ||
                   add_op(t->dec, &t->n_dec, OP_REPLACE, "\xE2\x96\x81", 3, " ", 1)))
        return -1;
    if (dummy) {
        t->dec_strip = memdup0(" ", 1);
        if (!t->dec_strip) return -1;
        t->dec_strip_len = 1, t->dec_strip_start = 1;
    }
    return 0;
}

/* ================================================================ tokenizer.json */

static const char *jstr(json_t *o, const char *key, size_t *len) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return NULL;
    if (len) *len = json_string_length(v);
    return json_string_value(v);
}

/* A JSON value that must be a bool (absent -> dflt); -1 when it is something else. */
static int jbool(json_t *o, const char *key, bool dflt) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return dflt;
    if (!json_is_boolean(v)) return -1;
    return json_is_true(v);
}

/* pattern: {"String": "..."}; Regex patterns are refused. */
static const char *json_pattern(json_t *o, size_t *len, const char **kind) {
    json_t *p = json_object_get(o, "pattern");
    *kind = "missing";
    if (!json_is_object(p)) return NULL;
    json_t *s = json_object_get(p, "String");
    if (json_is_string(s)) {
        *len = json_string_length(s);
        return json_string_value(s);
    }
    *kind = json_object_get(p, "Regex") ? "Regex" : "unknown";
    return NULL;
}

static int parse_normalizer(gt_tokenizer *t, json_t *j, const char *where, const char *src, char *err,
                            size_t errn) {
    if (!j || json_is_null(j)) return 0;
    const char *type = jstr(j, "type", NULL);
    if (!type) return gt_errf(err, errn, "%s: %s: missing \"type\"", src, where);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr)) return gt_errf(err, errn, "%s: %s.normalizers: expected an array", src, where);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
            if (parse_normalizer(t, json_array_get(arr, i), w, src, err, errn)) return -1;
        }
        return 0;
    }
    int rc;
    if (!strcmp(type, "Replace")) {
        size_t pl = 0, cl = 0;
        const char *kind, *pat = json_pattern(j, &pl, &kind), *content = jstr(j, "content", &cl);
        if (!pat)
            return gt_errf(err, errn, "%s: %s: Replace with a %s pattern is not supported (String only)", src,
                        where, kind);
        if (!pl) return gt_errf(err, errn, "%s: %s: Replace with an empty pattern", src, where);
        if (!content) return gt_errf(err, errn, "%s: %s.content: expected a string", src, where);
        rc = add_op(t->norm, &t->n_norm, OP_REPLACE, pat, pl, content, cl);
    } else if (!strcmp(type, "Prepend")) {
        size_t cl = 0;
        const char *content = jstr(j, "prepend", &cl);
        if (!content) return gt_errf(err, errn, "%s: %s.prepend: expected a string", src, where);
        rc = add_op(t->norm, &t->n_norm, OP_PREPEND, NULL, 0, content, cl);
    } else {
        return gt_errf(err, errn, "%s: %s: normalizer type \"%s\" is not supported (supported: Replace with "
                    "a String pattern, Prepend, Sequence)", src, where, type);
    }
    if (rc == -2) return gt_errf(err, errn, "%s: %s: more than %d normalizer steps", src, where, MAX_OPS);
    if (rc) return gt_errf(err, errn, "%s: out of memory", src);
    return 0;
}

static int parse_pre_tokenizer(gt_tokenizer *t, json_t *j, const char *src, char *err, size_t errn) {
    if (!j || json_is_null(j)) return 0;
    const char *type = jstr(j, "type", NULL);
    if (!type) return gt_errf(err, errn, "%s: pre_tokenizer: missing \"type\"", src);
    if (strcmp(type, "Split"))
        return gt_errf(err, errn, "%s: pre_tokenizer type \"%s\" is not supported (supported: Split with a "
                    "String pattern)", src, type);
    size_t pl = 0;
    const char *kind, *pat = json_pattern(j, &pl, &kind);
    if (!pat)
        return gt_errf(err, errn, "%s: pre_tokenizer: Split with a %s pattern is not supported (String only)",
                    src, kind);
    if (!pl) return gt_errf(err, errn, "%s: pre_tokenizer: Split with an empty pattern", src);
    if (jbool(j, "invert", false) != 0)
        return gt_errf(err, errn, "%s: pre_tokenizer: Split with invert is not supported", src);
    const char *beh = jstr(j, "behavior", NULL);
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    int b = -1;
    for (int i = 0; beh && i < 5; i++)
        if (!strcmp(beh, names[i])) b = i;
    if (b < 0)
        return gt_errf(err, errn, "%s: pre_tokenizer.behavior: \"%s\" is not a Split behaviour", src,
                    beh ? beh : "(missing)");
    /* After a normalizer that replaces every occurrence of a one-character pattern (Gemma:
     * " " -> U+2581) the split can never fire: drop it. */
    uint32_t cp;
    if (utf8_char((const uint8_t *)pat, pl, &cp) == pl) {
        int last = -1;
        for (int i = 0; i < t->n_norm; i++)
            if (t->norm[i].kind == OP_REPLACE && t->norm[i].pat_len == pl && !memcmp(t->norm[i].pat, pat, pl))
                last = i;
        bool reintroduced = false;
        for (int i = last; last >= 0 && i < t->n_norm; i++)
            if (memmem(t->norm[i].rep, t->norm[i].rep_len, pat, pl)) reintroduced = true;
        if (last >= 0 && !reintroduced) return 0;
    }
    t->split_pat = memdup0(pat, pl);
    if (!t->split_pat) return gt_errf(err, errn, "%s: out of memory", src);
    t->split_len = pl;
    t->split_behavior = b;
    return 0;
}

static int parse_decoder_step(gt_tokenizer *t, json_t *j, const char *where, int *stage, const char *src,
                              char *err, size_t errn) {
    const char *type = jstr(j, "type", NULL);
    if (!type) return gt_errf(err, errn, "%s: %s: missing \"type\"", src, where);
    if (!strcmp(type, "Sequence") && *stage == -1) {
        json_t *arr = json_object_get(j, "decoders");
        if (!json_is_array(arr)) return gt_errf(err, errn, "%s: %s.decoders: expected an array", src, where);
        *stage = 0;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.decoders[%zu]", where, i);
            if (parse_decoder_step(t, json_array_get(arr, i), w, stage, src, err, errn)) return -1;
        }
        return 0;
    }
    if (*stage < 0) *stage = 0;
    if (!strcmp(type, "Replace")) {
        if (*stage > 0)
            return gt_errf(err, errn, "%s: %s: Replace after ByteFallback/Fuse/Strip is not supported", src,
                        where);
        size_t pl = 0, cl = 0;
        const char *kind, *pat = json_pattern(j, &pl, &kind), *content = jstr(j, "content", &cl);
        if (!pat)
            return gt_errf(err, errn, "%s: %s: Replace with a %s pattern is not supported (String only)", src,
                        where, kind);
        if (!pl || !content)
            return gt_errf(err, errn, "%s: %s: Replace needs a non-empty pattern and a content string", src,
                        where);
        int rc = add_op(t->dec, &t->n_dec, OP_REPLACE, pat, pl, content, cl);
        if (rc == -2) return gt_errf(err, errn, "%s: %s: more than %d decoder steps", src, where, MAX_OPS);
        if (rc) return gt_errf(err, errn, "%s: out of memory", src);
    } else if (!strcmp(type, "ByteFallback")) {
        if (*stage > 0)
            return gt_errf(err, errn, "%s: %s: ByteFallback after Fuse/Strip is not supported", src, where);
        t->dec_bytes = true;
        *stage = 1;
    } else if (!strcmp(type, "Fuse")) {
        if (*stage > 1) return gt_errf(err, errn, "%s: %s: Fuse after Strip is not supported", src, where);
        *stage = 2;
    } else if (!strcmp(type, "Strip")) {
        /* On the fused text only: a Strip before Fuse would act on every piece. */
        if (*stage != 2) return gt_errf(err, errn, "%s: %s: Strip is supported only after Fuse", src, where);
        size_t cl = 0;
        const char *content = jstr(j, "content", &cl);
        json_t *st = json_object_get(j, "start"), *sp = json_object_get(j, "stop");
        uint32_t cp;
        if (!content || !cl || utf8_char((const uint8_t *)content, cl, &cp) != cl || !json_is_integer(st) ||
            !json_is_integer(sp) || json_integer_value(st) < 0 || json_integer_value(sp) < 0 ||
            json_integer_value(st) > 1000 || json_integer_value(sp) > 1000)
            return gt_errf(err, errn, "%s: %s: Strip needs a one-character content and small start/stop counts",
                        src, where);
        t->dec_strip = memdup0(content, cl);
        if (!t->dec_strip) return gt_errf(err, errn, "%s: out of memory", src);
        t->dec_strip_len = cl;
        t->dec_strip_start = (int)json_integer_value(st);
        t->dec_strip_stop = (int)json_integer_value(sp);
        *stage = 3;
    } else {
        return gt_errf(err, errn,
                    "%s: %s: decoder type \"%s\" is not supported (supported: Replace, ByteFallback, "
                    "Fuse, Strip, Sequence)",
                    src, where, type);
    }
    return 0;
}

/* Merges come as ["a", "b"] pairs or, in older files, "a b" strings. */
static int merge_parts(json_t *m, const char **a, size_t *al, const char **b, size_t *bl) {
    if (json_is_array(m) && json_array_size(m) == 2) {
        json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
        if (!json_is_string(x) || !json_is_string(y)) return -1;
        *a = json_string_value(x), *al = json_string_length(x);
        *b = json_string_value(y), *bl = json_string_length(y);
        return 0;
    }
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) return -1;
        *a = s, *al = (size_t)(sp - s);
        *b = sp + 1, *bl = n - *al - 1;
        return 0;
    }
    return -1;
}

/* model.vocab and model.merges, possibly parsed in slices (in file order). */
#define MAX_PARTS 8
typedef struct {
    json_t *vocab[MAX_PARTS], *merges[MAX_PARTS];
    int nv, nm;
} hf_parts;

/* Resolves merges [r0, r0+k) of one part into (left, right, result) ids: -1 not in the
 * vocabulary, -2 not a merge. cat is scratch for the concatenations. */
static int resolve_merges(const gt_tokenizer *t, json_t *arr, size_t i0, size_t k, int32_t *res, char **cat,
                          size_t *cat_cap) {
    enum { BATCH = 256 };
    piece_query q[3 * BATCH];
    size_t need = 0;
    for (size_t j = 0; j < k; j++) {
        const char *a = "", *b = "";
        size_t al = 0, bl = 0;
        if (merge_parts(json_array_get(arr, i0 + j), &a, &al, &b, &bl)) res[3 * j] = -2;
        else res[3 * j] = 0;
        q[3 * j] = (piece_query){.s = a, .n = al};
        q[3 * j + 1] = (piece_query){.s = b, .n = bl};
        need += al + bl;
    }
    if (need > *cat_cap) {
        char *nc = realloc(*cat, 2 * need);
        if (!nc) return -1;
        *cat = nc, *cat_cap = 2 * need;
    }
    char *c = *cat;
    for (size_t j = 0; j < k; j++) {
        memcpy(c, q[3 * j].s, q[3 * j].n);
        memcpy(c + q[3 * j].n, q[3 * j + 1].s, q[3 * j + 1].n);
        q[3 * j + 2] = (piece_query){.s = c, .n = q[3 * j].n + q[3 * j + 1].n};
        c += q[3 * j + 2].n;
    }
    piece_find_many(t, q, 3 * k);
    for (size_t j = 0; j < k; j++)
        if (res[3 * j] != -2)
            res[3 * j] = q[3 * j].id, res[3 * j + 1] = q[3 * j + 1].id, res[3 * j + 2] = q[3 * j + 2].id;
    return 0;
}

static int load_merges(gt_tokenizer *t, const hf_parts *parts, const char *src, char *err, size_t errn) {
    enum { BATCH = 256 };
    size_t m = 0, nb = 0;
    for (int p = 0; p < parts->nm; p++) {
        size_t pm = json_array_size(parts->merges[p]);
        m += pm, nb += (pm + BATCH - 1) / BATCH;
    }
    if (m > INT32_MAX / 2) return gt_errf(err, errn, "%s: model.merges: too many merges (%zu)", src, m);
    int32_t *res = malloc((3 * m + 1) * sizeof *res);
    struct batch { int part; size_t i0, r0, k; } *bt = malloc((nb + 1) * sizeof *bt);
    if (merge_table_alloc(t, m) || !res || !bt) {
        free(res);
        free(bt);
        return gt_errf(err, errn, "%s: out of memory for %zu merges", src, m);
    }
    nb = 0;
    for (int p = 0, r = 0; p < parts->nm; p++) {
        size_t pm = json_array_size(parts->merges[p]);
        for (size_t i = 0; i < pm; i += BATCH, nb++) {
            bt[nb] = (struct batch){p, i, (size_t)r + i, pm - i < BATCH ? pm - i : BATCH};
        }
        r += (int)pm;
    }
    /* The lookups only read the piece table: resolve batches in parallel. */
    int oom = 0;
#pragma omp parallel if (nb > 64) reduction(| : oom)
    {
        char *cat = NULL;
        size_t cat_cap = 0;
#pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < nb; i++)
            oom |= resolve_merges(t, parts->merges[bt[i].part], bt[i].i0, bt[i].k, res + 3 * bt[i].r0, &cat,
                                  &cat_cap);
        free(cat);
    }
    int rc = oom ? gt_errf(err, errn, "%s: out of memory", src) : 0;
    /* Scores for a SentencePiece export: -rank of the first merge making a piece. */
    for (int32_t i = 0; i < t->n; i++) t->score[i] = NAN;
    for (size_t r = 0; r < m && !rc; r++) {
        int32_t ia = res[3 * r], ib = res[3 * r + 1], ic = res[3 * r + 2];
        if (ia < 0 || ib < 0 || ic < 0) {
            size_t p = 0, i = r;
            while (i >= json_array_size(parts->merges[p])) i -= json_array_size(parts->merges[p++]);
            const char *a, *b;
            size_t al, bl;
            if (ia == -2 || merge_parts(json_array_get(parts->merges[p], i), &a, &al, &b, &bl)) {
                rc = gt_errf(err, errn,
                          "%s: model.merges[%zu]: expected [\"left\", \"right\"] or \"left right\"", src, r);
            } else {
                rc = gt_errf(err, errn, "%s: model.merges[%zu]: \"%.*s%.*s\" is not in the vocabulary", src, r,
                          (int)(ia < 0 ? al : ib < 0 ? 0 : al), a, (int)(ia < 0 ? 0 : bl), b);
            }
            break;
        }
        if (r + 16 < m && res[3 * (r + 16)] >= 0)
            __builtin_prefetch(&t->mt[merge_home(t, merge_key(res[3 * (r + 16)], res[3 * (r + 16) + 1]))]);
        /* Never build control, unknown or byte pieces out of text (SentencePiece cannot either). */
        int ty = t->type[ic];
        if (ty == GT_PIECE_CONTROL || ty == GT_PIECE_UNKNOWN || ty == GT_PIECE_BYTE) continue;
        if (isnan(t->score[ic])) t->score[ic] = -(float)r;
        merge_put(t, merge_key(ia, ib), (uint32_t)r,
                  ic); /* a repeated pair: the later rank wins, as in tokenizers */
    }
    free(res);
    free(bt);
    for (int32_t i = 0; i < t->n; i++)
        if (isnan(t->score[i])) t->score[i] = t->type[i] == GT_PIECE_NORMAL ? -(float)(m + 1) : 0.0f;
    return rc;
}

static int load_hf_root(gt_tokenizer *t, json_t *root, const hf_parts *parts, const char *src, char *err,
                        size_t errn) {
    if (!json_is_object(root)) return gt_errf(err, errn, "%s: expected a JSON object at the top level", src);
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return gt_errf(err, errn, "%s: model: expected an object", src);
    const char *mtype = jstr(model, "type", NULL);
    if (mtype ? strcmp(mtype, "BPE") != 0 : !json_object_get(model, "merges"))
        return gt_errf(err, errn, "%s: model.type: \"%s\" is not supported (BPE only)", src,
                    mtype ? mtype : "(missing)");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return gt_errf(err, errn, "%s: model.dropout: BPE dropout is not supported", src);
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(model, keys[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return gt_errf(err, errn, "%s: model.%s is not supported", src, keys[i]);
    }
    int bf = jbool(model, "byte_fallback", false), fu = jbool(model, "fuse_unk", false);
    int im = jbool(model, "ignore_merges", false);
    if (bf < 0 || fu < 0 || im < 0)
        return gt_errf(err, errn, "%s: model: byte_fallback, fuse_unk and ignore_merges must be booleans", src);
    t->byte_fallback = bf, t->fuse_unk = fu, t->ignore_merges = im;
    t->use_merges = true;
    for (int p = 0; p < parts->nv; p++)
        if (!json_is_object(parts->vocab[p]))
            return gt_errf(err, errn, "%s: model.vocab: expected an object", src);
    for (int p = 0; p < parts->nm; p++)
        if (!json_is_array(parts->merges[p]))
            return gt_errf(err, errn, "%s: model.merges: expected an array", src);
    if (!parts->nv || !parts->nm) return gt_errf(err, errn, "%s: model: missing vocab or merges", src);
    json_t *unk_j = json_object_get(model, "unk_token");
    if (unk_j && !json_is_null(unk_j) && !json_is_string(unk_j))
        return gt_errf(err, errn, "%s: model.unk_token: expected a string or null", src);
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return gt_errf(err, errn, "%s: added_tokens: expected an array", src);
    size_t n_added = json_array_size(added);

    /* Size: the largest id of the vocabulary and of the added tokens. */
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    for (int p = 0; p < parts->nv; p++)
        json_object_foreach(parts->vocab[p], key, val) {
            if (!json_is_integer(val) || json_integer_value(val) < 0 ||
                json_integer_value(val) >= INT32_MAX / 2)
                return gt_errf(err, errn, "%s: model.vocab[\"%s\"]: expected a non-negative integer id", src,
                            key);
            if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
        }
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX / 2 || !json_is_string(json_object_get(a, "content")))
            return gt_errf(err, errn, "%s: added_tokens[%zu]: expected {\"id\": N, \"content\": \"...\", ...}",
                        src, i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return gt_errf(err, errn, "%s: model.vocab is empty", src);
    int32_t n = (int32_t)(max_id + 1);
    const char **strs = calloc((size_t)n, sizeof *strs);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    uint8_t *added_kind = calloc((size_t)n, 1); /* 0: not added, 1: added, 2: added special */
    t->type = malloc((size_t)n);
    t->score = malloc((size_t)n * sizeof *t->score);
    int rc = -1;
    if (!strs || !lens || !added_kind || !t->type || !t->score) {
        gt_errf(err, errn, "%s: out of memory for %d pieces", src, n);
        goto out;
    }
    for (int p = 0; p < parts->nv; p++)
        for (void *iter = json_object_iter(parts->vocab[p]); iter;
             iter = json_object_iter_next(parts->vocab[p], iter)) {
            int32_t id = (int32_t)json_integer_value(json_object_iter_value(iter));
            const char *k = json_object_iter_key(iter);
            if (strs[id]) {
                gt_errf(err, errn, "%s: model.vocab: id %d is given to both \"%s\" and \"%s\"", src, id,
                     strs[id], k);
                goto out;
            }
            strs[id] = k, lens[id] = json_object_iter_key_len(iter);
        }
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        size_t cl;
        const char *content = jstr(a, "content", &cl);
        int special = jbool(a, "special", false), norm = jbool(a, "normalized", false);
        const char *flags[] = {"single_word", "lstrip", "rstrip"};
        for (int f = 0; f < 3; f++)
            if (jbool(a, flags[f], false) != 0) {
                gt_errf(err, errn, "%s: added_tokens[%zu] \"%s\": %s is not supported", src, i, content,
                     flags[f]);
                goto out;
            }
        if (special < 0 || norm < 0) {
            gt_errf(err, errn, "%s: added_tokens[%zu]: special and normalized must be booleans", src, i);
            goto out;
        }
        if (strs[id] && (lens[id] != cl || memcmp(strs[id], content, cl))) {
            gt_errf(err, errn, "%s: added_tokens[%zu]: id %d is \"%s\" here but \"%s\" in model.vocab", src, i,
                 id, content, strs[id]);
            goto out;
        }
        strs[id] = content, lens[id] = cl;
        added_kind[id] = special ? 2 : 1;
    }
    const char *unk_s = json_is_string(unk_j) ? json_string_value(unk_j) : NULL;
    size_t unk_l = unk_s ? json_string_length(unk_j) : 0;
    for (int32_t i = 0; i < n; i++) {
        if (!strs[i]) {
            gt_errf(err, errn, "%s: id %d is missing from model.vocab and added_tokens", src, i);
            goto out;
        }
        bool is_unk = unk_s && lens[i] == unk_l && !memcmp(strs[i], unk_s, unk_l);
        uint8_t ty = GT_PIECE_NORMAL;
        if (is_unk) ty = GT_PIECE_UNKNOWN;
        else if (added_kind[i] == 2) ty = GT_PIECE_CONTROL;
        else if (added_kind[i] == 1) ty = GT_PIECE_USER_DEFINED;
        else if (t->byte_fallback && is_byte_piece_upper(strs[i], lens[i]))
            ty = GT_PIECE_BYTE; /* tokenizers looks bytes up as "<0x%02X>" */
        t->type[i] = ty;
        t->score[i] = 0;
    }
    if (tok_build(t, strs, lens, n, src, err, errn)) goto out;
    if (unk_s) {
        t->unk = piece_find(t, unk_s, unk_l);
        if (t->unk < 0) {
            gt_errf(err, errn, "%s: model.unk_token \"%s\" is not in the vocabulary", src, unk_s);
            goto out;
        }
    }
    if (parse_normalizer(t, json_object_get(root, "normalizer"), "normalizer", src, err, errn)) goto out;
    /* Added tokens marked "normalized" are matched on normalized text by tokenizers; matching
     * them on the raw text is the same only when the normalizer leaves them alone. */
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        size_t cl;
        const char *content = jstr(a, "content", &cl);
        for (int o = 0; jbool(a, "normalized", false) == 1 && o < t->n_norm; o++)
            if (t->norm[o].kind == OP_PREPEND || memmem(content, cl, t->norm[o].pat, t->norm[o].pat_len) ||
                memmem(content, cl, t->norm[o].rep, t->norm[o].rep_len)) {
                gt_errf(err, errn, "%s: added_tokens[%zu] \"%s\": normalized matching of a token the normalizer "
                     "changes is not supported", src, i, content);
                goto out;
            }
    }
    if (parse_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), src, err, errn)) goto out;
    json_t *dec = json_object_get(root, "decoder");
    if (!dec || json_is_null(dec)) {
        gt_errf(err, errn, "%s: decoder: missing (expected Replace/ByteFallback/Fuse steps)", src);
        goto out;
    }
    int stage = -1;
    if (parse_decoder_step(t, dec, "decoder", &stage, src, err, errn)) goto out;
    if (load_merges(t, parts, src, err, errn)) goto out;
    set_default_specials(t);
    rc = 0;
out:
    free(strs);
    free(lens);
    free(added_kind);
    return rc;
}

/* Parsing tokenizer.json builds ~2 million jansson values (4-5x the file in memory); with the
 * system allocator their malloc and free cost as much as the parse. While this thread parses,
 * jansson allocates from a private arena instead, dropped whole afterwards. jansson's allocator
 * hooks are process-wide, so they are installed once and route every other thread (and this one
 * outside the parse) to the allocator that was there before. Sanitizer builds skip the arena so
 * that ASan still sees every jansson allocation. */
typedef struct arena_chunk { struct arena_chunk *next; size_t used, cap; max_align_t data[]; } arena_chunk;
typedef struct { arena_chunk *head; size_t next_cap; } json_arena;

static _Thread_local json_arena *tl_arena;
static json_malloc_t base_malloc;
static json_free_t base_free;
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;

static void *hook_malloc(size_t n) {
    json_arena *a = tl_arena;
    if (!a) return base_malloc(n);
    if (n > SIZE_MAX / 4) return NULL;
    n = (n + 15) & ~(size_t)15;
    arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = a->next_cap > n ? a->next_cap : n;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head, c->used = 0, c->cap = cap;
        a->head = c;
        a->next_cap = cap * 2;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void hook_free(void *p) {
    json_arena *a = tl_arena;
    for (arena_chunk *c = a ? a->head : NULL; c; c = c->next)
        if ((char *)p >= (char *)c->data && (char *)p < (char *)c->data + c->cap) return;
    base_free(p);
}

static void hook_install(void) {
    json_get_alloc_funcs(&base_malloc, &base_free);
    json_set_alloc_funcs(hook_malloc, hook_free);
}

static void arena_drop(json_arena *a) {
    while (a->head) {
        arena_chunk *c = a->head;
        a->head = c->next;
        free(c);
    }
}

#if defined(__SANITIZE_ADDRESS__)
#define TOK_JSON_ARENA 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TOK_JSON_ARENA 0
#endif
#endif
#ifndef TOK_JSON_ARENA
#define TOK_JSON_ARENA 1
#endif

/* ---------------------------------------------------------------- parallel parse
 * jansson parses every byte; this only finds where model.vocab and model.merges start and end
 * and where their elements are separated (strings and brackets, nothing else), so that
 * independent slices can be parsed at once: a skeleton (the file with both emptied) and each
 * container cut into k slices. Anything unexpected gives up, and the file is parsed whole. */

typedef struct { size_t start, end; } span;

static size_t skip_ws(const char *b, size_t n, size_t i) {
    while (i < n && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) i++;
    return i;
}

/* End of the string at b[i] == '"', or 0. */
static inline size_t skip_string(const char *b, size_t n, size_t i) {
    for (i++; i < n; i++) {
        if (b[i] == '\\') i++;
        else if (b[i] == '"') return i + 1;
    }
    return 0;
}

/* End of the value at b[i], or 0. */
static size_t skip_value(const char *b, size_t n, size_t i) {
    if (i >= n) return 0;
    if (b[i] == '"') return skip_string(b, n, i);
    if (b[i] == '{' || b[i] == '[') {
        int depth = 0;
        for (; i < n; i++) {
            char c = b[i];
            if (c == '"') {
                size_t e = skip_string(b, n, i);
                if (!e) return 0;
                i = e - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                return i + 1;
            }
        }
        return 0;
    }
    size_t s = i;
    while (i < n && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' &&
           b[i] != '\r' && b[i] != '\t')
        i++;
    return i > s ? i : 0;
}

/* Start of the value of member `key` (spelled without escapes) of the object at b[i] == '{',
 * or 0. The value itself is not scanned. */
static size_t find_member(const char *b, size_t n, size_t i, const char *key) {
    size_t kl = strlen(key);
    if (i >= n || b[i] != '{') return 0;
    for (i = skip_ws(b, n, i + 1); i < n && b[i] == '"';) {
        size_t ke = skip_string(b, n, i);
        if (!ke) return 0;
        bool hit = ke - i - 2 == kl && !memcmp(b + i + 1, key, kl);
        i = skip_ws(b, n, ke);
        if (i >= n || b[i] != ':') return 0;
        i = skip_ws(b, n, i + 1);
        if (hit) return i;
        size_t ve = skip_value(b, n, i);
        if (!ve) return 0;
        i = skip_ws(b, n, ve);
        if (i >= n || b[i] != ',') return 0;
        i = skip_ws(b, n, i + 1);
    }
    return 0;
}

typedef struct {
    const char *text;
    size_t len;
    char *own;        /* text, when it is a copy */
    json_t *val;
    json_arena arena;
    json_error_t je;
} parse_job;

static bool job_copy(parse_job *j, char open, const char *body, size_t n, char close) {
    j->own = malloc(n + 2);
    if (!j->own) return false;
    j->own[0] = open;
    memcpy(j->own + 1, body, n);
    j->own[n + 1] = close;
    j->text = j->own, j->len = n + 2;
    return true;
}

/* Cuts the container starting at b[start] into at most k jobs at top-level commas, aiming at
 * slices of about `hint` bytes; returns the count and sets *end, or returns 0 (nothing left
 * allocated) when the text does not look as expected. */
static int cut_container(const char *b, size_t n, size_t start, size_t hint, int k, parse_job *jobs,
                         size_t *end) {
    char open = b[start], close = open == '{' ? '}' : ']';
    bool obj = open == '{';
    size_t i = skip_ws(b, n, start + 1), first = i;
    int made = 0;
    if (i < n && b[i] == close) goto fail; /* empty: nothing to slice */
    while (i < n) {
        if (obj) {
            size_t ke = b[i] == '"' ? skip_string(b, n, i) : 0;
            if (!ke) break;
            i = skip_ws(b, n, ke);
            if (i >= n || b[i] != ':') break;
            i = skip_ws(b, n, i + 1);
        }
        size_t ve = skip_value(b, n, i);
        if (!ve) break;
        i = skip_ws(b, n, ve);
        if (i >= n) break;
        bool last = b[i] == close;
        if (!last && b[i] != ',') break;
        if (last || (made < k - 1 && i - first >= hint)) {
            if (!job_copy(&jobs[made], open, b + first, i - first, close)) break;
            made++;
            if (last) {
                *end = i + 1;
                return made;
            }
            first = i + 1;
        }
        i = skip_ws(b, n, i + 1);
    }
fail:
    for (int j = 0; j < made; j++) {
        free(jobs[j].own);
        jobs[j] = (parse_job){0};
    }
    return 0;
}

static void jobs_free(parse_job *jobs, int n, bool arena) {
    for (int i = 0; i < n; i++) {
        if (arena) arena_drop(&jobs[i].arena);
        else if (jobs[i].val) json_decref(jobs[i].val);
        free(jobs[i].own);
        jobs[i] = (parse_job){0};
    }
}

/* Parses jobs[order[0..n)] in parallel, in that order of start (order NULL: 0..n-1). */
static void jobs_run(parse_job *jobs, int n, const int *order, bool arena) {
    json_decref(json_object()); /* jansson seeds its hash on the first object: do it here, once */
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (int r = 0; r < n; r++) {
        int i = order ? order[r] : r;
        if (arena) {
            jobs[i].arena.next_cap = 5 * jobs[i].len + 4096;
            tl_arena = &jobs[i].arena;
        }
        jobs[i].val =
            json_loadb(jobs[i].text, jobs[i].len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jobs[i].je);
        tl_arena = NULL;
    }
}

/* Plans and runs the sliced parse; returns the job count (root first) or 0 to parse whole. */
static int parse_sliced(const char *b, size_t n, int k, bool arena, parse_job *jobs, hf_parts *parts) {
    size_t ms = find_member(b, n, skip_ws(b, n, 0), "model");
    if (k < 2 || !ms) return 0;
    /* One pass over model's members, slicing vocab and merges on the way. */
    span sp[2] = {{0, 0}, {0, 0}};
    int cnt[2] = {0, 0}, total = 1;
    size_t i = skip_ws(b, n, ms + 1);
    while (i < n && b[i] == '"') {
        size_t ke = skip_string(b, n, i);
        if (!ke) break;
        int which = ke - i == 7 && !memcmp(b + i, "\"vocab\"", 7)    ? 0
                    : ke - i == 8 && !memcmp(b + i, "\"merges\"", 8) ? 1
                                                                     : -1;
        i = skip_ws(b, n, ke);
        if (i >= n || b[i] != ':') break;
        i = skip_ws(b, n, i + 1);
        size_t ve;
        if (which >= 0 && !cnt[which] && i < n && b[i] == (which ? '[' : '{')) {
            /* vocab parses about 3x slower per byte than merges: slice it finer */
            size_t hint = which ? n / (size_t)(4 * k) : n / (size_t)(8 * k);
            cnt[which] = cut_container(b, n, i, hint, MAX_PARTS, jobs + total, &ve);
            if (!cnt[which]) break;
            sp[which] = (span){i, ve};
            total += cnt[which];
        } else if (!(ve = skip_value(b, n, i))) {
            break;
        }
        i = skip_ws(b, n, ve);
        if (i < n && b[i] == ',') i = skip_ws(b, n, i + 1);
        else break;
    }
    if (!cnt[0] || !cnt[1]) {
        jobs_free(jobs, total, false);
        return 0;
    }
    /* Skeleton: both containers emptied, in file order. */
    const span *lo = sp[0].start < sp[1].start ? &sp[0] : &sp[1], *hi = lo == &sp[0] ? &sp[1] : &sp[0];
    size_t sk = n - (lo->end - lo->start) - (hi->end - hi->start) + 4;
    char *s = malloc(sk);
    if (!s) {
        jobs_free(jobs, total, false);
        return 0;
    }
    size_t o = 0;
    memcpy(s + o, b, lo->start), o += lo->start;
    s[o++] = b[lo->start], s[o++] = b[lo->end - 1];
    memcpy(s + o, b + lo->end, hi->start - lo->end), o += hi->start - lo->end;
    s[o++] = b[hi->start], s[o++] = b[hi->end - 1];
    memcpy(s + o, b + hi->end, n - hi->end), o += n - hi->end;
    jobs[0].own = s, jobs[0].text = s, jobs[0].len = o;
    /* vocab slices first: an object costs jansson far more per byte than the merges array */
    int order[1 + 2 * MAX_PARTS], no = 0;
    int v1 = sp[0].start < sp[1].start ? 1 : 1 + cnt[1], m1 = sp[0].start < sp[1].start ? 1 + cnt[0] : 1;
    for (int j = 0; j < cnt[0]; j++) order[no++] = v1 + j;
    for (int j = 0; j < cnt[1]; j++) order[no++] = m1 + j;
    order[no++] = 0;
    jobs_run(jobs, total, order, arena);
    bool ok = true;
    for (int j = 0; j < total; j++) ok &= jobs[j].val != NULL;
    json_t *m = ok ? json_object_get(jobs[0].val, "model") : NULL;
    json_t *v0 = json_object_get(m, "vocab"), *m0 = json_object_get(m, "merges");
    if (!ok || !json_is_object(v0) || json_object_size(v0) || !json_is_array(m0) || json_array_size(m0)) {
        jobs_free(jobs, total, arena);
        return 0;
    }
    parts->nv = cnt[0], parts->nm = cnt[1];
    for (int j = 0; j < cnt[0]; j++) parts->vocab[j] = jobs[v1 + j].val;
    for (int j = 0; j < cnt[1]; j++) parts->merges[j] = jobs[m1 + j].val;
    return total;
}

int gt_tok_load_hf_json(const char *path, gt_tokenizer **out, char *err, size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!path) return gt_errf(err, errn, "tokenizer: NULL path");
    size_t n;
    char *buf = read_file(path, &n, err, errn);
    if (!buf) return -1;
    int rc = gt_tok_load_hf_json_buffer(buf, n, path, out, err, errn);
    free(buf);
    return rc;
}

int gt_tok_load_hf_json_buffer(const char *buf, size_t n, const char *path, gt_tokenizer **out, char *err,
                               size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!buf || !path) return gt_errf(err, errn, "tokenizer: NULL buffer or name");
    bool arena = false;
    if (TOK_JSON_ARENA) {
        pthread_once(&hook_once, hook_install);
        json_malloc_t cur;
        json_get_alloc_funcs(&cur, NULL);
        arena = cur == hook_malloc; /* unless someone replaced the hooks since */
    }
    int k = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) k = omp_get_max_threads();
#endif
    if (k > MAX_PARTS) k = MAX_PARTS;
    parse_job jobs[1 + 2 * MAX_PARTS];
    memset(jobs, 0, sizeof jobs);
    hf_parts parts = {0};
    /* Slicing pays off only for big files with threads to spare. */
    int njobs = n > (4 << 20) ? parse_sliced(buf, n, k, arena, jobs, &parts) : 0;
    if (!njobs) {
        jobs[0].text = buf, jobs[0].len = n;
        jobs_run(jobs, 1, NULL, arena);
        njobs = 1;
    }
    json_t *root = jobs[0].val;
    gt_tokenizer *t = NULL;
    int rc;
    if (!root) {
        rc = gt_errf(err, errn, "%s:%d:%d: invalid JSON: %s", path, jobs[0].je.line, jobs[0].je.column,
                  jobs[0].je.text);
    } else if (!(t = tok_alloc())) {
        rc = gt_errf(err, errn, "%s: out of memory", path);
    } else {
        if (njobs == 1) {
            json_t *model = json_object_get(root, "model");
            parts.vocab[0] = json_object_get(model, "vocab"),
            parts.merges[0] = json_object_get(model, "merges");
            parts.nv = parts.vocab[0] != NULL, parts.nm = parts.merges[0] != NULL;
        }
        rc = load_hf_root(t, root, &parts, path, err, errn);
    }
    jobs_free(jobs, njobs, arena); /* with the arena: no json_decref walk, the memory goes whole */
    if (rc) {
        gt_tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

/* ================================================================ SentencePiece model proto */

typedef struct { const uint8_t *p, *start, *end; } pb_in;

static int pb_varint(pb_in *b, uint64_t *v) {
    uint64_t r = 0;
    for (int s = 0; s < 70; s += 7) {
        if (b->p >= b->end) return -1;
        uint8_t c = *b->p++;
        if (s == 63 && c > 1) return -1;
        r |= (uint64_t)(c & 0x7F) << s;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Next field: number, wire type, and the scalar value or the sub-range of a LEN field. */
static int pb_next(pb_in *b, uint32_t *field, int *wire, uint64_t *v, pb_in *sub, const char **why) {
    uint64_t key;
    if (pb_varint(b, &key)) return *why = "truncated field key", -1;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 536870911) return *why = "bad field number", -1;
    switch (*wire) {
    case 0:
        if (pb_varint(b, v)) return *why = "truncated varint", -1;
        return 0;
    case 1:
        if (b->end - b->p < 8) return *why = "truncated 64-bit field", -1;
        memcpy(v, b->p, 8);
        b->p += 8;
        return 0;
    case 2: {
        uint64_t n;
        if (pb_varint(b, &n) || n > (uint64_t)(b->end - b->p))
            return *why = "truncated length-delimited field", -1;
        *sub = (pb_in){b->p, b->start, b->p + n};
        b->p += n;
        return 0;
    }
    case 5: {
        if (b->end - b->p < 4) return *why = "truncated 32-bit field", -1;
        uint32_t w;
        memcpy(&w, b->p, 4);
        *v = w;
        b->p += 4;
        return 0;
    }
    default:
        return *why = "unsupported wire type (groups are not used by ModelProto)", -1;
    }
}

typedef struct {
    const char **strs;
    size_t *lens;
    float *scores;
    uint8_t *types;
    int32_t n, cap;
    int64_t model_type, unk_id, bos_id, eos_id, pad_id;
    bool has_bos_id, has_eos_id, has_pad_id, byte_fallback, ws_suffix;
    const char *piece_names[4]; /* unk, bos, eos, pad */
    size_t piece_lens[4];
    bool add_dummy, remove_ws, escape_ws;
    size_t charsmap_len, rules_len;
    const char *norm_name;
    size_t norm_name_len;
} spm_model;

#define PB_WANT(w, expect)                                                                                   \
    do {                                                                                                     \
        if ((w) != (expect)) {                                                                               \
            *why = "field with an unexpected wire type";                                                     \
            return -1;                                                                                       \
        }                                                                                                    \
    } while (0)

static int spm_piece(spm_model *m, pb_in *b, const char **why) {
    const char *s = NULL;
    size_t l = 0;
    float score = 0;
    int64_t type = GT_PIECE_NORMAL;
    while (b->p < b->end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        pb_in sub;
        if (pb_next(b, &f, &w, &v, &sub, why)) return -1;
        if (f == 1) {
            PB_WANT(w, 2);
            s = (const char *)sub.p, l = (size_t)(sub.end - sub.p);
        } else if (f == 2) {
            PB_WANT(w, 5);
            uint32_t u = (uint32_t)v;
            memcpy(&score, &u, 4);
        } else if (f == 3) {
            PB_WANT(w, 0);
            type = (int64_t)v;
        }
    }
    if (!s) return *why = "a piece without its text", -1;
    if (type < 1 || type > 6) return *why = "a piece with an unknown type", -1;
    if (isnan(score)) return *why = "a piece with a NaN score", -1;
    if (m->n == m->cap) {
        int32_t nc = m->cap ? m->cap * 2 : 1024;
        if (nc > INT32_MAX / 4) return *why = "too many pieces", -1;
        const char **ns = realloc(m->strs, (size_t)nc * sizeof *ns);
        if (ns) m->strs = ns;
        size_t *nl = realloc(m->lens, (size_t)nc * sizeof *nl);
        if (nl) m->lens = nl;
        float *nsc = realloc(m->scores, (size_t)nc * sizeof *nsc);
        if (nsc) m->scores = nsc;
        uint8_t *nt = realloc(m->types, (size_t)nc);
        if (nt) m->types = nt;
        if (!ns || !nl || !nsc || !nt) return *why = "out of memory", -1;
        m->cap = nc;
    }
    m->strs[m->n] = s, m->lens[m->n] = l, m->scores[m->n] = score, m->types[m->n] = (uint8_t)type;
    m->n++;
    return 0;
}

static int spm_trainer(spm_model *m, pb_in *b, const char **why) {
    while (b->p < b->end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        pb_in sub;
        if (pb_next(b, &f, &w, &v, &sub, why)) return -1;
        int64_t iv = (int64_t)v;
        switch (f) {
        case 3: PB_WANT(w, 0); m->model_type = iv; break;
        case 24: PB_WANT(w, 0); m->ws_suffix = v != 0; break;
        case 35: PB_WANT(w, 0); m->byte_fallback = v != 0; break;
        case 40: PB_WANT(w, 0); m->unk_id = (int32_t)iv; break;
        case 41: PB_WANT(w, 0); m->bos_id = (int32_t)iv, m->has_bos_id = true; break;
        case 42: PB_WANT(w, 0); m->eos_id = (int32_t)iv, m->has_eos_id = true; break;
        case 43: PB_WANT(w, 0); m->pad_id = (int32_t)iv, m->has_pad_id = true; break;
        case 45: case 46: case 47: case 48:
            PB_WANT(w, 2);
            m->piece_names[f - 45] = (const char *)sub.p, m->piece_lens[f - 45] = (size_t)(sub.end - sub.p);
            break;
        default: break;
        }
    }
    return 0;
}

static int spm_normalizer(spm_model *m, pb_in *b, const char **why) {
    while (b->p < b->end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        pb_in sub;
        if (pb_next(b, &f, &w, &v, &sub, why)) return -1;
        switch (f) {
        case 1:
            PB_WANT(w, 2);
            m->norm_name = (const char *)sub.p, m->norm_name_len = (size_t)(sub.end - sub.p);
            break;
        case 2: PB_WANT(w, 2); m->charsmap_len = (size_t)(sub.end - sub.p); break;
        case 3: PB_WANT(w, 0); m->add_dummy = v != 0; break;
        case 4: PB_WANT(w, 0); m->remove_ws = v != 0; break;
        case 5: PB_WANT(w, 0); m->escape_ws = v != 0; break;
        case 6: PB_WANT(w, 2); m->rules_len = (size_t)(sub.end - sub.p); break;
        default: break;
        }
    }
    return 0;
}

static int spm_model_parse(spm_model *m, const uint8_t *data, size_t n, const char **why, size_t *at) {
    pb_in b = {data, data, data + n};
    while (b.p < b.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        pb_in sub = {0};
        *at = (size_t)(b.p - data);
        if (pb_next(&b, &f, &w, &v, &sub, why)) return -1;
        if (f >= 1 && f <= 3 && w != 2) return *why = "field with an unexpected wire type", -1;
        int rc = 0;
        if (f == 1) rc = spm_piece(m, &sub, why);
        else if (f == 2) rc = spm_trainer(m, &sub, why);
        else if (f == 3) rc = spm_normalizer(m, &sub, why);
        if (rc) {
            *at = (size_t)(sub.p - data);
            return -1;
        }
    }
    return 0;
}

static int load_spm_model(gt_tokenizer *t, spm_model *m, const char *src, char *err, size_t errn) {
    if (m->n == 0) return gt_errf(err, errn, "%s: not a SentencePiece model: no pieces", src);
    if (m->model_type != 2)
        return gt_errf(err, errn, "%s: trainer_spec.model_type is %s (%lld); only BPE (2) is supported", src,
                    m->model_type == 1   ? "UNIGRAM"
                    : m->model_type == 3 ? "WORD"
                    : m->model_type == 4 ? "CHAR"
                                         : "unknown",
                    (long long)m->model_type);
    if (m->ws_suffix)
        return gt_errf(err, errn, "%s: trainer_spec.treat_whitespace_as_suffix is not supported", src);
    if (m->charsmap_len || m->rules_len)
        return gt_errf(err, errn,
                    "%s: normalizer_spec \"%.*s\" has normalization rules; only identity normalization "
                    "is supported",
                    src, (int)m->norm_name_len, m->norm_name ? m->norm_name : "");
    t->type = malloc((size_t)m->n);
    t->score = malloc((size_t)m->n * sizeof *t->score);
    if (!t->type || !t->score) return gt_errf(err, errn, "%s: out of memory", src);
    memcpy(t->type, m->types, (size_t)m->n);
    memcpy(t->score, m->scores, (size_t)m->n * sizeof *t->score);
    if (tok_build(t, m->strs, m->lens, m->n, src, err, errn) || build_pair_table(t, src, err, errn))
        return -1;
    t->byte_fallback = m->byte_fallback;
    if (set_spm_text_rules(t, m->escape_ws, m->add_dummy, m->remove_ws))
        return gt_errf(err, errn, "%s: out of memory", src);
    for (int32_t i = 0; i < t->n; i++)
        if (t->type[i] == GT_PIECE_UNKNOWN) {
            t->unk = i;
            break;
        }
    if (t->unk < 0) return gt_errf(err, errn, "%s: no piece of type UNKNOWN", src);
    /* SentencePiece finds BOS/EOS/PAD by trainer_spec's piece names; explicit ids come second. */
    static const char *dflt[4] = {"<unk>", "<s>", "</s>", "<pad>"};
    int32_t *dst[4] = {NULL, &t->bos, &t->eos, &t->pad};
    int64_t ids[4] = {m->unk_id, m->bos_id, m->eos_id, m->pad_id};
    bool has_id[4] = {false, m->has_bos_id, m->has_eos_id, m->has_pad_id};
    for (int k = 1; k < 4; k++) {
        int32_t id = m->piece_names[k] ? piece_find(t, m->piece_names[k], m->piece_lens[k])
                                       : piece_find(t, dflt[k], strlen(dflt[k]));
        if (id < 0 && has_id[k] && ids[k] >= 0 && ids[k] < t->n) id = (int32_t)ids[k];
        *dst[k] = id;
    }
    return 0;
}

int gt_tok_load_spm(const char *path, gt_tokenizer **out, char *err, size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!path) return gt_errf(err, errn, "tokenizer: NULL path");
    size_t n;
    char *buf = read_file(path, &n, err, errn);
    if (!buf) return -1;
    int rc = gt_tok_load_spm_buffer(buf, n, path, out, err, errn);
    free(buf);
    return rc;
}

int gt_tok_load_spm_buffer(const char *buf, size_t n, const char *path, gt_tokenizer **out, char *err,
                           size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!buf || !path) return gt_errf(err, errn, "tokenizer: NULL buffer or name");
    spm_model m = {0};
    m.bos_id = 1, m.eos_id = 2, m.pad_id = -1;
    m.add_dummy = m.remove_ws = m.escape_ws = true; /* proto2 defaults */
    const char *why = NULL;
    size_t at = 0;
    gt_tokenizer *t = NULL;
    int rc = -1;
    if (spm_model_parse(&m, (const uint8_t *)buf, n, &why, &at)) {
        gt_errf(err, errn, "%s: not a SentencePiece ModelProto: %s at byte %zu", path, why, at);
    } else if (!(t = tok_alloc())) {
        gt_errf(err, errn, "%s: out of memory", path);
    } else {
        rc = load_spm_model(t, &m, path, err, errn);
    }
    free(m.strs);
    free(m.lens);
    free(m.scores);
    free(m.types);
    if (rc) {
        gt_tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int gt_tok_load(const char *path, gt_tokenizer **out, char *err, size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!path) return gt_errf(err, errn, "tokenizer: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return gt_errf(err, errn, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[64];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    size_t i = 0;
    while (i < got && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    /* '{' and '[' would start protobuf groups, which a ModelProto never has */
    if (i < got && (head[i] == '{' || head[i] == '[')) return gt_tok_load_hf_json(path, out, err, errn);
    if (got >= 4 && !memcmp(head, "GGUF", 4))
        return gt_errf(err, errn, "%s: a GGUF file: read its tokenizer.ggml.* arrays and use gt_tok_from_pieces",
                    path);
    return gt_tok_load_spm(path, out, err, errn);
}

int gt_tok_from_pieces(const char *const *pieces, const float *scores, const int32_t *types, int32_t n,
                       gt_tokenizer **out, char *err, size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!pieces || n <= 0) return gt_errf(err, errn, "from_pieces: need a positive number of pieces, got %d", n);
    gt_tokenizer *t = tok_alloc();
    size_t *lens = malloc((size_t)n * sizeof *lens);
    int rc = -1;
    if (!t || !lens || !(t->type = malloc((size_t)n)) || !(t->score = malloc((size_t)n * sizeof *t->score))) {
        gt_errf(err, errn, "from_pieces: out of memory for %d pieces", n);
        goto out;
    }
    bool has_bytes = false;
    for (int32_t i = 0; i < n; i++) {
        if (!pieces[i]) {
            gt_errf(err, errn, "from_pieces: piece %d is NULL", i);
            goto out;
        }
        lens[i] = strlen(pieces[i]);
        int ty = types                                       ? types[i]
                 : parse_byte_piece(pieces[i], lens[i]) >= 0 ? GT_PIECE_BYTE
                                                             : GT_PIECE_NORMAL;
        if (ty < 1 || ty > 6) {
            gt_errf(err, errn, "from_pieces: piece %d \"%s\" has type %d (expected 1..6)", i, pieces[i], ty);
            goto out;
        }
        float s = scores ? scores[i] : 0.0f;
        if (isnan(s)) {
            gt_errf(err, errn, "from_pieces: piece %d \"%s\" has a NaN score", i, pieces[i]);
            goto out;
        }
        t->type[i] = (uint8_t)ty, t->score[i] = s;
        has_bytes |= ty == GT_PIECE_BYTE;
    }
    if (tok_build(t, pieces, lens, n, "from_pieces", err, errn) ||
        build_pair_table(t, "from_pieces", err, errn))
        goto out;
    t->byte_fallback = has_bytes;
    if (set_spm_text_rules(t, true, false, false)) {
        gt_errf(err, errn, "from_pieces: out of memory");
        goto out;
    }
    for (int32_t i = 0; i < n && t->unk < 0; i++)
        if (t->type[i] == GT_PIECE_UNKNOWN) t->unk = i;
    set_default_specials(t);
    rc = 0;
out:
    free(lens);
    if (rc) {
        gt_tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int gt_tok_set_special(gt_tokenizer *t, int32_t bos, int32_t eos, int32_t pad, char *err, size_t errn) {
    if (!t) return gt_errf(err, errn, "set_special: NULL tokenizer");
    int32_t v[3] = {bos, eos, pad};
    for (int i = 0; i < 3; i++)
        if (v[i] < -1 || v[i] >= t->n)
            return gt_errf(err, errn, "set_special: %s id %d out of range [-1, %d)",
                        i == 0   ? "bos"
                        : i == 1 ? "eos"
                                 : "pad",
                        v[i], t->n);
    t->bos = bos, t->eos = eos, t->pad = pad;
    return 0;
}

/* ---------------------------------------------------------------- writer */

typedef struct { uint8_t *p; size_t n, cap; bool oom; } pb_out;

static void pb_raw(pb_out *o, const void *d, size_t n) {
    if (o->oom) return;
    if (o->n + n > o->cap) {
        size_t nc = o->cap ? o->cap : 256;
        while (nc < o->n + n) nc *= 2;
        uint8_t *np = realloc(o->p, nc);
        if (!np) {
            o->oom = true;
            return;
        }
        o->p = np, o->cap = nc;
    }
    if (n) memcpy(o->p + o->n, d, n);
    o->n += n;
}

static void pb_uvarint(pb_out *o, uint64_t v) {
    uint8_t b[10];
    int k = 0;
    do {
        b[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_raw(o, b, (size_t)k);
}

static void pb_key(pb_out *o, uint32_t field, int wire) {
    pb_uvarint(o, ((uint64_t)field << 3) | (uint64_t)wire);
}
/* int32 fields: negative values are sign-extended to 10 bytes, as protobuf does. */
static void pb_int(pb_out *o, uint32_t field, int64_t v) { pb_key(o, field, 0), pb_uvarint(o, (uint64_t)v); }
static void pb_bytes(pb_out *o, uint32_t field, const void *d, size_t n) {
    pb_key(o, field, 2), pb_uvarint(o, n), pb_raw(o, d, n);
}
static void pb_float(pb_out *o, uint32_t field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_key(o, field, 5), pb_raw(o, b, 4);
}

int gt_tok_save_spm(const gt_tokenizer *t, const char *path, char *err, size_t errn) {
    if (!t || !path) return gt_errf(err, errn, "save_spm: NULL argument");
    bool escape = false, dummy = t->spm_dummy;
    for (int i = 0; i < t->n_norm; i++) {
        const text_op *o = &t->norm[i];
        if (o->kind == OP_REPLACE && o->pat_len == 1 && o->pat[0] == ' ' && o->rep_len == 3 &&
            !memcmp(o->rep, "\xE2\x96\x81", 3))
            escape = true;
        else if (o->kind == OP_PREPEND && o->rep_len == 3 && !memcmp(o->rep, "\xE2\x96\x81", 3))
            dummy = true;
        else
            return gt_errf(err, errn,
                        "save_spm: %s: normalizer step %d cannot be written to a SentencePiece model", path,
                        i);
    }
    if (t->split_pat)
        return gt_errf(err, errn,
                    "save_spm: %s: a Split pre-tokenizer cannot be written to a SentencePiece model", path);
    if (t->unk < 0) return gt_errf(err, errn, "save_spm: %s: SentencePiece needs a piece of type UNKNOWN", path);
    pb_out o = {0}, sub = {0};
    for (int32_t i = 0; i < t->n; i++) {
        sub.n = 0;
        pb_bytes(&sub, 1, t->blob + t->off[i], t->len[i]);
        pb_float(&sub, 2, t->score[i]);
        pb_int(&sub, 3, t->type[i]);
        if (sub.oom) break;
        pb_bytes(&o, 1, sub.p, sub.n);
    }
    sub.n = 0;
    pb_int(&sub, 3, 2); /* model_type BPE */
    pb_int(&sub, 4, t->n);
    pb_int(&sub, 35, t->byte_fallback);
    pb_int(&sub, 40, t->unk);
    pb_int(&sub, 41, t->bos);
    pb_int(&sub, 42, t->eos);
    pb_int(&sub, 43, t->pad);
    int32_t named[4] = {t->unk, t->bos, t->eos, t->pad};
    for (int k = 0; k < 4; k++)
        if (named[k] >= 0) pb_bytes(&sub, 45 + (uint32_t)k, t->blob + t->off[named[k]], t->len[named[k]]);
    pb_bytes(&o, 2, sub.p, sub.n);
    sub.n = 0;
    pb_bytes(&sub, 1, "identity", 8);
    pb_int(&sub, 3, dummy);
    pb_int(&sub, 4, t->spm_remove_ws);
    pb_int(&sub, 5, escape);
    pb_bytes(&o, 3, sub.p, sub.n);
    int rc = 0;
    if (o.oom || sub.oom) {
        rc = gt_errf(err, errn, "save_spm: %s: out of memory", path);
    } else {
        /* Write beside the target and rename, so a failed write never leaves half a model. */
        char why[512];
        if (gt_write_file_atomic(path, o.p, o.n, why, sizeof why)) rc = gt_errf(err, errn, "save_spm: %s", why);
    }
    free(o.p);
    free(sub.p);
    return rc;
}

/* ================================================================ encoding */

void gt_ids_free(gt_ids *v) {
    if (!v) return;
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

int gt_ids_push(gt_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int32_t *ni = realloc(v->ids, nc * sizeof *ni);
        if (!ni) return -1;
        v->ids = ni, v->cap = nc;
    }
    v->ids[v->n++] = id;
    return 0;
}

typedef struct { int32_t id, start, len, prev, next; } sym_t;
/* Heap entry: k = priority << 32 | left symbol; valid while left->next == right and the two
 * still span len bytes (a merge on either side changes one of those). */
typedef struct { uint64_t k; int32_t right, len, id; } pair_t;
typedef struct { int32_t id, left_len; } rev_t;

#define STACK_SYMS 128

typedef struct {
    const gt_tokenizer *t;
    gt_ids *out;
    char *err;
    size_t errn;
    char *nb[2];             /* normalization buffers */
    size_t nb_cap[2];
    sym_t *sym;
    size_t sym_cap;
    pair_t *heap;
    size_t heap_n, heap_cap;
    rev_t *rev;              /* UNUSED piece -> length of its left part (SentencePiece resegmentation) */
    size_t rev_mask, rev_n;
    bool prev_unk, oom;
    sym_t sym_stack[STACK_SYMS];
    pair_t heap_stack[3 * STACK_SYMS];
} enc_ws;

static int ws_push(enc_ws *w, int32_t id) {
    if (gt_ids_push(w->out, id)) return w->oom = true, -1;
    return 0;
}

static char *ws_buf(enc_ws *w, int k, size_t need) {
    if (need > w->nb_cap[k]) {
        size_t nc = need < 256 ? 256 : need * 2;
        char *nb = realloc(w->nb[k], nc);
        if (!nb) return w->oom = true, NULL;
        w->nb[k] = nb, w->nb_cap[k] = nc;
    }
    return w->nb[k];
}

static int ws_reserve(enc_ws *w, size_t nsym) {
    if (nsym > w->sym_cap) {
        if (w->sym != w->sym_stack) free(w->sym);
        if (w->heap != w->heap_stack) free(w->heap);
        w->sym = malloc(nsym * sizeof *w->sym);
        w->heap = malloc(3 * nsym * sizeof *w->heap);
        if (!w->sym || !w->heap) {
            free(w->sym);
            free(w->heap);
            w->sym = w->sym_stack, w->heap = w->heap_stack, w->sym_cap = STACK_SYMS;
            return w->oom = true, -1;
        }
        w->sym_cap = nsym;
    }
    w->heap_cap = 3 * w->sym_cap;
    return 0;
}

static void ws_free(enc_ws *w) {
    free(w->nb[0]);
    free(w->nb[1]);
    if (w->sym != w->sym_stack) free(w->sym);
    if (w->heap != w->heap_stack) free(w->heap);
    free(w->rev);
}

static void rev_set(enc_ws *w, int32_t id, int32_t left_len) {
    if ((w->rev_n + 1) * 2 > w->rev_mask + 1 || !w->rev) {
        size_t nc = w->rev ? (w->rev_mask + 1) * 2 : 64;
        rev_t *nr = malloc(nc * sizeof *nr);
        if (!nr) {
            w->oom = true;
            return;
        }
        for (size_t i = 0; i < nc; i++) nr[i].id = -1;
        for (size_t i = 0; w->rev && i <= w->rev_mask; i++)
            if (w->rev[i].id >= 0) {
                size_t k = ((uint32_t)w->rev[i].id * 2654435761u) & (nc - 1);
                while (nr[k].id >= 0) k = (k + 1) & (nc - 1);
                nr[k] = w->rev[i];
            }
        free(w->rev);
        w->rev = nr, w->rev_mask = nc - 1;
    }
    size_t k = ((uint32_t)id * 2654435761u) & w->rev_mask;
    while (w->rev[k].id >= 0 && w->rev[k].id != id) k = (k + 1) & w->rev_mask;
    if (w->rev[k].id < 0) w->rev_n++;
    w->rev[k] = (rev_t){id, left_len};
}

static int32_t rev_get(const enc_ws *w, int32_t id) {
    if (!w->rev) return -1;
    for (size_t k = ((uint32_t)id * 2654435761u) & w->rev_mask;; k = (k + 1) & w->rev_mask) {
        if (w->rev[k].id == id) return w->rev[k].left_len;
        if (w->rev[k].id < 0) return -1;
    }
}

static inline void heap_up(pair_t *h, size_t i) {
    pair_t e = h[i];
    while (i) {
        size_t p = (i - 1) / 2;
        if (h[p].k <= e.k) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static inline void heap_down(pair_t *h, size_t n, size_t i) {
    pair_t e = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1].k < h[c].k) c++;
        if (e.k <= h[c].k) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
}

/* Queues the merge of symbols l and r if there is one. */
static inline void add_pair(enc_ws *w, const char *s, int32_t l, int32_t r, bool sift) {
    const gt_tokenizer *t = w->t;
    const sym_t *a = &w->sym[l], *b = &w->sym[r];
    uint32_t prio;
    int32_t id;
    if (a->id >= 0 && b->id >= 0) {
        const merge_slot *m = merge_find(t, a->id, b->id);
        if (!m) return;
        prio = m->prio, id = m->id;
    } else if (t->use_merges) {
        return;
    } else {
        /* SentencePiece: a symbol that is no piece (an unknown character) still merges by text */
        id = piece_find(t, s + a->start, (size_t)(a->len + b->len));
        if (id < 0 || !spm_mergeable(t->type[id])) return;
        prio = score_prio(t->score[id]);
    }
    if (!t->use_merges && t->type[id] == GT_PIECE_UNUSED) rev_set(w, id, a->len);
    w->heap[w->heap_n] = (pair_t){((uint64_t)prio << 32) | (uint32_t)l, r, a->len + b->len, id};
    if (sift) heap_up(w->heap, w->heap_n);
    w->heap_n++;
}

static int emit_unk(enc_ws *w) {
    if (w->t->unk < 0) {
        gt_errf(w->err, w->errn, "encode: a character is not in the vocabulary and there is no <unk> piece");
        return -1;
    }
    if (w->prev_unk && w->t->fuse_unk) return 0;
    if (ws_push(w, w->t->unk)) return -1;
    w->prev_unk = true;
    return 0;
}

/* Emits a final symbol: its id, its SentencePiece resegmentation when it is an UNUSED piece,
 * or its bytes / <unk> when it is no piece at all. */
static int emit(enc_ws *w, const char *s, int32_t n, int32_t id, int depth) {
    const gt_tokenizer *t = w->t;
    if (id >= 0 && t->type[id] == GT_PIECE_UNUSED && !t->use_merges && depth < 64) {
        int32_t ll = rev_get(w, id);
        if (ll > 0 && ll < n)
            return emit(w, s, ll, piece_find(t, s, (size_t)ll), depth + 1) ||
                   emit(w, s + ll, n - ll, piece_find(t, s + ll, (size_t)(n - ll)), depth + 1);
    }
    if (id >= 0) {
        w->prev_unk = id == t->unk;
        return ws_push(w, id);
    }
    if (t->byte_fallback) {
        for (int32_t i = 0; i < n; i++) {
            int32_t b = t->byte_id[(uint8_t)s[i]];
            if (b < 0) {
                if (emit_unk(w)) return -1;
            } else {
                if (ws_push(w, b)) return -1;
                w->prev_unk = false;
            }
        }
        return 0;
    }
    return emit_unk(w);
}

/* BPE over one pre-tokenized chunk of normalized text. */
static int bpe_chunk(enc_ws *w, const char *s, size_t n) {
    const gt_tokenizer *t = w->t;
    if (n == 0) return 0;
    if (n > INT32_MAX / 4) return gt_errf(w->err, w->errn, "encode: a text segment of %zu bytes is too long", n);
    w->prev_unk = false;
    if (t->use_merges && t->ignore_merges) {
        int32_t id = piece_find(t, s, n);
        if (id >= 0) return emit(w, s, (int32_t)n, id, 0);
    }
    if (ws_reserve(w, n)) return -1;
    sym_t *sym = w->sym;
    const uint8_t *u = (const uint8_t *)s;
    int32_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = u[i], cl = 1;
        if (c >= 0x80) { /* the text was validated as UTF-8 */
            if (c < 0xE0) cl = 2, c = ((c & 0x1F) << 6) | (u[i + 1] & 0x3F);
            else if (c < 0xF0) cl = 3, c = ((c & 0x0F) << 12) | ((u[i + 1] & 0x3Fu) << 6) | (u[i + 2] & 0x3F);
            else cl = 4, c = 0x10000;
        }
        int32_t id = c < 0x10000 ? t->cp_id[c] : piece_find(t, s + i, cl);
        if (id < 0 && t->use_merges) {
            /* tokenizers: an unknown character becomes its byte pieces, or <unk>. */
            bool bytes = t->byte_fallback;
            for (uint32_t k = 0; bytes && k < cl; k++) bytes = t->byte_id[u[i + k]] >= 0;
            if (bytes) {
                for (uint32_t k = 0; k < cl; k++, m++)
                    sym[m] = (sym_t){t->byte_id[u[i + k]], (int32_t)(i + k), 1, m - 1, m + 1};
                i += cl;
                continue;
            }
            if (t->unk < 0)
                return gt_errf(w->err, w->errn,
                            "encode: a character is not in the vocabulary and there is no <unk> piece");
            if (t->fuse_unk && m > 0 && sym[m - 1].id == t->unk &&
                sym[m - 1].start + sym[m - 1].len == (int32_t)i) {
                sym[m - 1].len += (int32_t)cl;
                i += cl;
                continue;
            }
            id = t->unk;
        }
        sym[m] = (sym_t){id, (int32_t)i, (int32_t)cl, m - 1, m + 1};
        m++;
        i += cl;
    }
    sym[m - 1].next = -1;
    w->heap_n = 0;
    for (int32_t i = 0; i + 1 < m; i++) add_pair(w, s, i, i + 1, false);
    for (size_t i = w->heap_n / 2; i-- > 0;) heap_down(w->heap, w->heap_n, i);
    while (w->heap_n) {
        pair_t p = w->heap[0];
        w->heap[0] = w->heap[--w->heap_n];
        if (w->heap_n) heap_down(w->heap, w->heap_n, 0);
        int32_t l = (int32_t)(uint32_t)p.k, r = p.right;
        if (sym[l].len == 0 || sym[l].next != r || sym[l].len + sym[r].len != p.len) continue;
        sym[l].len = p.len;
        sym[l].id = p.id;
        sym[l].next = sym[r].next;
        if (sym[r].next >= 0) sym[sym[r].next].prev = l;
        sym[r].len = 0;
        if (sym[l].prev >= 0) add_pair(w, s, sym[l].prev, l, true);
        if (sym[l].next >= 0) add_pair(w, s, l, sym[l].next, true);
    }
    if (w->oom) return -1;
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if (emit(w, s + sym[i].start, sym[i].len, sym[i].id, 0)) return -1;
    return 0;
}

/* The pre-tokenizer Split on the normalized segment, then BPE on each piece. */
static int split_and_bpe(enc_ws *w, const char *s, size_t n) {
    const gt_tokenizer *t = w->t;
    if (!t->split_pat) return bpe_chunk(w, s, n);
    const char *p = t->split_pat;
    size_t pl = t->split_len, pos = 0, start = 0;
    int b = t->split_behavior;
    while (pos < n) {
        const char *hit = memmem(s + pos, n - pos, p, pl);
        if (!hit) break;
        size_t ms = (size_t)(hit - s), me = ms + pl;
        if (b == SPLIT_CONTIGUOUS)
            while (me + pl <= n && !memcmp(s + me, p, pl)) me += pl;
        switch (b) {
        case SPLIT_REMOVED:
            if (bpe_chunk(w, s + start, ms - start)) return -1;
            start = me;
            break;
        case SPLIT_ISOLATED:
        case SPLIT_CONTIGUOUS:
            if (bpe_chunk(w, s + start, ms - start) || bpe_chunk(w, s + ms, me - ms)) return -1;
            start = me;
            break;
        case SPLIT_PREVIOUS:
            if (bpe_chunk(w, s + start, me - start)) return -1;
            start = me;
            break;
        case SPLIT_NEXT:
            if (bpe_chunk(w, s + start, ms - start)) return -1;
            start = ms;
            break;
        }
        pos = me;
    }
    return bpe_chunk(w, s + start, n - start);
}

/* Normalizes one text segment (between matched special pieces) and encodes it. */
static int encode_segment(enc_ws *w, const char *s, size_t n, bool at_text_start) {
    const gt_tokenizer *t = w->t;
    int k = 0;
    if (at_text_start && t->spm_dummy) {
        char *b = ws_buf(w, k, n + 1);
        if (!b) return -1;
        b[0] = ' ';
        memcpy(b + 1, s, n);
        s = b, n = n + 1, k ^= 1;
    }
    for (int i = 0; i < t->n_norm && n; i++) {
        const text_op *o = &t->norm[i];
        if (o->kind == OP_PREPEND) {
            char *b = ws_buf(w, k, n + o->rep_len);
            if (!b) return -1;
            memcpy(b, o->rep, o->rep_len);
            memcpy(b + o->rep_len, s, n);
            s = b, n += o->rep_len, k ^= 1;
            continue;
        }
        size_t hits = 0;
        if (o->pat_len == 1) {
            for (const char *q = s; (q = memchr(q, o->pat[0], n - (size_t)(q - s))); q++) hits++;
        } else {
            for (const char *q = s; (q = memmem(q, n - (size_t)(q - s), o->pat, o->pat_len)); q += o->pat_len)
                hits++;
        }
        if (!hits) continue;
        char *b = ws_buf(w, k, n - hits * o->pat_len + hits * o->rep_len);
        if (!b) return -1;
        char *d = b;
        const char *q = s, *end = s + n;
        while (q < end) {
            const char *h = o->pat_len == 1 ? memchr(q, o->pat[0], (size_t)(end - q))
                                            : memmem(q, (size_t)(end - q), o->pat, o->pat_len);
            size_t run = h ? (size_t)(h - q) : (size_t)(end - q);
            memcpy(d, q, run);
            d += run, q += run;
            if (!h) break;
            memcpy(d, o->rep, o->rep_len);
            d += o->rep_len, q += o->pat_len;
        }
        s = b, n = (size_t)(d - b), k ^= 1;
    }
    return split_and_bpe(w, s, n);
}

/* SentencePiece remove_extra_whitespaces: no leading, trailing or repeated spaces. */
static char *squeeze_spaces(const char *s, size_t n, size_t *out_n) {
    char *b = malloc(n + 1);
    if (!b) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' && (k == 0 || b[k - 1] == ' ')) continue;
        b[k++] = s[i];
    }
    while (k && b[k - 1] == ' ') k--;
    *out_n = k;
    return b;
}

int gt_tok_encode(const gt_tokenizer *t, const char *text, size_t len, bool match_special, gt_ids *out,
                  char *err, size_t errn) {
    if (!t || !out || (!text && len)) return gt_errf(err, errn, "encode: NULL argument");
    size_t n0 = out->n;
    enc_ws *w = malloc(sizeof *w);
    if (!w) return gt_errf(err, errn, "encode: out of memory");
    w->t = t, w->out = out, w->err = err, w->errn = errn;
    w->nb[0] = w->nb[1] = NULL;
    w->nb_cap[0] = w->nb_cap[1] = 0;
    w->sym = w->sym_stack, w->heap = w->heap_stack, w->sym_cap = STACK_SYMS, w->heap_cap = 3 * STACK_SYMS;
    w->rev = NULL, w->rev_mask = w->rev_n = 0;
    w->prev_unk = w->oom = false;
    char *squeezed = NULL;
    int rc = 0;
    const uint8_t *u = (const uint8_t *)text;
    for (size_t pos = 0; pos < len;) {
        uint32_t cp;
        if (u[pos] < 0x80) {
            pos++;
            continue;
        }
        size_t cl = utf8_char(u + pos, len - pos, &cp);
        if (!cl) {
            rc = gt_errf(err, errn, "encode: invalid UTF-8 at byte %zu", pos);
            goto done;
        }
        pos += cl;
    }
    if (t->spm_remove_ws) {
        if (!(squeezed = squeeze_spaces(text, len, &len))) {
            w->oom = true;
            rc = -1;
            goto done;
        }
        text = squeezed, u = (const uint8_t *)text;
    }
    size_t seg = 0;
    bool at_start = len > 0;
    for (size_t pos = 0; pos < len;) {
        int32_t id;
        size_t m;
        if (t->trie_first[u[pos]] && (m = trie_match(t, u + pos, len - pos, match_special, &id))) {
            if ((pos > seg || at_start) && (rc = encode_segment(w, text + seg, pos - seg, at_start)))
                goto done;
            at_start = false;
            if ((rc = ws_push(w, id))) goto done;
            w->prev_unk = false;
            pos += m;
            seg = pos;
            continue;
        }
        pos++;
        while (pos < len && (u[pos] & 0xC0) == 0x80) pos++; /* to the next character */
    }
    if (seg < len && (rc = encode_segment(w, text + seg, len - seg, at_start))) goto done;
done:
    if (w->oom) rc = gt_errf(err, errn, "encode: out of memory");
    if (rc) out->n = n0;
    ws_free(w);
    free(w);
    free(squeezed);
    return rc;
}

/* ================================================================ decoding */

typedef struct { char *p; size_t n, cap; bool oom; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np, b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_replace(sbuf *b, const char *s, size_t n, const text_op *o) {
    const char *end = s + n;
    while (s < end) {
        const char *h = memmem(s, (size_t)(end - s), o->pat, o->pat_len);
        size_t run = h ? (size_t)(h - s) : (size_t)(end - s);
        sb_add(b, s, run);
        if (!h) break;
        sb_add(b, o->rep, o->rep_len);
        s = h + o->pat_len;
    }
}

/* Bytes of a byte-piece run stay when they are valid UTF-8, else each becomes U+FFFD. */
static void flush_bytes(sbuf *b, size_t run_start) {
    if (b->oom || run_start >= b->n) return;
    size_t nb = b->n - run_start;
    if (utf8_valid(b->p + run_start, nb)) return;
    b->n = run_start;
    for (size_t i = 0; i < nb; i++) sb_add(b, "\xEF\xBF\xBD", 3);
}

int gt_tok_decode(const gt_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                  size_t *out_len, char *err, size_t errn) {
    if (!out) return gt_errf(err, errn, "decode: NULL output pointer");
    *out = NULL;
    if (!t || (!ids && n)) return gt_errf(err, errn, "decode: NULL argument");
    sbuf b = {0}, tmp = {0};
    sb_add(&b, "", 0);
    size_t run = SIZE_MAX; /* start of the current byte-piece run */
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n) {
            free(b.p);
            free(tmp.p);
            return gt_errf(err, errn, "decode: id %d at position %zu is out of range [0, %d)", id, i, t->n);
        }
        if (t->dec_bytes && t->byte_of[id] >= 0) {
            if (run == SIZE_MAX) run = b.n;
            char c = (char)t->byte_of[id];
            sb_add(&b, &c, 1);
            continue;
        }
        if (run != SIZE_MAX) flush_bytes(&b, run), run = SIZE_MAX;
        if (skip_special && t->type[id] == GT_PIECE_CONTROL) continue;
        const char *s = t->blob + t->off[id];
        size_t l = t->len[id];
        if (t->n_dec == 0) {
            sb_add(&b, s, l);
        } else if (t->n_dec == 1) {
            sb_replace(&b, s, l, &t->dec[0]);
        } else {
            sbuf cur = {0};
            sb_add(&cur, s, l);
            for (int k = 0; k < t->n_dec; k++) {
                tmp.n = 0;
                sb_replace(&tmp, cur.p, cur.n, &t->dec[k]);
                sbuf x = cur;
                cur = tmp, tmp = x;
            }
            sb_add(&b, cur.p, cur.n);
            b.oom |= cur.oom;
            free(cur.p);
        }
    }
    if (run != SIZE_MAX) flush_bytes(&b, run);
    free(tmp.p);
    if (b.oom || tmp.oom) {
        free(b.p);
        return gt_errf(err, errn, "decode: out of memory");
    }
    size_t from = 0, to = b.n;
    const char *c = t->dec_strip;
    size_t cl = t->dec_strip_len;
    for (int k = 0; k < t->dec_strip_start && to - from >= cl && !memcmp(b.p + from, c, cl); k++) from += cl;
    for (int k = 0; k < t->dec_strip_stop && to - from >= cl && !memcmp(b.p + to - cl, c, cl); k++) to -= cl;
    if (from) memmove(b.p, b.p + from, to - from);
    b.p[to - from] = 0;
    *out = b.p;
    if (out_len) *out_len = to - from;
    return 0;
}

/* ================================================================ accessors */

int32_t gt_tok_vocab_size(const gt_tokenizer *t) { return t ? t->n : 0; }

int32_t gt_tok_piece_id(const gt_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    return piece_find(t, piece, strlen(piece));
}

const char *gt_tok_piece(const gt_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n ? t->blob + t->off[id] : NULL;
}

int gt_tok_piece_type(const gt_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n ? t->type[id] : 0;
}

float gt_tok_piece_score(const gt_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n ? t->score[id] : 0.0f;
}

int32_t gt_tok_bos(const gt_tokenizer *t) { return t ? t->bos : -1; }
int32_t gt_tok_eos(const gt_tokenizer *t) { return t ? t->eos : -1; }
int32_t gt_tok_pad(const gt_tokenizer *t) { return t ? t->pad : -1; }
int32_t gt_tok_unk(const gt_tokenizer *t) { return t ? t->unk : -1; }
