/* tok_json.c: Hugging Face tokenizer.json -> gt_tokenizer.
 *
 * Contract: gt_tok_load_hf_json(_buffer) reads model (BPE: vocab, merges and their flags),
 * added_tokens, normalizer, pre_tokenizer and decoder, as data/tokenizer.h lists, and builds the
 * tokenizer through tok_internal.h (merge rule: the file's ranks). Anything it cannot honour
 * exactly is an error naming the JSON key; nothing is guessed. The JSON itself comes from
 * tok_json_parse.c (parallel, arena-backed); nothing of the input or of the jansson values is
 * kept. */
#include "data/tokenizer.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "util/err.h"

static bool is_byte_piece_upper(const char *s, size_t n) {
    return tok_byte_piece(s, n) >= 0 && !(s[3] >= 'a' && s[3] <= 'f') && !(s[4] >= 'a' && s[4] <= 'f');
}

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
        rc = tok_add_op(t->norm, &t->n_norm, OP_REPLACE, pat, pl, content, cl);
    } else if (!strcmp(type, "Prepend")) {
        size_t cl = 0;
        const char *content = jstr(j, "prepend", &cl);
        if (!content) return gt_errf(err, errn, "%s: %s.prepend: expected a string", src, where);
        rc = tok_add_op(t->norm, &t->n_norm, OP_PREPEND, NULL, 0, content, cl);
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
    if (tok_utf8_char((const uint8_t *)pat, pl, &cp) == pl) {
        int last = -1;
        for (int i = 0; i < t->n_norm; i++)
            if (t->norm[i].kind == OP_REPLACE && t->norm[i].pat_len == pl && !memcmp(t->norm[i].pat, pat, pl))
                last = i;
        bool reintroduced = false;
        for (int i = last; last >= 0 && i < t->n_norm; i++)
            if (memmem(t->norm[i].rep, t->norm[i].rep_len, pat, pl)) reintroduced = true;
        if (last >= 0 && !reintroduced) return 0;
    }
    t->split_pat = tok_memdup0(pat, pl);
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
        int rc = tok_add_op(t->dec, &t->n_dec, OP_REPLACE, pat, pl, content, cl);
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
        if (!content || !cl || tok_utf8_char((const uint8_t *)content, cl, &cp) != cl || !json_is_integer(st) ||
            !json_is_integer(sp) || json_integer_value(st) < 0 || json_integer_value(sp) < 0 ||
            json_integer_value(st) > 1000 || json_integer_value(sp) > 1000)
            return gt_errf(err, errn, "%s: %s: Strip needs a one-character content and small start/stop counts",
                        src, where);
        t->dec_strip = tok_memdup0(content, cl);
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
    if (need > *cat_cap || !*cat) { /* never NULL: memcpy's arguments must not be, even for 0 bytes */
        char *nc = realloc(*cat, 2 * need + 1);
        if (!nc) return -1;
        *cat = nc, *cat_cap = 2 * need + 1;
    }
    char *c = *cat;
    for (size_t j = 0; j < k; j++) {
        memcpy(c, q[3 * j].s, q[3 * j].n);
        memcpy(c + q[3 * j].n, q[3 * j + 1].s, q[3 * j + 1].n);
        q[3 * j + 2] = (piece_query){.s = c, .n = q[3 * j].n + q[3 * j + 1].n};
        c += q[3 * j + 2].n;
    }
    tok_piece_find_many(t, q, 3 * k);
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
    if (tok_merge_table_alloc(t, m) || !res || !bt) {
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
        tok_merge_put(t, merge_key(ia, ib), (uint32_t)r,
                  ic); /* a repeated pair: the later rank wins, as in tokenizers */
    }
    free(res);
    free(bt);
    for (int32_t i = 0; i < t->n; i++)
        if (isnan(t->score[i])) t->score[i] = t->type[i] == GT_PIECE_NORMAL ? -(float)(m + 1) : 0.0f;
    return rc;
}

/* model's kind and flags, and the shape of vocab, merges, unk_token and added_tokens. */
static int check_hf_model(gt_tokenizer *t, json_t *root, const hf_parts *parts, const char *src, char *err,
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
    return 0;
}

/* The vocabulary's size: one past the largest id of model.vocab and added_tokens. */
static int hf_vocab_size(const hf_parts *parts, json_t *added, int32_t *n, const char *src, char *err,
                         size_t errn) {
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
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX / 2 || !json_is_string(json_object_get(a, "content")))
            return gt_errf(err, errn, "%s: added_tokens[%zu]: expected {\"id\": N, \"content\": \"...\", ...}",
                        src, i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return gt_errf(err, errn, "%s: model.vocab is empty", src);
    /* Ids are dense, so an id past the entry count is a gap: refuse it before sizing tables by it. */
    size_t entries = json_array_size(added);
    for (int p = 0; p < parts->nv; p++) entries += json_object_size(parts->vocab[p]);
    if ((uint64_t)max_id >= entries)
        return gt_errf(err, errn, "%s: id %lld is beyond the %zu tokens given (ids must be 0..N-1 without gaps)",
                       src, (long long)max_id, entries);
    *n = (int32_t)(max_id + 1);
    return 0;
}

/* The text of each id: strs/lens point into the jansson values (n entries, zeroed). */
typedef struct { const char **strs; size_t *lens; uint8_t *added_kind; } hf_pieces; /* kind 1 added, 2 special */

static int hf_fill_vocab(const hf_parts *parts, hf_pieces *pc, const char *src, char *err, size_t errn) {
    for (int p = 0; p < parts->nv; p++)
        for (void *iter = json_object_iter(parts->vocab[p]); iter;
             iter = json_object_iter_next(parts->vocab[p], iter)) {
            int32_t id = (int32_t)json_integer_value(json_object_iter_value(iter));
            const char *k = json_object_iter_key(iter);
            if (pc->strs[id])
                return gt_errf(err, errn, "%s: model.vocab: id %d is given to both \"%s\" and \"%s\"", src, id,
                            pc->strs[id], k);
            pc->strs[id] = k, pc->lens[id] = json_object_iter_key_len(iter);
        }
    return 0;
}

static int hf_fill_added(json_t *added, hf_pieces *pc, const char *src, char *err, size_t errn) {
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        size_t cl = 0;
        const char *content = jstr(a, "content", &cl);
        int special = jbool(a, "special", false), norm = jbool(a, "normalized", false);
        const char *flags[] = {"single_word", "lstrip", "rstrip"};
        for (int f = 0; f < 3; f++)
            if (jbool(a, flags[f], false) != 0)
                return gt_errf(err, errn, "%s: added_tokens[%zu] \"%s\": %s is not supported", src, i, content,
                            flags[f]);
        if (special < 0 || norm < 0)
            return gt_errf(err, errn, "%s: added_tokens[%zu]: special and normalized must be booleans", src, i);
        if (pc->strs[id] && (pc->lens[id] != cl || memcmp(pc->strs[id], content, cl)))
            return gt_errf(err, errn, "%s: added_tokens[%zu]: id %d is \"%s\" here but \"%s\" in model.vocab",
                        src, i, id, content, pc->strs[id]);
        pc->strs[id] = content, pc->lens[id] = cl;
        pc->added_kind[id] = special ? 2 : 1;
    }
    return 0;
}

/* Piece types: the unk_token UNKNOWN, special added tokens CONTROL, other added tokens
 * USER_DEFINED, <0xNN> BYTE under byte_fallback, the rest NORMAL. */
static int hf_types(gt_tokenizer *t, const hf_pieces *pc, int32_t n, const char *unk_s, size_t unk_l,
                    const char *src, char *err, size_t errn) {
    for (int32_t i = 0; i < n; i++) {
        if (!pc->strs[i])
            return gt_errf(err, errn, "%s: id %d is missing from model.vocab and added_tokens", src, i);
        bool is_unk = unk_s && pc->lens[i] == unk_l && !memcmp(pc->strs[i], unk_s, unk_l);
        uint8_t ty = GT_PIECE_NORMAL;
        if (is_unk) ty = GT_PIECE_UNKNOWN;
        else if (pc->added_kind[i] == 2) ty = GT_PIECE_CONTROL;
        else if (pc->added_kind[i] == 1) ty = GT_PIECE_USER_DEFINED;
        else if (t->byte_fallback && is_byte_piece_upper(pc->strs[i], pc->lens[i]))
            ty = GT_PIECE_BYTE; /* tokenizers looks bytes up as "<0x%02X>" */
        t->type[i] = ty;
        t->score[i] = 0;
    }
    return 0;
}

/* normalizer, pre_tokenizer and decoder; added tokens must be safe to match on raw text. */
static int hf_text_rules(gt_tokenizer *t, json_t *root, json_t *added, const char *src, char *err,
                         size_t errn) {
    if (parse_normalizer(t, json_object_get(root, "normalizer"), "normalizer", src, err, errn)) return -1;
    /* Added tokens marked "normalized" are matched on normalized text by tokenizers; matching
     * them on the raw text is the same only when the normalizer leaves them alone. */
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        size_t cl = 0;
        const char *content = jstr(a, "content", &cl);
        for (int o = 0; jbool(a, "normalized", false) == 1 && o < t->n_norm; o++)
            if (t->norm[o].kind == OP_PREPEND || memmem(content, cl, t->norm[o].pat, t->norm[o].pat_len) ||
                memmem(content, cl, t->norm[o].rep, t->norm[o].rep_len))
                return gt_errf(err, errn, "%s: added_tokens[%zu] \"%s\": normalized matching of a token the "
                            "normalizer changes is not supported", src, i, content);
    }
    if (parse_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), src, err, errn)) return -1;
    json_t *dec = json_object_get(root, "decoder");
    if (!dec || json_is_null(dec))
        return gt_errf(err, errn, "%s: decoder: missing (expected Replace/ByteFallback/Fuse steps)", src);
    int stage = -1;
    return parse_decoder_step(t, dec, "decoder", &stage, src, err, errn);
}

static int load_hf_root(gt_tokenizer *t, json_t *root, const hf_parts *parts, const char *src, char *err,
                        size_t errn) {
    if (check_hf_model(t, root, parts, src, err, errn)) return -1;
    json_t *added = json_object_get(root, "added_tokens");
    json_t *unk_j = json_object_get(json_object_get(root, "model"), "unk_token");
    const char *unk_s = json_is_string(unk_j) ? json_string_value(unk_j) : NULL;
    size_t unk_l = unk_s ? json_string_length(unk_j) : 0;
    int32_t n = 0;
    if (hf_vocab_size(parts, added, &n, src, err, errn)) return -1;
    hf_pieces pc = {calloc((size_t)n, sizeof *pc.strs), calloc((size_t)n, sizeof *pc.lens),
                    calloc((size_t)n, 1)};
    t->type = malloc((size_t)n);
    t->score = malloc((size_t)n * sizeof *t->score);
    int rc = -1;
    if (!pc.strs || !pc.lens || !pc.added_kind || !t->type || !t->score) {
        gt_errf(err, errn, "%s: out of memory for %d pieces", src, n);
        goto out;
    }
    if (hf_fill_vocab(parts, &pc, src, err, errn) || hf_fill_added(added, &pc, src, err, errn) ||
        hf_types(t, &pc, n, unk_s, unk_l, src, err, errn) || tok_build(t, pc.strs, pc.lens, n, src, err, errn))
        goto out;
    if (unk_s && (t->unk = tok_piece_find(t, unk_s, unk_l)) < 0) {
        gt_errf(err, errn, "%s: model.unk_token \"%s\" is not in the vocabulary", src, unk_s);
        goto out;
    }
    if (hf_text_rules(t, root, added, src, err, errn) || load_merges(t, parts, src, err, errn)) goto out;
    tok_set_default_specials(t);
    rc = 0;
out:
    free(pc.strs);
    free(pc.lens);
    free(pc.added_kind);
    return rc;
}

int gt_tok_load_hf_json(const char *path, gt_tokenizer **out, char *err, size_t errn) {
    if (!out) return gt_errf(err, errn, "tokenizer: NULL output pointer");
    *out = NULL;
    if (!path) return gt_errf(err, errn, "tokenizer: NULL path");
    size_t n;
    char *buf = tok_read_file(path, &n, err, errn);
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
    tok_json_doc *doc;
    json_t *root;
    hf_parts parts;
    gt_tokenizer *t = NULL;
    int rc = tok_json_parse(buf, n, path, &doc, &root, &parts, err, errn);
    if (!rc && !(t = tok_alloc())) rc = gt_errf(err, errn, "%s: out of memory", path);
    if (!rc) rc = load_hf_root(t, root, &parts, path, err, errn);
    tok_json_doc_free(doc);
    if (rc) {
        gt_tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}
