/* tok_spm.c: SentencePiece ModelProto in and out (KerasHub's assets/tokenizer/vocabulary.spm,
 * tokenizer.model).
 *
 * Contract: gt_tok_load_spm(_buffer) reads the pieces, trainer_spec and normalizer_spec fields
 * that matter to a UNIGRAM, BPE or WORD model, with identity normalization or a
 * precompiled_charsmap (copied, its double array decoded and its sizes checked here; tokenizer.c
 * walks it with every index bounded), and builds the tokenizer through tok_internal.h (BPE:
 * tok_build_pair_table; UNIGRAM: min/max NORMAL scores); any other model is refused with a
 * message naming the field. gt_tok_save_spm writes the same fields back, atomically.
 * Nothing of the input buffer is kept. A minimal protobuf wire-format reader/writer lives here;
 * it knows no other message. */
#include "data/tokenizer.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "util/err.h"
#include "util/fsutil.h"

/* ================================================================ reader */

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
    const uint8_t *charsmap;
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
        case 2: PB_WANT(w, 2); m->charsmap = sub.p, m->charsmap_len = (size_t)(sub.end - sub.p); break;
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

/* normalizer_spec.precompiled_charsmap: [uint32 LE trie size][darts-clone double array of uint32
 * units][NUL-separated replacement strings]. Kept whole for gt_tok_save_spm; the units decoded. */
static int spm_charsmap(gt_tokenizer *t, const spm_model *m, const char *src, char *err, size_t errn) {
    const uint8_t *p = m->charsmap;
    size_t n = m->charsmap_len;
    if (n <= 4) return gt_errf(err, errn, "%s: normalizer_spec.precompiled_charsmap is only %zu bytes", src, n);
    uint32_t ts = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    if (ts < 4 || ts % 4 || ts > n - 4)
        return gt_errf(err, errn,
                       "%s: normalizer_spec.precompiled_charsmap: trie size %u does not fit its %zu bytes", src,
                       ts, n);
    t->charsmap = malloc(n);
    t->cm_units = malloc(ts);
    t->norm_name = tok_memdup0(m->norm_name ? m->norm_name : "", m->norm_name ? m->norm_name_len : 0);
    if (!t->charsmap || !t->cm_units || !t->norm_name) return gt_errf(err, errn, "%s: out of memory", src);
    memcpy(t->charsmap, p, n);
    t->charsmap_len = n;
    t->cm_n = ts / 4;
    for (size_t i = 0; i < t->cm_n; i++) {
        const uint8_t *q = p + 4 + 4 * i;
        t->cm_units[i] = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    }
    t->cm_norm = t->charsmap + 4 + ts;
    t->cm_norm_len = n - 4 - ts;
    return 0;
}

static int load_spm_model(gt_tokenizer *t, spm_model *m, const char *src, char *err, size_t errn) {
    if (m->n == 0) return gt_errf(err, errn, "%s: not a SentencePiece model: no pieces", src);
    if (m->model_type != 1 && m->model_type != 2 && m->model_type != 3)
        return gt_errf(err, errn,
                       "%s: trainer_spec.model_type is %s (%lld); only UNIGRAM (1), BPE (2) and WORD (3) are "
                       "supported",
                       src, m->model_type == 4 ? "CHAR" : "unknown", (long long)m->model_type);
    if (m->ws_suffix)
        return gt_errf(err, errn, "%s: trainer_spec.treat_whitespace_as_suffix is not supported", src);
    if (m->rules_len && !m->charsmap_len)
        return gt_errf(err, errn,
                       "%s: normalizer_spec \"%.*s\" has only normalization_rule_tsv rules, no "
                       "precompiled_charsmap; rebuild the model with SentencePiece so that it compiles them",
                       src, (int)m->norm_name_len, m->norm_name ? m->norm_name : "");
    if (m->charsmap_len && spm_charsmap(t, m, src, err, errn)) return -1;
    if (!t->norm_name && m->norm_name && m->norm_name_len &&
        !(t->norm_name = tok_memdup0(m->norm_name, m->norm_name_len)))
        return gt_errf(err, errn, "%s: out of memory", src);
    t->spm_model = (int)m->model_type;
    t->type = malloc((size_t)m->n);
    t->score = malloc((size_t)m->n * sizeof *t->score);
    if (!t->type || !t->score) return gt_errf(err, errn, "%s: out of memory", src);
    memcpy(t->type, m->types, (size_t)m->n);
    memcpy(t->score, m->scores, (size_t)m->n * sizeof *t->score);
    if (tok_build(t, m->strs, m->lens, m->n, src, err, errn) ||
        (t->spm_model == 2 && tok_build_pair_table(t, src, err, errn)))
        return -1;
    /* UNIGRAM: SentencePiece's min/max over NORMAL scores (FLT_MIN start: all-negative max is 0) */
    float lo = FLT_MAX, hi = FLT_MIN;
    for (int32_t i = 0; i < t->n; i++) {
        if (t->len[i] > t->max_piece_len) t->max_piece_len = t->len[i];
        if (t->type[i] != GT_PIECE_NORMAL) continue;
        if (t->score[i] < lo) lo = t->score[i];
        if (t->score[i] > hi) hi = t->score[i];
    }
    t->uni_min = lo == FLT_MAX ? 0.0f : lo;
    t->uni_max = hi == FLT_MIN ? 0.0f : hi;
    t->byte_fallback = m->byte_fallback;
    if (tok_set_spm_text_rules(t, m->escape_ws, m->add_dummy, m->remove_ws))
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
        int32_t id = m->piece_names[k] ? tok_piece_find(t, m->piece_names[k], m->piece_lens[k])
                                       : tok_piece_find(t, dflt[k], strlen(dflt[k]));
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
    char *buf = tok_read_file(path, &n, err, errn);
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

/* ================================================================ writer */

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
    pb_int(&sub, 3, t->spm_model == 1 || t->spm_model == 3 ? t->spm_model : 2); /* model_type */
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
    if (t->norm_name && t->norm_name[0]) pb_bytes(&sub, 1, t->norm_name, strlen(t->norm_name));
    else pb_bytes(&sub, 1, "identity", 8);
    if (t->charsmap_len) pb_bytes(&sub, 2, t->charsmap, t->charsmap_len);
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
