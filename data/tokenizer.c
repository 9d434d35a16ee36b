/* tokenizer.c: the tokenizer itself: vocabulary, lookup tables, the two merge rules, the
 * SentencePiece WORD and UNIGRAM models, the precompiled_charsmap normalizer, encode and decode
 * (data/tokenizer.h describes the behaviour).
 *
 * Contract: a gt_tokenizer is built here (tok_build, tok_build_pair_table, gt_tok_from_pieces)
 * from pieces that a loader read (tok_json.c, tok_spm.c, or a GGUF's arrays through
 * gt_tok_from_pieces); after that it is immutable and encode/decode may run concurrently on it.
 * Nothing here reads a file format other than gt_tok_load's sniffing of the first bytes; no
 * JSON or protobuf. */
#include "data/tokenizer.h"

#include <errno.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "models/io/gguf.h"
#include "util/err.h"

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
size_t tok_utf8_char(const uint8_t *s, size_t n, uint32_t *cp) {
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
        size_t l = tok_utf8_char(u + i, n - i, &cp);
        if (!l) return false;
        i += l;
    }
    return true;
}

/* <0xNN> with two hex digits (either case) -> NN, else -1. */
int tok_byte_piece(const char *s, size_t n) {
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

char *tok_memdup0(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Reads a whole file; *n gets its size. */
char *tok_read_file(const char *path, size_t *n, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        gt_err_open(err, errn, path, errno);
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

int32_t tok_piece_find(const gt_tokenizer *t, const char *s, size_t n) {
    uint64_t h = hash_bytes(s, n);
    return piece_probe(t, s, n, h, h & t->ph_mask);
}

void tok_piece_find_many(const gt_tokenizer *t, piece_query *q, size_t k) {
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
int tok_merge_table_alloc(gt_tokenizer *t, size_t m) {
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

void tok_merge_put(gt_tokenizer *t, uint64_t key, uint32_t prio, int32_t id) {
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

/* Longest allowed piece of the trie at the start of s; 0 if none. USER_DEFINED pieces count
 * unless user is false (SentencePiece's WORD model looks whole words up, user-defined or not). */
static size_t trie_match(const gt_tokenizer *t, const uint8_t *s, size_t n, bool special, bool user,
                         int32_t *id) {
    int32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != s[i]) c = t->trie[c].sibling;
        if (c < 0) break;
        node = c;
        int32_t pid = t->trie[c].id;
        if (pid >= 0 && (special || !is_special_type(t->type[pid])) &&
            (user || t->type[pid] != GT_PIECE_USER_DEFINED))
            best = i + 1, *id = pid;
    }
    return best;
}

gt_tokenizer *tok_alloc(void) {
    gt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->bos = t->eos = t->pad = t->unk = -1;
    return t;
}

/* Builds the piece storage and every lookup table from strs/lens (n pieces; t->type and
 * t->score must be set). src names the file for messages. */
int tok_build(gt_tokenizer *t, const char *const *strs, const size_t *lens, int32_t n,
              const char *src, char *err, size_t errn) {
    t->n = n;
    size_t total = 0;
    uint32_t cp;
    t->cp_n = 1;
    for (int32_t i = 0; i < n; i++) {
        if (lens[i] == 0) return gt_errf(err, errn, "%s: piece %d is empty", src, i);
        if (lens[i] > UINT32_MAX / 2 || total > UINT32_MAX / 2)
            return gt_errf(err, errn, "%s: piece %d is too long", src, i);
        if (!utf8_valid(strs[i], lens[i])) return gt_errf(err, errn, "%s: piece %d is not valid UTF-8", src, i);
        total += lens[i] + 1;
        if (tok_utf8_char((const uint8_t *)strs[i], lens[i], &cp) == lens[i] && cp < 0x10000 && cp >= t->cp_n)
            t->cp_n = cp + 1;
    }
    t->blob = malloc(total ? total : 1);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->byte_of = malloc((size_t)n * sizeof *t->byte_of);
    /* sized to the pieces: a small vocabulary (tests, fuzz inputs) needs no 256 KB table */
    t->cp_id = malloc(t->cp_n * sizeof *t->cp_id);
    size_t ph_n = pow2_at_least((size_t)n + (size_t)n / 2 + 1);
    t->ph = malloc(ph_n * sizeof *t->ph);
    t->trie_cap = 256;
    t->trie = malloc((size_t)t->trie_cap * sizeof *t->trie);
    if (!t->blob || !t->off || !t->len || !t->byte_of || !t->cp_id || !t->ph || !t->trie)
        return gt_errf(err, errn, "%s: out of memory for %d pieces", src, n);
    t->ph_mask = ph_n - 1;
    for (size_t i = 0; i < ph_n; i++) t->ph[i].id = -1;
    memset(t->cp_id, 0xff, t->cp_n * sizeof *t->cp_id); /* all -1 */
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
        if (tok_utf8_char((const uint8_t *)s, l, &cp) == l && cp < 0x10000) t->cp_id[cp] = i;
        int ty = t->type[i];
        int b = tok_byte_piece(s, l);
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
    int32_t id = tok_piece_find(t, a, strlen(a));
    if (id < 0 && b) id = tok_piece_find(t, b, strlen(b));
    return id;
}

void tok_set_default_specials(gt_tokenizer *t) {
    t->bos = find_any(t, "<bos>", "<s>");
    t->eos = find_any(t, "<eos>", "</s>");
    t->pad = find_any(t, "<pad>", NULL);
}

int tok_add_op(text_op *ops, int *n, int kind, const char *pat, size_t pat_len, const char *rep,
               size_t rep_len) {
    if (*n == MAX_OPS) return -2;
    text_op *o = &ops[*n];
    o->kind = kind;
    o->pat = pat ? tok_memdup0(pat, pat_len) : NULL;
    o->rep = tok_memdup0(rep, rep_len);
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
    free(t->norm_name);
    free(t->charsmap);
    free(t->cm_units);
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
            tok_piece_find_many(t, q, nq);
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

int tok_build_pair_table(gt_tokenizer *t, const char *src, char *err, size_t errn) {
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
            int32_t a = tok_piece_find(t, p, k), b = a < 0 ? -1 : tok_piece_find(t, p + k, l - k);
            if (b >= 0) pair_list_add(&lists[0], (merge_slot){merge_key(a, b), score_prio(t->score[i]), i});
        }
    }
    size_t m = 0;
    bool oom = false;
    for (int k = 0; k < nt; k++) m += lists[k].n, oom |= lists[k].oom;
    int rc = 0;
    if (oom || tok_merge_table_alloc(t, m)) rc = gt_errf(err, errn, "%s: out of memory for the pair table", src);
    for (int k = 0; k < nt; k++) {
        for (size_t e = 0; !rc && e < lists[k].n; e++)
            tok_merge_put(t, lists[k].p[e].key, lists[k].p[e].prio, lists[k].p[e].id);
        free(lists[k].p);
    }
    return rc;
}

/* SentencePiece-style text handling: spaces as U+2581 and the same back on decode. */
/* SentencePiece matches USER_DEFINED pieces in the escaped text, where a space is U+2581: the
 * piece "\u2581\u2581" (Gemma's whitespace runs) matches two spaces of input. The trie matches raw
 * text, so such a piece also gets its spelling with spaces (unless that is a piece of its own). */
static int trie_add_unescaped(gt_tokenizer *t) {
    for (int32_t i = 0; i < t->n; i++) {
        const char *p = t->blob + t->off[i];
        size_t l = t->len[i];
        if (t->type[i] != GT_PIECE_USER_DEFINED || !memmem(p, l, "\xE2\x96\x81", 3)) continue;
        char *u = malloc(l + 1);
        if (!u) return -1;
        size_t k = 0;
        for (size_t j = 0; j < l; j++) {
            if (j + 2 < l && !memcmp(p + j, "\xE2\x96\x81", 3)) u[k++] = ' ', j += 2;
            else u[k++] = p[j];
        }
        int rc = tok_piece_find(t, u, k) >= 0 ? 0 : trie_add(t, u, k, i);
        free(u);
        if (rc) return -1;
    }
    return 0;
}

int tok_set_spm_text_rules(gt_tokenizer *t, bool escape, bool dummy, bool remove_ws) {
    t->spm_dummy = dummy;
    t->spm_escape = escape;
    t->spm_remove_ws = remove_ws;
    t->dec_bytes = true;
    t->fuse_unk = true;
    if (escape && (tok_add_op(t->norm, &t->n_norm, OP_REPLACE, " ", 1, "\xE2\x96\x81", 3) ||
                   tok_add_op(t->dec, &t->n_dec, OP_REPLACE, "\xE2\x96\x81", 3, " ", 1) ||
                   trie_add_unescaped(t)))
        return -1;
    if (dummy) {
        t->dec_strip = tok_memdup0(" ", 1);
        if (!t->dec_strip) return -1;
        t->dec_strip_len = 1, t->dec_strip_start = 1;
    }
    return 0;
}

int gt_tok_load(const char *path, gt_tokenizer **out, char *err, size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!path) return gt_errf(err, errn, "tokenizer: NULL path");
    int gguf = gt_gguf_sniff(path);
    if (gguf < 0) return gt_err_open(err, errn, path, errno);
    if (gguf) return gt_tok_load_gguf(path, out, err, errn);
    FILE *f = fopen(path, "rb");
    if (!f) return gt_err_open(err, errn, path, errno);
    unsigned char head[64];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    size_t i = 0;
    while (i < got && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    /* '{' and '[' would start protobuf groups, which a ModelProto never has */
    if (i < got && (head[i] == '{' || head[i] == '[')) return gt_tok_load_hf_json(path, out, err, errn);
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
                 : tok_byte_piece(pieces[i], lens[i]) >= 0 ? GT_PIECE_BYTE
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
        tok_build_pair_table(t, "from_pieces", err, errn))
        goto out;
    t->byte_fallback = has_bytes;
    if (tok_set_spm_text_rules(t, true, false, false)) {
        gt_errf(err, errn, "from_pieces: out of memory");
        goto out;
    }
    for (int32_t i = 0; i < n && t->unk < 0; i++)
        if (t->type[i] == GT_PIECE_UNKNOWN) t->unk = i;
    tok_set_default_specials(t);
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
        id = tok_piece_find(t, s + a->start, (size_t)(a->len + b->len));
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
            return emit(w, s, ll, tok_piece_find(t, s, (size_t)ll), depth + 1) ||
                   emit(w, s + ll, n - ll, tok_piece_find(t, s + ll, (size_t)(n - ll)), depth + 1);
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
        int32_t id = tok_piece_find(t, s, n);
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
        int32_t id = c < t->cp_n ? t->cp_id[c] : c < 0x10000 ? -1 : tok_piece_find(t, s + i, cl);
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

/* SentencePiece WORD model: a word starts at the segment's start and at every U+2581; each word
 * is one piece (any piece of that text) or <unk>. */
static int word_chunk(enc_ws *w, const char *s, size_t n) {
    const gt_tokenizer *t = w->t;
    size_t start = 0;
    w->prev_unk = false;
    for (size_t i = 0;;) {
        bool end = i == n;
        if (end || (i > start && n - i >= 3 && !memcmp(s + i, "\xE2\x96\x81", 3))) {
            if (i > start) {
                if (i - start > INT32_MAX / 4)
                    return gt_errf(w->err, w->errn, "encode: a word of %zu bytes is too long", i - start);
                int32_t id = tok_piece_find(t, s + start, i - start);
                if (emit(w, s + start, (int32_t)(i - start), id, 0)) return -1;
            }
            start = i;
        }
        if (end) break;
        uint32_t cp;
        size_t cl = tok_utf8_char((const uint8_t *)s + i, n - i, &cp);
        i += cl ? cl : 1;
    }
    return 0;
}

/* Best path into a byte position of a UNIGRAM segment. */
typedef struct { float score; int32_t start, id; } vit_node;

/* SentencePiece UNIGRAM model (unigram_model.cc, EncodeOptimized): Viterbi over the pieces that
 * start at each character, NORMAL pieces with their scores, USER_DEFINED ones with
 * bytes * max_score - 0.1, UNUSED ones skipped; a character that starts no one-character piece
 * also gets <unk> with min_score - 10. Ties keep the first path found (shorter pieces, earlier
 * starts); the sums are done in the same float/double mix as SentencePiece's, so ties agree. */
static int unigram_chunk(enc_ws *w, const char *s, size_t n) {
    const gt_tokenizer *t = w->t;
    if (n == 0) return 0;
    if (n > INT32_MAX / 4) return gt_errf(w->err, w->errn, "encode: a text segment of %zu bytes is too long", n);
    vit_node *b = malloc((n + 1) * sizeof *b);
    int32_t *path = malloc((n + 1) * sizeof *path);
    if (!b || !path) {
        free(b);
        free(path);
        w->oom = true;
        return -1;
    }
    for (size_t i = 0; i <= n; i++) b[i] = (vit_node){0.0f, -1, -1};
    const uint8_t *u = (const uint8_t *)s;
    const float unk_score = t->uni_min - 10.0f;
    for (size_t pos = 0; pos < n;) {
        uint32_t cp;
        size_t mb = tok_utf8_char(u + pos, n - pos, &cp);
        if (!mb) mb = 1;
        float base = b[pos].score;
        bool single = false;
        size_t maxl = t->max_piece_len < n - pos ? t->max_piece_len : n - pos;
        for (size_t l = 1; l <= maxl; l++) {
            if (pos + l < n && (u[pos + l] & 0xC0) == 0x80) continue; /* pieces end on characters */
            int32_t id = tok_piece_find(t, s + pos, l);
            if (id < 0) continue;
            int ty = t->type[id];
            if (ty != GT_PIECE_NORMAL && ty != GT_PIECE_USER_DEFINED) continue;
            double sc = ty == GT_PIECE_USER_DEFINED ? (double)((float)l * t->uni_max) - 0.1
                                                    : (double)t->score[id];
            double cand = sc + (double)base;
            vit_node *g = &b[pos + l];
            if (g->start < 0 || cand > (double)g->score) *g = (vit_node){(float)cand, (int32_t)pos, id};
            if (l == mb) single = true;
        }
        if (!single) {
            float cand = unk_score + base;
            vit_node *g = &b[pos + mb];
            if (g->start < 0 || cand > g->score) *g = (vit_node){cand, (int32_t)pos, -1};
        }
        pos += mb;
    }
    size_t k = 0;
    for (size_t end = n; end > 0; end = (size_t)b[end].start) path[k++] = (int32_t)end;
    int rc = 0;
    w->prev_unk = false;
    while (!rc && k-- > 0) {
        int32_t end = path[k], start = b[end].start;
        rc = emit(w, s + start, end - start, b[end].id, 0);
    }
    free(b);
    free(path);
    return rc;
}

/* The pre-tokenizer Split on the normalized segment, then BPE on each piece. */
static int split_and_bpe(enc_ws *w, const char *s, size_t n) {
    const gt_tokenizer *t = w->t;
    if (t->spm_model == 1) return unigram_chunk(w, s, n);
    if (t->spm_model == 3) return word_chunk(w, s, n);
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

/* Normalizes one text segment (between matched special pieces) and encodes it. A normalizer
 * chain may grow the segment at most to norm_cap(n): real ones (U+2581 for a space, a prepended
 * marker) stay far below, while a broken tokenizer.json whose Replace steps feed each other
 * would multiply the text exponentially until memory runs out. */
static size_t norm_cap(size_t n) { return n > SIZE_MAX / 128 ? SIZE_MAX / 2 : 64 * n + 65536; }

static int norm_too_long(enc_ws *w, size_t n0, size_t cap) {
    return gt_errf(w->err, w->errn,
                   "encode: the tokenizer's normalizer grows a %zu-byte text past %zu bytes "
                   "(its Replace/Prepend steps multiply it)", n0, cap);
}

static int encode_segment(enc_ws *w, const char *s, size_t n, bool at_text_start) {
    const gt_tokenizer *t = w->t;
    const size_t n0 = n, cap = norm_cap(n);
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
            if (o->rep_len > cap - n) return norm_too_long(w, n0, cap);
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
        if (o->rep_len > o->pat_len && hits > (cap - n) / (o->rep_len - o->pat_len))
            return norm_too_long(w, n0, cap);
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

/* SentencePiece remove_extra_whitespaces: no leading, trailing or repeated spaces. At the end
 * SentencePiece strips the escaped text, so there a U+2581 of the input goes too (when escape). */
static char *squeeze_spaces(const char *s, size_t n, bool escape, size_t *out_n) {
    char *b = malloc(n + 1);
    if (!b) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' && (k == 0 || b[k - 1] == ' ')) continue;
        b[k++] = s[i];
    }
    while (k && (b[k - 1] == ' ' || (escape && k >= 3 && !memcmp(b + k - 3, "\xE2\x96\x81", 3))))
        k -= b[k - 1] == ' ' ? 1 : 3;
    *out_n = k;
    return b;
}

static inline size_t cm_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }

/* Longest key of the precompiled charsmap's double array (darts-clone commonPrefixSearch) that
 * starts s: its length, 0 if none. Every index is bounded by the array, every value by the
 * string area, so a broken charsmap can only fail to match. */
static size_t charsmap_match(const gt_tokenizer *t, const uint8_t *s, size_t n, const char **rep,
                             size_t *rep_len) {
    const uint32_t *a = t->cm_units;
    size_t na = t->cm_n, best = 0, pos = cm_offset(a[0]);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= na) break;
        uint32_t u = a[pos];
        if ((u & 0x800000FFu) != s[i]) break;
        pos ^= cm_offset(u);
        if (((u >> 8) & 1) && pos < na) {
            uint32_t v = a[pos] & 0x7FFFFFFFu;
            if (v < t->cm_norm_len) {
                best = i + 1;
                *rep = t->cm_norm + v;
                *rep_len = strnlen(*rep, t->cm_norm_len - v);
            }
        }
    }
    return best;
}

/* SentencePiece's Normalizer with a precompiled charsmap: at each position the longest rule's
 * replacement, else the character itself; pieces of the special trie (USER_DEFINED, and CONTROL
 * when match_special) pass through as they are (SentencePiece's prefix matcher). Whitespace
 * rules come after, on the result. NULL when out of memory; *bad set when a replacement is not
 * valid UTF-8. */
static char *charsmap_normalize(const gt_tokenizer *t, const char *text, size_t n, bool match_special,
                                size_t *out_n, bool *bad) {
    size_t cap = n + n / 2 + 16, k = 0;
    char *o = malloc(cap);
    if (!o) return NULL;
    const uint8_t *u = (const uint8_t *)text;
    for (size_t pos = 0; pos < n;) {
        const char *src = text + pos;
        size_t take, put;
        int32_t id;
        const char *rep;
        size_t rl = 0;
        if (t->trie_first[u[pos]] && (take = trie_match(t, u + pos, n - pos, match_special, true, &id))) {
            put = take;
        } else if ((take = charsmap_match(t, u + pos, n - pos, &rep, &rl))) {
            src = rep, put = rl;
        } else {
            uint32_t cp;
            take = put = tok_utf8_char(u + pos, n - pos, &cp);
            if (!take) take = put = 1;
        }
        if (k + put + 1 > cap) {
            while (k + put + 1 > cap) cap *= 2;
            char *no = realloc(o, cap);
            if (!no) {
                free(o);
                return NULL;
            }
            o = no;
        }
        memcpy(o + k, src, put);
        k += put, pos += take;
    }
    o[k] = 0;
    *out_n = k;
    *bad = !utf8_valid(o, k);
    return o;
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
    char *squeezed = NULL, *normed = NULL;
    int rc = 0;
    const uint8_t *u = (const uint8_t *)text;
    for (size_t pos = 0; pos < len;) {
        uint32_t cp;
        if (u[pos] < 0x80) {
            pos++;
            continue;
        }
        size_t cl = tok_utf8_char(u + pos, len - pos, &cp);
        if (!cl) {
            rc = gt_errf(err, errn, "encode: invalid UTF-8 at byte %zu", pos);
            goto done;
        }
        pos += cl;
    }
    if (t->cm_n) {
        bool bad = false;
        if (!(normed = charsmap_normalize(t, text, len, match_special, &len, &bad))) {
            w->oom = true;
            rc = -1;
            goto done;
        }
        if (bad) {
            rc = gt_errf(err, errn, "encode: the precompiled_charsmap normalized the text to invalid UTF-8");
            goto done;
        }
        text = normed, u = (const uint8_t *)text;
    }
    if (t->spm_remove_ws) {
        if (!(squeezed = squeeze_spaces(text, len, t->spm_escape, &len))) {
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
        if (t->trie_first[u[pos]] &&
            (m = trie_match(t, u + pos, len - pos, match_special, t->spm_model != 3, &id))) {
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
    free(normed);
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
    return tok_piece_find(t, piece, strlen(piece));
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
