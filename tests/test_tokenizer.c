/* The Gemma tokenizer.
 *
 * Real vocabulary (262144 pieces): the tokenizer read from the tokenizer.ggml.* metadata of the
 * real Gemma 3 270M GGUF (out/models/gemma-3-270m-q4_k_m.gguf from `make model`, or
 * $GT_GEMMA3_270M_GGUF: tests/testdata.h), its .spm export and a gt_tok_from_pieces copy must
 * give every reference vector of tests/fixtures/vectors.jsonl (180 texts, ids from Hugging Face
 * `tokenizers` on the real tokenizer.json), also from 4 threads at once; hand-made cases (special
 * tokens on/off, byte fallback, whitespace and newline runs, bad UTF-8), whose ids come from
 * `tokenizers` and `sentencepiece`; and `gemmatrain tokenize --tokenizer MODEL.gguf` gives the
 * vector file back byte for byte. Without the GGUF these tests say "skipped" once and pass
 * vacuously.
 *
 * tokenizer.json loader (BPE merges, lowest rank first), always: the committed
 * tests/fixtures/gemma3-tokenizer-8k.json (8192 pieces and their 12619 merges cut from the real
 * file by tools/reference/make_small_tokenizer.py; ids < 1024 keep their real values) must give
 * every line of tests/fixtures/vectors-8k.jsonl (680 texts: the 180 above and the prompts and
 * responses of tests/fixtures/debian-*.jsonl; ids from `tokenizers` on that file, by
 * tools/reference/make_tokenizer_8k_vectors.py), through the library and through the CLI, byte
 * for byte; a copy padded past 4 MB takes the sliced (multi-threaded) parse and must load the
 * same tokenizer; truncated copies fail naming the file.
 *
 * Optional: with GT_GEMMA3_TOKENIZER_JSON naming the real Gemma 3 tokenizer.json (262145 ids;
 * e.g. from Hugging Face google/gemma-3-270m, not in the repository), it too must give every
 * vector of vectors.jsonl, pass the hand-made cases, and agree with the GGUF vocabulary piece for
 * piece but for what llama.cpp's converter changed (a few types, the spelling of the space runs:
 * see real_vocabularies_agree; the hand-made cases show what the types change).
 *
 * Always: the SentencePiece and tokenizers merge rules on tiny vocabularies, loader errors, and
 * the CLI's flags and errors. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "tests/testdata.h"
#include "train/loader.h"
#include "tests/cli_run.h"

#define VECTORS "tests/fixtures/vectors.jsonl"
#define N_VECTORS 180
#define JSON_8K "tests/fixtures/gemma3-tokenizer-8k.json"
#define VECTORS_8K "tests/fixtures/vectors-8k.jsonl"
#define N_VECTORS_8K 680
#define GGUF_VOCAB 262144 /* the real GGUF's pieces; tokenizer.json adds <image_soft_token> */
#define JSON_VOCAB 262145

static const char *g_gguf_path; /* the real model, or NULL: the real-vocabulary tests pass vacuously */
static const char *g_json_path; /* $GT_GEMMA3_TOKENIZER_JSON, or NULL */
static char g_tmp[256];         /* scratch folder, removed at exit */
static char g_spm_path[512];    /* the GGUF's vocabulary written as .spm */
static gt_tokenizer *g_gguf, *g_spm, *g_json, *g_8k;
static char g_err[1024], g_json_err[1024], g_8k_err[1024];

/* Real-vocabulary tests: return (pass) without the GGUF; fail when it is there but unusable. */
#define NEED_GGUF()                                                                                  \
    do {                                                                                             \
        if (!g_gguf_path) return;                                                                    \
        ck_assert_msg(g_gguf, "cannot read the tokenizer of %s: %s", g_gguf_path, g_err);            \
    } while (0)
#define NEED_SPM() \
    do { NEED_GGUF(); ck_assert_msg(g_spm, "cannot write/read the .spm export: %s", g_err); } while (0)
#define NEED_8K() ck_assert_msg(g_8k, "cannot load %s: %s", JSON_8K, g_8k_err)

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_tmp, name); }

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    char *b = malloc((size_t)sz + 1);
    size_t got = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (!b || got != (size_t)sz) {
        free(b);
        return NULL;
    }
    b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}

/* ---------------------------------------------------------------- vectors */

typedef struct { char *text; size_t len; int32_t *ids; size_t n; } vec;

/* The count lines of a {"text", "ids"} file. */
static vec *load_vectors(const char *path, size_t count) {
    FILE *f = fopen(path, "r");
    ck_assert_msg(f, "cannot open %s (tests run from the repo root)", path);
    vec *v = calloc(count + 1, sizeof *v);
    char *line = NULL;
    size_t cap = 0, k = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        ck_assert_msg(k < count, "%s has more than %zu lines", path, count);
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &je);
        ck_assert_msg(o, "%s:%zu: %s", path, k + 1, je.text);
        json_t *t = json_object_get(o, "text"), *ids = json_object_get(o, "ids");
        ck_assert(json_is_string(t) && json_is_array(ids));
        v[k].len = json_string_length(t);
        v[k].text = malloc(v[k].len + 1);
        memcpy(v[k].text, json_string_value(t), v[k].len + 1);
        v[k].n = json_array_size(ids);
        v[k].ids = malloc((v[k].n + 1) * sizeof *v[k].ids);
        for (size_t i = 0; i < v[k].n; i++) v[k].ids[i] = (int32_t)json_integer_value(json_array_get(ids, i));
        json_decref(o);
        k++;
    }
    free(line);
    fclose(f);
    ck_assert_uint_eq(k, count);
    return v;
}

static void free_vectors(vec *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].text);
        free(v[i].ids);
    }
    free(v);
}

/* Every vector encodes to its ids (special-token text matched, as the reference did) and the
 * ids decode back to the text; with matching off, the text still round-trips and no control
 * token appears. */
static void check_vector_file(const gt_tokenizer *tok, const char *what, const char *path, size_t n) {
    vec *v = load_vectors(path, n);
    gt_ids ids = {0};
    char err[512];
    for (size_t i = 0; i < n; i++) {
        ids.n = 0;
        ck_assert_msg(!gt_tok_encode(tok, v[i].text, v[i].len, true, &ids, err, sizeof err), "%s: %s", what,
                      err);
        bool same = ids.n == v[i].n && !memcmp(ids.ids, v[i].ids, ids.n * sizeof *ids.ids);
        size_t at = 0;
        while (at < ids.n && at < v[i].n && ids.ids[at] == v[i].ids[at]) at++;
        ck_assert_msg(same,
                      "%s: %s line %zu: %zu ids vs %zu expected, first difference at %zu: got %d, want %d",
                      what, path, i + 1, ids.n, v[i].n, at, at < ids.n ? ids.ids[at] : -1,
                      at < v[i].n ? v[i].ids[at] : -1);
        char *text;
        size_t tl;
        ck_assert(!gt_tok_decode(tok, v[i].ids, v[i].n, false, &text, &tl, err, sizeof err));
        ck_assert_msg(tl == v[i].len && !memcmp(text, v[i].text, tl), "%s: %s line %zu decodes differently",
                      what, path, i + 1);
        free(text);
        ids.n = 0;
        ck_assert(!gt_tok_encode(tok, v[i].text, v[i].len, false, &ids, err, sizeof err));
        for (size_t k = 0; k < ids.n; k++)
            ck_assert_msg(gt_tok_piece_type(tok, ids.ids[k]) != GT_PIECE_CONTROL,
                          "%s: %s line %zu: control token %d with match_special off", what, path, i + 1,
                          ids.ids[k]);
        ck_assert(!gt_tok_decode(tok, ids.ids, ids.n, false, &text, &tl, err, sizeof err));
        ck_assert_msg(tl == v[i].len && !memcmp(text, v[i].text, tl), "%s: %s line %zu does not round-trip "
                      "with match_special off", what, path, i + 1);
        free(text);
    }
    gt_ids_free(&ids);
    free_vectors(v, n);
}

static void check_vectors(const gt_tokenizer *tok, const char *what) {
    check_vector_file(tok, what, VECTORS, N_VECTORS);
}

/* Same pieces, types and scores, id for id. */
static void same_vocabulary(const gt_tokenizer *a, const gt_tokenizer *b) {
    ck_assert_int_eq(gt_tok_vocab_size(a), gt_tok_vocab_size(b));
    for (int32_t i = 0; i < gt_tok_vocab_size(a); i++) {
        ck_assert_str_eq(gt_tok_piece(a, i), gt_tok_piece(b, i));
        ck_assert_int_eq(gt_tok_piece_type(a, i), gt_tok_piece_type(b, i));
        ck_assert(gt_tok_piece_score(a, i) == gt_tok_piece_score(b, i));
    }
    ck_assert_int_eq(gt_tok_bos(a), gt_tok_bos(b));
    ck_assert_int_eq(gt_tok_eos(a), gt_tok_eos(b));
    ck_assert_int_eq(gt_tok_pad(a), gt_tok_pad(b));
    ck_assert_int_eq(gt_tok_unk(a), gt_tok_unk(b));
}

/* ---------------------------------------------------------------- the real vocabulary */

START_TEST(gguf_vocabulary_reproduces_every_vector) {
    NEED_GGUF();
    check_vectors(g_gguf, "GGUF");
    ck_assert_int_eq(gt_tok_vocab_size(g_gguf), GGUF_VOCAB);
    ck_assert_int_eq(gt_tok_bos(g_gguf), 2);
    ck_assert_int_eq(gt_tok_eos(g_gguf), 1);
    ck_assert_int_eq(gt_tok_pad(g_gguf), 0);
    ck_assert_int_eq(gt_tok_unk(g_gguf), 3);
}
END_TEST

START_TEST(spm_export_reproduces_every_vector) {
    NEED_SPM();
    check_vectors(g_spm, ".spm");
    /* The same vocabulary, piece for piece. */
    same_vocabulary(g_spm, g_gguf);
    ck_assert_int_eq(gt_tok_bos(g_spm), 2);
    ck_assert_int_eq(gt_tok_eos(g_spm), 1);
    ck_assert_int_eq(gt_tok_pad(g_spm), 0);
    ck_assert_int_eq(gt_tok_unk(g_spm), 3);
    /* Saving what was loaded gives the same bytes. */
    char again[600];
    tmp_path(again, sizeof again, "again.spm");
    ck_assert_msg(!gt_tok_save_spm(g_spm, again, g_err, sizeof g_err), "%s", g_err);
    size_t n1, n2;
    char *a = slurp(g_spm_path, &n1), *b = slurp(again, &n2);
    ck_assert(a && b);
    ck_assert_msg(n1 == n2 && !memcmp(a, b, n1), "re-saved .spm differs (%zu vs %zu bytes)", n1, n2);
    free(a);
    free(b);
}
END_TEST

START_TEST(from_pieces_reproduces_every_vector) {
    NEED_GGUF();
    int32_t n = gt_tok_vocab_size(g_gguf);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    for (int32_t i = 0; i < n; i++) {
        pieces[i] = gt_tok_piece(g_gguf, i);
        scores[i] = gt_tok_piece_score(g_gguf, i);
        types[i] = gt_tok_piece_type(g_gguf, i);
    }
    gt_tokenizer *t;
    ck_assert_msg(!gt_tok_from_pieces(pieces, scores, types, n, &t, g_err, sizeof g_err), "%s", g_err);
    free(pieces);
    free(scores);
    free(types);
    check_vectors(t, "from_pieces");
    /* BOS/EOS/PAD found by name */
    ck_assert_int_eq(gt_tok_bos(t), 2);
    ck_assert_int_eq(gt_tok_eos(t), 1);
    ck_assert_int_eq(gt_tok_pad(t), 0);
    ck_assert(!gt_tok_set_special(t, 2, 106, -1, NULL, 0));
    ck_assert_int_eq(gt_tok_eos(t), 106);
    ck_assert_int_eq(gt_tok_pad(t), -1);
    char err[256];
    ck_assert(gt_tok_set_special(t, n, 1, 0, err, sizeof err));
    ck_assert_msg(strstr(err, "bos") && strstr(err, "out of range"), "%s", err);
    gt_tok_free(t);
}
END_TEST

/* encode/decode on one tokenizer from many threads at once give the single-threaded ids. */
START_TEST(concurrent_encoding_matches) {
    NEED_SPM();
    vec *v = load_vectors(VECTORS, N_VECTORS);
    size_t n = N_VECTORS;
    int bad = 0;
    for (int k = 0; k < 2; k++) {
        const gt_tokenizer *t = k ? g_spm : g_gguf;
#pragma omp parallel for schedule(dynamic, 1) num_threads(4) reduction(+ : bad)
        for (size_t i = 0; i < 4 * n; i++) {
            gt_ids ids = {0};
            const vec *x = &v[i % n];
            char *text = NULL;
            size_t tl = 0;
            if (gt_tok_encode(t, x->text, x->len, true, &ids, NULL, 0) || ids.n != x->n ||
                memcmp(ids.ids, x->ids, ids.n * sizeof *ids.ids) ||
                gt_tok_decode(t, ids.ids, ids.n, false, &text, &tl, NULL, 0) || tl != x->len ||
                memcmp(text, x->text, tl))
                bad++;
            free(text);
            gt_ids_free(&ids);
        }
    }
    free_vectors(v, n);
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* The real tokenizer.json (optional, $GT_GEMMA3_TOKENIZER_JSON): every vector through its merges,
 * and the same pieces as the GGUF, but for what llama.cpp's converter changed:
 *   - types: <mask> and <unused0..6241> CONTROL (tokenizer.json: not special, so USER_DEFINED:
 *     always one token); <start_of_image> and <end_of_image> USER_DEFINED (tokenizer.json:
 *     special, so CONTROL);
 *   - the USER_DEFINED space runs (ids 138..167, 2 to 31 U+2581) are stored with plain spaces
 *     (its "pre-normalize user-defined spaces"); the ids they give are the same;
 *   - the GGUF stops before <image_soft_token> (262144, past the model's embedding).
 * Scores differ throughout (SentencePiece's in the GGUF, minus the merge rank here). */
START_TEST(real_vocabularies_agree) {
    if (!g_json_path) return;
    ck_assert_msg(g_json, "cannot load %s: %s", g_json_path, g_json_err);
    check_vectors(g_json, "tokenizer.json");
    ck_assert_int_eq(gt_tok_vocab_size(g_json), JSON_VOCAB);
    ck_assert_str_eq(gt_tok_piece(g_json, GGUF_VOCAB), "<image_soft_token>");
    if (!g_gguf) return;
    int retyped = 0, respaced = 0;
    for (int32_t i = 0; i < GGUF_VOCAB; i++) {
        const char *p = gt_tok_piece(g_gguf, i), *q = gt_tok_piece(g_json, i);
        int a = gt_tok_piece_type(g_gguf, i), b = gt_tok_piece_type(g_json, i);
        if (strcmp(p, q)) {
            size_t k = 0, j = 0;
            while (q[j] && !strncmp(q + j, "\xE2\x96\x81", 3) && p[k] == ' ') j += 3, k++;
            ck_assert_msg(!q[j] && !p[k] && a == GT_PIECE_USER_DEFINED && b == a,
                          "piece %d: \"%s\" in the GGUF, \"%s\" in tokenizer.json", i, p, q);
            respaced++;
        }
        if (a == b) continue;
        retyped++;
        bool control = !strcmp(p, "<mask>") || (!strncmp(p, "<unused", 7) && p[strlen(p) - 1] == '>');
        bool image = !strcmp(p, "<start_of_image>") || !strcmp(p, "<end_of_image>");
        ck_assert_msg((control && a == GT_PIECE_CONTROL && b == GT_PIECE_USER_DEFINED) ||
                          (image && a == GT_PIECE_USER_DEFINED && b == GT_PIECE_CONTROL),
                      "piece %d \"%s\": type %d in the GGUF, %d in tokenizer.json", i, p, a, b);
    }
    ck_assert_int_eq(retyped, 1 + 6242 + 2);
    ck_assert_int_eq(respaced, 30);
}
END_TEST
static void expect_ids(const gt_tokenizer *tok, const char *what, const char *text, size_t len, bool special,
                       const int32_t *want, size_t nwant) {
    gt_ids ids = {0};
    char err[512];
    ck_assert_msg(!gt_tok_encode(tok, text, len, special, &ids, err, sizeof err), "%s: %s", what, err);
    bool same = ids.n == nwant && (!nwant || !memcmp(ids.ids, want, nwant * sizeof *want));
    char got[512] = "";
    for (size_t i = 0; i < ids.n && strlen(got) < 450; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? "," : "", ids.ids[i]);
    ck_assert_msg(same, "%s: encode(\"%.*s\", special=%d) = [%s]", what, (int)len, text, special, got);
    char *back;
    size_t bl;
    ck_assert(!gt_tok_decode(tok, ids.ids, ids.n, false, &back, &bl, err, sizeof err));
    ck_assert_msg(bl == len && !memcmp(back, text, len), "%s: \"%.*s\" decodes to \"%s\"", what, (int)len,
                  text, back);
    free(back);
    gt_ids_free(&ids);
}

#define EXPECT(tok, what, text, special, ...)                                                        \
    do {                                                                                             \
        static const int32_t want_[] = {__VA_ARGS__};                                                \
        expect_ids(tok, what, text, sizeof(text) - 1, special, want_, sizeof want_ / sizeof *want_); \
    } while (0)


/* The real-vocabulary tokenizers the hand-made cases run on: the GGUF's and its .spm export (when
 * the GGUF is there), the real tokenizer.json (when given); none: the case passes vacuously. */
typedef struct { const gt_tokenizer *tok; const char *name; bool gguf_types; int32_t n; } real_tok;

static int real_toks(real_tok *r) {
    int n = 0;
    if (g_gguf_path) {
        ck_assert_msg(g_gguf, "cannot read the tokenizer of %s: %s", g_gguf_path, g_err);
        ck_assert_msg(g_spm, "cannot write/read the .spm export: %s", g_err);
        r[n++] = (real_tok){g_gguf, "GGUF", true, GGUF_VOCAB};
        r[n++] = (real_tok){g_spm, ".spm", true, GGUF_VOCAB};
    }
    if (g_json_path) {
        ck_assert_msg(g_json, "cannot load %s: %s", g_json_path, g_json_err);
        r[n++] = (real_tok){g_json, "tokenizer.json", false, JSON_VOCAB};
    }
    return n;
}

START_TEST(special_tokens_only_when_asked) {
    real_tok r[3];
    int nr = real_toks(r);
    for (int k = 0; k < nr; k++) {
        const char *w = r[k].name;
        const gt_tokenizer *t = r[k].tok;
        EXPECT(t, w, "<start_of_turn>user\nHi<end_of_turn>", true, 105, 2364, 107, 10979, 106);
        EXPECT(t, w, "<start_of_turn>user\nHi<end_of_turn>", false, 236820, 3041, 236779, 1340, 236779, 887,
               236813, 2364, 107, 10979, 236820, 643, 236779, 1340, 236779, 887, 236813);
        EXPECT(t, w, "<bos>", true, 2);
        EXPECT(t, w, "<bos>", false, 236820, 46757, 236813);
        EXPECT(t, w, "<start_of_image>", true, 255999);
        /* USER_DEFINED pieces are always one token, as in SentencePiece and tokenizers. */
        EXPECT(t, w, "<b>x</b>", false, 200, 236781, 209);
        EXPECT(t, w, "<unused0><mask>[multimodal]", true, 6, 4, 5);
        if (r[k].gguf_types) {
            /* llama.cpp's types (see real_vocabularies_agree): <unused0> and <mask> are CONTROL,
             * so text unless asked (ids: `tokenizers` with the two taken out of added_tokens);
             * <start_of_image> is USER_DEFINED, so always one token, even in training data */
            EXPECT(t, w, "<unused0><mask>[multimodal]", false, 236820, 63634, 236771, 1798, 1080, 236813, 5);
            EXPECT(t, w, "<start_of_image>", false, 255999);
        } else {
            EXPECT(t, w, "<unused0><mask>[multimodal]", false, 6, 4, 5);
            EXPECT(t, w, "<start_of_image>", false, 236820, 3041, 236779, 1340, 236779, 3304, 236813);
        }
        ck_assert_int_eq(gt_tok_vocab_size(t), r[k].n);
        ck_assert_int_eq(gt_tok_piece_id(t, "<start_of_turn>"), 105);
        ck_assert_int_eq(gt_tok_piece_id(t, "<no such piece>"), -1);
        ck_assert_str_eq(gt_tok_piece(t, 106), "<end_of_turn>");
        ck_assert_ptr_null(gt_tok_piece(t, r[k].n));
        ck_assert_ptr_null(gt_tok_piece(t, -1));
        ck_assert_int_eq(gt_tok_piece_type(t, 105), GT_PIECE_CONTROL);
        ck_assert_int_eq(gt_tok_piece_type(t, 3), GT_PIECE_UNKNOWN);
        ck_assert_int_eq(gt_tok_piece_type(t, 200), GT_PIECE_USER_DEFINED);
        ck_assert_int_eq(gt_tok_piece_type(t, 478), GT_PIECE_BYTE);
        ck_assert_int_eq(gt_tok_piece_type(t, 236781), GT_PIECE_NORMAL);
        ck_assert_int_eq(gt_tok_piece_type(t, 4), r[k].gguf_types ? GT_PIECE_CONTROL : GT_PIECE_USER_DEFINED);
        ck_assert_int_eq(gt_tok_piece_type(t, 255999), r[k].gguf_types ? GT_PIECE_USER_DEFINED : GT_PIECE_CONTROL);
        ck_assert_int_eq(gt_tok_piece_type(t, r[k].n), 0);
        ck_assert_int_eq(gt_tok_bos(t), 2);
        ck_assert_int_eq(gt_tok_eos(t), 1);
        ck_assert_int_eq(gt_tok_pad(t), 0);
        int32_t turn[] = {2, 105, 2364, 106, 1, 0};
        char *s;
        ck_assert(!gt_tok_decode(t, turn, 6, true, &s, NULL, NULL, 0));
        ck_assert_str_eq(s, "user");
        free(s);
        ck_assert(!gt_tok_decode(t, turn, 6, false, &s, NULL, NULL, 0));
        ck_assert_str_eq(s, "<bos><start_of_turn>user<end_of_turn><eos><pad>");
        free(s);
    }
}
END_TEST

START_TEST(byte_fallback_for_characters_outside_the_vocabulary) {
    real_tok r[3];
    int nr = real_toks(r);
    for (int k = 0; k < nr; k++) {
        const char *w = r[k].name;
        const gt_tokenizer *t = r[k].tok;
        EXPECT(t, w, "\xF0\x93\x80\x80", false, 478, 385, 366, 366); /* U+13000, Egyptian hieroglyph */
        EXPECT(t, w, "\xF0\xA0\x80\x80", false, 478, 398, 366, 366);         /* U+20000, CJK extension B */
        EXPECT(t, w,
               "Gr\xC3\xBC\xC3\x9F"
               "e, \xE4\xB8\x96\xE7\x95\x8C! \xF0\x9F\x99\x82",
               false, 9322, 236959, 16756, 236764, 84679, 236888, 57235);
        for (int32_t b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            ck_assert_int_eq(gt_tok_piece_type(t, gt_tok_piece_id(t, name)), GT_PIECE_BYTE);
        }
        /* A byte run that is not UTF-8 decodes to one U+FFFD per byte. */
        int32_t lone[] = {236746, 478, 385, 236763};
        char *s;
        size_t n;
        ck_assert(!gt_tok_decode(t, lone, 4, false, &s, &n, NULL, 0));
        ck_assert_str_eq(s, "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
        ck_assert_uint_eq(n, 8);
        free(s);
    }
}
END_TEST

START_TEST(empty_text_and_whitespace_runs) {
    real_tok r[3];
    int nr = real_toks(r);
    for (int k = 0; k < nr; k++) {
        const char *w = r[k].name;
        const gt_tokenizer *t = r[k].tok;
        expect_ids(t, w, "", 0, true, NULL, 0);
        char *s;
        size_t n = 99;
        ck_assert(!gt_tok_decode(t, NULL, 0, false, &s, &n, NULL, 0));
        ck_assert_str_eq(s, "");
        ck_assert_uint_eq(n, 0);
        free(s);
        EXPECT(t, w, " ", false, 236743);
        EXPECT(t, w, "  hello", false, 138, 23391);
        EXPECT(t, w, "hello ", false, 23391, 236743);
        EXPECT(t, w, "x y", false, 236781, 570);
        EXPECT(t, w, "x  y", false, 236781, 138, 236762);
        /* Runs of spaces: the longest run piece is 31 spaces. */
        EXPECT(t, w, "x                               y", false, 236781, 167, 236762);
        EXPECT(t, w, "x                                y", false, 236781, 167, 570);
        EXPECT(t, w, "x                                 y", false, 236781, 167, 138, 236762);
        EXPECT(t, w, "x                                                                y", false, 236781, 167,
               167, 138, 236762);
        EXPECT(t, w, "x                                                                                      "
                     "              y", false, 236781, 167, 167, 167, 143, 236762);
    }
}
END_TEST

START_TEST(newline_and_tab_runs) {
    real_tok r[3];
    int nr = real_toks(r);
    for (int k = 0; k < nr; k++) {
        const char *w = r[k].name;
        const gt_tokenizer *t = r[k].tok;
        EXPECT(t, w, "a\n\n\nb", false, 236746, 109, 236763);
        EXPECT(t, w, "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
               false, 137, 115);
        EXPECT(t, w, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t",
               false, 255998, 255976);
    }
}
END_TEST

START_TEST(encode_appends_and_rejects_bad_utf8) {
    real_tok r[3];
    int nr = real_toks(r);
    for (int k = 0; k < nr; k++) {
        const char *w = r[k].name;
        const gt_tokenizer *t = r[k].tok;
        gt_ids ids = {0};
        ck_assert(!gt_ids_push(&ids, 7));
        char err[256];
        ck_assert(!gt_tok_encode(t, "x y", 3, false, &ids, err, sizeof err));
        ck_assert_uint_eq(ids.n, 3);
        ck_assert_int_eq(ids.ids[0], 7);
        ck_assert_int_eq(ids.ids[2], 570);
        const char *bad[] = {"ab\xC3(",           "\xC0\xAF", "\xED\xA0\x80",
                             "x\xF4\x90\x80\x80", "\x80",     "ab\xE2\x96"};
        const char *at[] = {"byte 2", "byte 0", "byte 0", "byte 1", "byte 0", "byte 2"};
        for (int i = 0; i < 6; i++) {
            ck_assert_msg(gt_tok_encode(t, bad[i], strlen(bad[i]), false, &ids, err, sizeof err),
                          "%s: bad %d", w, i);
            ck_assert_msg(strstr(err, "invalid UTF-8") && strstr(err, at[i]), "%s", err);
            ck_assert_uint_eq(ids.n, 3);
        }
        int32_t out_of_range[] = {2, r[k].n};
        char *s = (char *)1, num[16];
        ck_assert(gt_tok_decode(t, out_of_range, 2, false, &s, NULL, err, sizeof err));
        ck_assert_ptr_null(s);
        snprintf(num, sizeof num, "%d", r[k].n);
        ck_assert_msg(strstr(err, num) && strstr(err, "position 1"), "%s", err);
        gt_ids_free(&ids);
    }
}
END_TEST

/* ---------------------------------------------------------------- tokenizer.json, 8192 pieces */

START_TEST(tokenizer_json_8k_reproduces_every_vector) {
    NEED_8K();
    check_vector_file(g_8k, "8k tokenizer.json", VECTORS_8K, N_VECTORS_8K);
    ck_assert_int_eq(gt_tok_vocab_size(g_8k), 8192);
    /* ids below 1024 are the real ones: Gemma's special and chat-template pieces keep their ids */
    ck_assert_int_eq(gt_tok_bos(g_8k), 2);
    ck_assert_int_eq(gt_tok_eos(g_8k), 1);
    ck_assert_int_eq(gt_tok_pad(g_8k), 0);
    ck_assert_int_eq(gt_tok_unk(g_8k), 3);
    ck_assert_int_eq(gt_tok_piece_id(g_8k, "<start_of_turn>"), 105);
    ck_assert_int_eq(gt_tok_piece_id(g_8k, "<end_of_turn>"), 106);
    ck_assert_int_eq(gt_tok_piece_id(g_8k, "<start_of_image>"), -1);
    ck_assert_int_eq(gt_tok_piece_type(g_8k, 105), GT_PIECE_CONTROL);
    ck_assert_int_eq(gt_tok_piece_type(g_8k, 3), GT_PIECE_UNKNOWN);
    ck_assert_int_eq(gt_tok_piece_type(g_8k, 4), GT_PIECE_USER_DEFINED);
    for (int32_t b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        ck_assert_int_eq(gt_tok_piece_type(g_8k, gt_tok_piece_id(g_8k, name)), GT_PIECE_BYTE);
    }
    /* ids from `tokenizers` on the same file; most of the text falls back to bytes */
    EXPECT(g_8k, "8k", "<start_of_turn>user\nHi<end_of_turn>", true, 105, 2364, 107, 8162, 8101, 106);
    EXPECT(g_8k, "8k", "<unused0><mask>[multimodal]", false, 6, 4, 5);
    EXPECT(g_8k, "8k", "<b>x</b>", false, 200, 8135, 209);
    EXPECT(g_8k, "8k", "x                                 y", false, 8135, 167, 138, 8116);
    EXPECT(g_8k, "8k", "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", false,
           137, 115);
    EXPECT(g_8k, "8k",
           "Gr\xC3\xBC\xC3\x9F"
           "e, \xE4\xB8\x96\xE7\x95\x8C! \xF0\x9F\x99\x82",
           false, 8165, 8104, 433, 426, 433, 397, 8098, 8118, 8097, 466, 422, 388, 469, 387, 378, 8183, 8097, 478,
           397, 391, 368);
}
END_TEST

/* The 8k file with whitespace after every comma outside strings, past 5 MB. */
static char *padded_8k(size_t *out_n) {
    size_t n;
    char *b = slurp(JSON_8K, &n);
    ck_assert_msg(b, "cannot read %s", JSON_8K);
    size_t commas = 0;
    bool str = false;
    for (size_t i = 0; i < n; i++) {
        if (str) {
            if (b[i] == '\\') i++;
            else if (b[i] == '"') str = false;
        } else if (b[i] == '"') {
            str = true;
        } else if (b[i] == ',') {
            commas++;
        }
    }
    size_t pad = ((5u << 20) - n) / commas + 1;
    char *o = malloc(n + commas * pad + 1);
    size_t k = 0;
    str = false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        o[k++] = c;
        if (str) {
            if (c == '\\') o[k++] = b[++i];
            else if (c == '"') str = false;
        } else if (c == '"') {
            str = true;
        } else if (c == ',') {
            for (size_t j = 0; j < pad; j++) o[k++] = j % 64 == 63 ? '\n' : ' ';
        }
    }
    o[k] = 0;
    free(b);
    *out_n = k;
    return o;
}

/* A tokenizer.json over 4 MB is parsed in slices (model.vocab and model.merges cut at top-level
 * commas, parsed on the OpenMP threads): the padded 8k file loads the same tokenizer. */
START_TEST(sliced_parse_of_a_big_tokenizer_json) {
    NEED_8K();
    size_t n;
    char *big = padded_8k(&n);
    ck_assert_uint_gt(n, 4u << 20);
    char path[600];
    tmp_path(path, sizeof path, "big.json");
    write_file(path, big, n);
    gt_tokenizer *t;
    ck_assert_msg(!gt_tok_load(path, &t, g_err, sizeof g_err), "%s", g_err);
    same_vocabulary(t, g_8k); /* scores come from merge ranks: the merges too, in order */
    check_vector_file(t, "padded 8k tokenizer.json", VECTORS_8K, N_VECTORS_8K);
    gt_tok_free(t);
    /* cut inside the sliced containers: named, invalid JSON */
    size_t cuts[] = {n / 2, n - n / 4};
    for (int i = 0; i < 2; i++) {
        write_file(path, big, cuts[i]);
        t = (gt_tokenizer *)1;
        char err[512];
        ck_assert(gt_tok_load(path, &t, err, sizeof err));
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(err, "big.json") && strstr(err, "invalid JSON"), "%s", err);
    }
    free(big);
}
END_TEST

/* jansson's allocator belongs to the process (config, metrics): a tokenizer.json load installs its
 * arena hooks only while it parses, takes jansson's values for the file from the arena (the
 * functions installed before see a handful of calls, not ~50k), and puts those functions back.
 * Under SAN=1 too: the arena runs there, fenced by ASan poisoning. */
static _Atomic long g_json_mallocs;
static void *counting_malloc(size_t n) {
    g_json_mallocs++;
    return malloc(n);
}
static void counting_free(void *p) { free(p); }

START_TEST(jansson_allocator_is_left_as_it_was) {
    NEED_8K();
    json_malloc_t m0, m1;
    json_free_t f0, f1;
    json_get_alloc_funcs(&m0, &f0);
    json_set_alloc_funcs(counting_malloc, counting_free);
    json_t *before = json_pack("{s:i}", "a", 1); /* made before the load, freed after it */
    g_json_mallocs = 0;
    gt_tokenizer *t;
    int rc = gt_tok_load_hf_json(JSON_8K, &t, g_err, sizeof g_err);
    long during = g_json_mallocs;
    json_get_alloc_funcs(&m1, &f1);
    json_t *after = json_object();
    long later = g_json_mallocs - during;
    json_decref(before);
    json_decref(after);
    json_set_alloc_funcs(m0, f0);
    ck_assert_msg(!rc, "%s", g_err);
    ck_assert(m1 == counting_malloc && f1 == counting_free);
    ck_assert_int_gt(later, 0);
    ck_assert_int_lt(during, 100);
    same_vocabulary(t, g_8k);
    gt_tok_free(t);
}
END_TEST

/* ---------------------------------------------------------------- tiny vocabularies */

/* SentencePiece rule: highest score first, ties to the leftmost pair, UNUSED pieces merge but
 * are split back, unknown characters become bytes or one <unk> per run. */
START_TEST(sentencepiece_rule_on_a_tiny_vocabulary) {
    const char *p[] = {"<unk>", "<s>",  "</s>",         "a",      "b",  "c", "d", "ab", "bc",
                       "abc",   "abcd", "\xE2\x96\x81", "<0x7A>", "<x>"};
    float sc[] = {0, 0, 0, 0, 0, 0, 0, -2, -1, 0, 1, 0, 0, 0};
    int32_t ty[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 5, 1, 1, 6, 4};
    gt_tokenizer *t;
    ck_assert_msg(!gt_tok_from_pieces(p, sc, ty, 14, &t, g_err, sizeof g_err), "%s", g_err);
    ck_assert_int_eq(gt_tok_bos(t), 1);
    ck_assert_int_eq(gt_tok_eos(t), 2);
    ck_assert_int_eq(gt_tok_pad(t), -1);
    ck_assert_int_eq(gt_tok_unk(t), 0);
    EXPECT(t, "tiny", "abc", false, 3, 8);      /* bc (-1) beats ab (-2); abc is UNUSED: split back */
    EXPECT(t, "tiny", "abcd", false, 10);       /* a|bc -> abc (UNUSED, only a step) -> abcd */
    EXPECT(t, "tiny", "a b", false, 3, 11, 4);
    EXPECT(t, "tiny", "z", false, 12);          /* byte fallback */
    /* user-defined always, control only when asked; unknown characters without a byte piece
     * become one <unk> per run */
    gt_ids ids = {0};
    ck_assert(!gt_tok_encode(t, "<x>a<s>zq", 9, false, &ids, NULL, 0));
    int32_t off[] = {13, 3, 0, 12, 0};
    ck_assert_uint_eq(ids.n, 5);
    ck_assert(!memcmp(ids.ids, off, sizeof off));
    ids.n = 0;
    ck_assert(!gt_tok_encode(t, "<x>a<s>zq", 9, true, &ids, NULL, 0));
    int32_t on[] = {13, 3, 1, 12, 0};
    ck_assert_uint_eq(ids.n, 5);
    ck_assert(!memcmp(ids.ids, on, sizeof on));
    gt_ids_free(&ids);
    gt_tok_free(t);
}
END_TEST

/* SentencePiece matches a USER_DEFINED piece in the escaped text: "\u2581x\u2581" matches " x "
 * of the input, though no merge can build it (there is no "\u2581x"). */
START_TEST(user_defined_pieces_match_spaces_as_u2581) {
    const char *p[] = {"<unk>", "a", "b", "x", "\xE2\x96\x81", "\xE2\x96\x81x\xE2\x96\x81"};
    int32_t ty[] = {2, 1, 1, 1, 1, 4};
    gt_tokenizer *t;
    ck_assert_msg(!gt_tok_from_pieces(p, NULL, ty, 6, &t, g_err, sizeof g_err), "%s", g_err);
    EXPECT(t, "tiny", "a x b", false, 1, 5, 2);
    EXPECT(t, "tiny", "ax b", false, 1, 3, 4, 2); /* no space before x: no match */
    char *s;
    size_t n;
    int32_t ids[] = {1, 5, 2};
    ck_assert(!gt_tok_decode(t, ids, 3, false, &s, &n, g_err, sizeof g_err));
    ck_assert_str_eq(s, "a x b");
    free(s);
    gt_tok_free(t);
}
END_TEST

/* llama.cpp's GGUF spells Gemma's whitespace-run pieces with spaces; we spell them as the
 * SentencePiece model does, so that a .spm written from the GGUF works in real SentencePiece
 * (tools/reference/check_spm.py --gguf), and they still match runs of spaces. */
START_TEST(gguf_whitespace_pieces_are_spelled_as_sentencepiece_does) {
    if (!g_gguf) return;
    ck_assert_str_eq(gt_tok_piece(g_gguf, 138), "\xE2\x96\x81\xE2\x96\x81");
    ck_assert_int_eq(gt_tok_piece_type(g_gguf, 138), GT_PIECE_USER_DEFINED);
    ck_assert_str_eq(gt_tok_piece(g_gguf, 167), "\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81"
                                          "\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81"
                                          "\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81"
                                          "\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81"
                                          "\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81"
                                          "\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81"
                                          "\xE2\x96\x81");
    if (g_spm) ck_assert_str_eq(gt_tok_piece(g_spm, 138), "\xE2\x96\x81\xE2\x96\x81");
    /* the ids Hugging Face tokenizers gives with the real tokenizer.json (and real sentencepiece
     * with the .spm written from the GGUF) */
    EXPECT(g_gguf, "gguf", "def f():\n    return 1\n", false, 2063, 517, 6141, 107, 140, 2060, 236743, 236770, 107);
    EXPECT(g_gguf, "gguf", "a   b    c", false, 236746, 139, 236763, 140, 236755);
    EXPECT(g_gguf, "gguf", "<h1>  Title </h1>", false, 184, 138, 7396, 236743, 191);
}
END_TEST

START_TEST(sentencepiece_rule_ties_and_unknowns) {
    const char *p[] = {"<unk>", "<s>", "a", "b", "c", "ab", "bc", "<x>"};
    float sc[] = {0, 0, 0, 0, 0, -1, -1, 0};
    int32_t ty[] = {2, 3, 1, 1, 1, 1, 1, 4};
    gt_tokenizer *t;
    ck_assert_msg(!gt_tok_from_pieces(p, sc, ty, 8, &t, g_err, sizeof g_err), "%s", g_err);
    gt_ids ids = {0};
    /* equal scores: the leftmost pair merges first */
    ck_assert(!gt_tok_encode(t, "abc", 3, false, &ids, NULL, 0));
    ck_assert_uint_eq(ids.n, 2);
    ck_assert_int_eq(ids.ids[0], 5);
    ck_assert_int_eq(ids.ids[1], 4);
    /* no byte pieces: a run of unknown characters is one <unk>; user-defined pieces always match,
     * control pieces only when asked */
    ids.n = 0;
    ck_assert(!gt_tok_encode(t, "qq<x>a<s>", 9, false, &ids, NULL, 0));
    int32_t want[] = {0, 7, 2, 0};
    ck_assert_uint_eq(ids.n, 4);
    ck_assert(!memcmp(ids.ids, want, sizeof want));
    ids.n = 0;
    ck_assert(!gt_tok_encode(t, "qq<x>a<s>", 9, true, &ids, NULL, 0));
    int32_t want2[] = {0, 7, 2, 1};
    ck_assert_uint_eq(ids.n, 4);
    ck_assert(!memcmp(ids.ids, want2, sizeof want2));
    gt_ids_free(&ids);
    /* A control piece spelled out is never built by merges either. */
    const char *p2[] = {"<unk>", "a", "b", "ab"};
    int32_t ty2[] = {2, 1, 1, 3};
    gt_tokenizer *t2;
    ck_assert(!gt_tok_from_pieces(p2, NULL, ty2, 4, &t2, NULL, 0));
    EXPECT(t2, "tiny2", "ab", false, 1, 2);
    gt_tok_free(t2);
    gt_tok_free(t);
    /* bad input */
    const char *dup[] = {"a", "a"};
    ck_assert(gt_tok_from_pieces(dup, NULL, NULL, 2, &t, g_err, sizeof g_err));
    ck_assert_msg(strstr(g_err, "duplicate piece \"a\""), "%s", g_err);
    int32_t bad_type[] = {1, 9};
    const char *two[] = {"a", "b"};
    ck_assert(gt_tok_from_pieces(two, NULL, bad_type, 2, &t, g_err, sizeof g_err));
    ck_assert_msg(strstr(g_err, "type 9"), "%s", g_err);
    const char *empty[] = {"a", ""};
    ck_assert(gt_tok_from_pieces(empty, NULL, NULL, 2, &t, g_err, sizeof g_err));
    ck_assert_msg(strstr(g_err, "piece 1 is empty"), "%s", g_err);
}
END_TEST

static gt_tokenizer *load_json_text(const char *name, const char *json, char *err, size_t errn) {
    char path[600];
    tmp_path(path, sizeof path, name);
    write_file(path, json, strlen(json));
    gt_tokenizer *t = NULL;
    if (gt_tok_load(path, &t, err, errn)) return NULL;
    return t;
}

/* tokenizers rule: lowest merge rank first (not score), Prepend / Strip (Gemma 1 style), Split. */
START_TEST(tokenizer_json_rules_on_a_tiny_vocabulary) {
    const char *json =
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
        "                    {\"id\": 1, \"content\": \"<s>\", \"special\": true}],"
        " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
        "\"\xE2\x96\x81\"},"
        "     {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},"
        " \"pre_tokenizer\": null,"
        " \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
        "     {\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, \"content\": \" \"},"
        "     {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", "
        "\"start\": 1, \"stop\": 0}]},"
        " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": false, \"fuse_unk\": "
        "true,"
        "   \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"\xE2\x96\x81\": 2, \"a\": 3, \"b\": 4, \"\xE2\x96\x81"
        "a\": 5, \"ab\": 6,"
        "              \"\xE2\x96\x81"
        "ab\": 7, \"<s\": 8, \">\": 9, \"s\": 10, \"<\": 11},"
        "   \"merges\": [[\"a\", \"b\"], [\"\xE2\x96\x81\", \"a\"], [\"\xE2\x96\x81\", \"ab\"], \"< s\", "
        "[\"<s\", \">\"]]}}";
    gt_tokenizer *t = load_json_text("tiny.json", json, g_err, sizeof g_err);
    ck_assert_msg(t, "%s", g_err);
    gt_ids ids = {0};
    /* "ab" -> "_ab": a+b (rank 0) before _+a (rank 1), then _+ab; decode strips the prefix */
    EXPECT(t, "tiny.json", "ab ab", false, 7, 7);
    ck_assert(!gt_tok_encode(t, "zz", 2, false, &ids, NULL, 0)); /* unknowns fuse into one <unk> */
    ck_assert_uint_eq(ids.n, 2);
    ck_assert_int_eq(ids.ids[0], 2);
    ck_assert_int_eq(ids.ids[1], 0);
    /* "<s>" spelled out: the merge that would make the control piece is dropped */
    ids.n = 0;
    ck_assert(!gt_tok_encode(t, "<s>", 3, false, &ids, NULL, 0));
    int32_t want[] = {2, 8, 9};
    ck_assert_uint_eq(ids.n, 3);
    ck_assert(!memcmp(ids.ids, want, sizeof want));
    ids.n = 0;
    ck_assert(!gt_tok_encode(t, "<s>", 3, true, &ids, NULL, 0));
    ck_assert_uint_eq(ids.n, 1);
    ck_assert_int_eq(ids.ids[0], 1);
    gt_ids_free(&ids);
    ck_assert_int_eq(gt_tok_bos(t), 1);
    ck_assert_int_eq(gt_tok_unk(t), 0);
    /* Prepend(U+2581) and Replace(" ", U+2581) are add_dummy_prefix and escape_whitespaces */
    char spm[600];
    tmp_path(spm, sizeof spm, "tiny.spm");
    ck_assert_msg(!gt_tok_save_spm(t, spm, g_err, sizeof g_err), "%s", g_err);
    gt_tok_free(t);

    /* Split behaviours on "-" */
    static const struct { const char *behavior; int32_t ids[3]; size_t n; } cases[] = {
        {"Isolated", {0, 1, 0}, 3}, {"MergedWithPrevious", {2, 0, 0}, 2}, {"Removed", {0, 0, 0}, 2},
        {"MergedWithNext", {0, 3, 0}, 2}, {"Contiguous", {0, 1, 0}, 3}};
    for (int c = 0; c < 5; c++) {
        char buf[1024];
        snprintf(buf, sizeof buf,
                 "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": "
                 "\"%s\","
                 " \"invert\": false}, \"decoder\": {\"type\": \"Fuse\"},"
                 " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"-\": 1, \"a-\": 2, \"-a\": 3},"
                 " \"merges\": [[\"a\", \"-\"], [\"-\", \"a\"]]}}",
                 cases[c].behavior);
        t = load_json_text("split.json", buf, g_err, sizeof g_err);
        ck_assert_msg(t, "%s: %s", cases[c].behavior, g_err);
        ck_assert(!gt_tok_encode(t, "a-a", 3, false, &ids, g_err, sizeof g_err));
        ck_assert_msg(ids.n == cases[c].n && !memcmp(ids.ids, cases[c].ids, ids.n * sizeof *ids.ids),
                      "%s: %zu ids, first %d", cases[c].behavior, ids.n, ids.n ? ids.ids[0] : -1);
        ids.n = 0;
        /* a Split that can fire has no SentencePiece equivalent */
        ck_assert(gt_tok_save_spm(t, spm, g_err, sizeof g_err));
        ck_assert_msg(strstr(g_err, "Split"), "%s", g_err);
        gt_tok_free(t);
    }
    gt_ids_free(&ids);
}
END_TEST

/* Replace steps that feed each other multiply the text: a chain that would grow it past the cap
 * (64x the segment plus 64 KiB) is refused by name instead of filling memory; a short chain of
 * the same steps still encodes. */
static gt_tokenizer *growing_tokenizer(int steps, const char *rep) {
    char json[4096];
    size_t k = (size_t)snprintf(json, sizeof json, "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [");
    for (int i = 0; i < steps; i++)
        k += (size_t)snprintf(json + k, sizeof json - k,
                              "%s{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"%s\"}",
                              i ? ", " : "", rep);
    snprintf(json + k, sizeof json - k,
             "]}, \"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"aa\": 1}, \"merges\": [[\"a\", \"a\"]]}}");
    return load_json_text("growing.json", json, g_err, sizeof g_err);
}

START_TEST(normalizer_growth_is_capped) {
    const char *x16 = "aaaaaaaaaaaaaaaa";
    gt_ids ids = {0};
    gt_tokenizer *t = growing_tokenizer(3, "aa");
    ck_assert_msg(t, "%s", g_err);
    ck_assert_msg(!gt_tok_encode(t, "aa", 2, false, &ids, g_err, sizeof g_err), "%s", g_err);
    ck_assert_uint_eq(ids.n, 8); /* 16 a's, merged in pairs */
    gt_tok_free(t);
    ids.n = 0;
    t = growing_tokenizer(8, x16); /* 16^8 times the text */
    ck_assert_msg(t, "%s", g_err);
    ck_assert(gt_tok_encode(t, "aa", 2, false, &ids, g_err, sizeof g_err));
    ck_assert_msg(strstr(g_err, "normalizer grows a 2-byte text past 65664 bytes"), "%s", g_err);
    ck_assert_uint_eq(ids.n, 0);
    gt_tok_free(t);
    /* 16^4 = 65536 a's from "a": under its cap of 65600 */
    t = growing_tokenizer(4, x16);
    ck_assert_msg(t, "%s", g_err);
    ck_assert_msg(!gt_tok_encode(t, "a", 1, false, &ids, g_err, sizeof g_err), "%s", g_err);
    ck_assert_uint_eq(ids.n, 32768);
    gt_tok_free(t);
    gt_ids_free(&ids);
}
END_TEST

/* ---------------------------------------------------------------- loader errors */

START_TEST(missing_files_are_named) {
    gt_tokenizer *t = (gt_tokenizer *)1;
    char err[512];
    int (*loaders[])(const char *, gt_tokenizer **, char *, size_t) = {gt_tok_load, gt_tok_load_hf_json,
                                                                        gt_tok_load_spm};
    for (int i = 0; i < 3; i++) {
        t = (gt_tokenizer *)1;
        ck_assert(loaders[i]("/nonexistent/dir/tokenizer.json", &t, err, sizeof err));
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(err, "/nonexistent/dir/tokenizer.json") && strstr(err, "No such file"), "%s",
                      err);
    }
}
END_TEST

static void expect_json_error(const char *json, const char *a, const char *b) {
    char err[1024];
    gt_tokenizer *t = load_json_text("bad.json", json, err, sizeof err);
    ck_assert_msg(!t, "loaded: %s", json);
    ck_assert_msg(strstr(err, "bad.json") && strstr(err, a) && (!b || strstr(err, b)), "for %s: %s", json,
                  err);
}

START_TEST(malformed_tokenizer_json) {
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [", "invalid JSON",
                      NULL);
    expect_json_error("[1, 2]", "top level", NULL);
    expect_json_error("{\"model\": 3}", "model", "object");
    expect_json_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram", "BPE only");
    const char *tail =
        ", \"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
        "\"b\": 1}, \"merges\": []}}";
    char buf[1024];
    snprintf(buf, sizeof buf, "{\"normalizer\": {\"type\": \"NFKC\"}%s", tail);
    expect_json_error(buf, "normalizer", "\"NFKC\" is not supported");
    snprintf(
        buf, sizeof buf,
        "{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \"x\"}%s",
        tail);
    expect_json_error(buf, "Regex", NULL);
    snprintf(buf, sizeof buf, "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}%s", tail);
    expect_json_error(buf, "pre_tokenizer", "ByteLevel");
    expect_json_error(
        "{\"decoder\": {\"type\": \"Metaspace\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
        "\"merges\": []}}",
        "decoder", "Metaspace");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "decoder",
                      "missing");
    expect_json_error(
        "{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
        "\"b\": 1}, \"merges\": [[\"a\", \"c\"]]}}",
        "model.merges[0]", "\"c\" is not in the vocabulary");
    /* the only merge malformed: nothing to join (fuzz_tokenizer_json found a NULL memcpy here) */
    expect_json_error(
        "{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
        "\"b\": 1}, \"merges\": [\"ab\"]}}",
        "model.merges[0]", "expected [\"left\", \"right\"]");
    expect_json_error(
        "{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
        "\"b\": 2}, \"merges\": []}}",
        "id 2 is beyond the 2 tokens given", NULL);
    /* an added token repeating a vocab id leaves room for the gap to be found by id */
    expect_json_error(
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"a\"}], \"decoder\": {\"type\": \"Fuse\"}, "
        "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}}",
        "id 1 is missing", NULL);
    /* a far id once sized the tables by it (fuzz_tokenizer_json: a 7.5 GB calloc) */
    expect_json_error(
        "{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
        "\"b\": 944444445}, \"merges\": []}}",
        "id 944444445 is beyond the 2 tokens given", NULL);
    expect_json_error(
        "{\"decoder\": {\"type\": \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
        "\"a\": 1}, \"merges\": []}}",
        "invalid JSON", "duplicate");
    expect_json_error(
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"x\", \"lstrip\": true}], \"decoder\": {\"type\":"
        " \"Fuse\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1}, \"merges\": []}}",
        "lstrip", NULL);
}
END_TEST

START_TEST(truncated_tokenizer_json_names_the_file) {
    size_t n;
    char *full = slurp(JSON_8K, &n);
    ck_assert_msg(full, "cannot read %s", JSON_8K);
    char path[600];
    tmp_path(path, sizeof path, "truncated.json");
    size_t cuts[] = {4096, n / 2}; /* in added_tokens; in the middle of merges */
    for (int i = 0; i < 2; i++) {
        write_file(path, full, cuts[i]);
        gt_tokenizer *t = (gt_tokenizer *)1;
        char err[512];
        ck_assert(gt_tok_load(path, &t, err, sizeof err));
        ck_assert_ptr_null(t);
        ck_assert_msg(strstr(err, "truncated.json") && strstr(err, "invalid JSON"), "%s", err);
    }
    free(full);
}
END_TEST

START_TEST(not_a_model_proto) {
    char path[600], err[512];
    gt_tokenizer *t;
    tmp_path(path, sizeof path, "text.spm");
    write_file(path, "hello world\n", 12);
    ck_assert(gt_tok_load_spm(path, &t, err, sizeof err));
    ck_assert_msg(strstr(err, "text.spm") && strstr(err, "not a SentencePiece"), "%s", err);
    ck_assert(gt_tok_load(path, &t, err, sizeof err));
    ck_assert_msg(strstr(err, "not a SentencePiece"), "%s", err);
    tmp_path(path, sizeof path, "empty.spm");
    write_file(path, "", 0);
    ck_assert(gt_tok_load_spm(path, &t, err, sizeof err));
    ck_assert_msg(strstr(err, "empty.spm") && strstr(err, "no pieces"), "%s", err);
    /* JSON handed to the proto reader */
    tmp_path(path, sizeof path, "json.spm");
    write_file(path, "{\"model\": {}}", 13);
    ck_assert(gt_tok_load_spm(path, &t, err, sizeof err));
    ck_assert_msg(strstr(err, "not a SentencePiece ModelProto"), "%s", err);
    /* A valid proto, but a CHAR model: piece "a", trainer_spec.model_type = 4 (UNIGRAM and WORD
     * are read since issue 19: tests/test_spm.c) */
    tmp_path(path, sizeof path, "char.spm");
    write_file(path, "\x0A\x03\x0A\x01" "a" "\x12\x02\x18\x04", 9);
    ck_assert(gt_tok_load_spm(path, &t, err, sizeof err));
    ck_assert_msg(strstr(err, "CHAR") && strstr(err, "only UNIGRAM (1), BPE (2)"), "%s", err);
    /* gt_tok_load reads a GGUF's vocabulary (tok_gguf.c), and names the file when it is broken */
    tmp_path(path, sizeof path, "model.gguf");
    write_file(path, "GGUF\x03\0\0\0", 8);
    t = (gt_tokenizer *)1;
    ck_assert(gt_tok_load(path, &t, err, sizeof err));
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, "model.gguf"), "%s", err);
    ck_assert(gt_tok_load("/nonexistent/m.gguf", &t, err, sizeof err));
    ck_assert_msg(strstr(err, "/nonexistent/m.gguf") && strstr(err, "No such file"), "%s", err);
}
END_TEST

START_TEST(truncated_and_mutated_spm_fail_cleanly) {
    /* A small model written by us, then cut and mutated: every load either works or fails with a
     * message (the sanitizer build checks that nothing is read out of bounds). */
    const char *p[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "\xE2\x96\x81", "<0x41>"};
    float sc[] = {0, 0, 0, 0, 0, -1, 0, 0};
    int32_t ty[] = {2, 3, 3, 1, 1, 1, 1, 6};
    gt_tokenizer *t;
    ck_assert(!gt_tok_from_pieces(p, sc, ty, 8, &t, NULL, 0));
    char path[600], cut[600], err[512];
    tmp_path(path, sizeof path, "small.spm");
    tmp_path(cut, sizeof cut, "cut.spm");
    ck_assert_msg(!gt_tok_save_spm(t, path, err, sizeof err), "%s", err);
    gt_tok_free(t);
    size_t n;
    unsigned char *good = (unsigned char *)slurp(path, &n);
    ck_assert(good && n > 40);
    ck_assert(!gt_tok_load_spm(path, &t, err, sizeof err));
    EXPECT(t, "small.spm", "ab a", false, 5, 6, 3);
    gt_tok_free(t);
    write_file(cut, good, n - 3);
    ck_assert(gt_tok_load_spm(cut, &t, err, sizeof err));
    ck_assert_msg(strstr(err, "cut.spm") && strstr(err, "truncated"), "%s", err);
    unsigned s = 12345;
    int loaded = 0, failed = 0;
    unsigned char *m = malloc(n);
    for (int i = 0; i < 300; i++) {
        memcpy(m, good, n);
        size_t len = n;
        for (int k = 0; k < 1 + i % 4; k++) {
            s = s * 1103515245u + 12345u;
            m[(s >> 8) % n] = (unsigned char)(s >> 20);
        }
        if (i % 3 == 0) len = (s >> 4) % n;
        write_file(cut, m, len);
        t = NULL;
        err[0] = 0;
        if (gt_tok_load_spm(cut, &t, err, sizeof err)) {
            ck_assert_ptr_null(t);
            ck_assert_msg(strstr(err, "cut.spm"), "no file name in: %s", err);
            failed++;
        } else {
            gt_ids ids = {0};
            gt_tok_encode(t, "ab a\xE2\x96\x81", 7, true, &ids, NULL, 0);
            gt_ids_free(&ids);
            gt_tok_free(t);
            loaded++;
        }
    }
    free(m);
    free(good);
    ck_assert_int_gt(failed, 0);
    ck_assert_int_eq(loaded + failed, 300);
}
END_TEST

/* ---------------------------------------------------------------- gemmatrain tokenize */


/* ---------------------------------------------------------------- gemmatrain tokenize */

/* Runs `gemmatrain ARGS < in` with stdout (and stderr, 2>&1) to a file; returns the exit code. */
static int run_cli(const char *args, const char *in, char **out, bool with_stderr) {
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    char outp[600], cmd[4096];
    tmp_path(outp, sizeof outp, "cli.out");
    snprintf(cmd, sizeof cmd, "%s %s < %s > %s %s", bin, args, in, outp,
             with_stderr ? "2>&1" : "2>/dev/null");
    int st = system(cmd);
    *out = slurp(outp, NULL);
    ck_assert_ptr_nonnull(*out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `tokenize --match-special` gives the vector file back byte for byte, and `--decode` of it the
 * same ids and texts as {"ids": ..., "text": ...} lines. */
static void cli_round_trip(const char *tok, const char *vectors, size_t count) {
    char args[4200], *out;
    snprintf(args, sizeof args, "tokenize --tokenizer %s --match-special", tok);
    ck_assert_int_eq(run_cli(args, vectors, &out, false), 0);
    size_t n;
    char *want = slurp(vectors, &n);
    ck_assert(want);
    ck_assert_msg(strlen(out) == n && !memcmp(out, want, n), "--tokenizer %s: output differs from %s", tok,
                  vectors);
    free(out);
    char dec[600];
    tmp_path(dec, sizeof dec, "ids.jsonl");
    write_file(dec, want, n);
    snprintf(args, sizeof args, "tokenize --tokenizer %s --decode", tok);
    ck_assert_int_eq(run_cli(args, dec, &out, false), 0);
    size_t lines = 0;
    char *wl = want;
    for (char *line = out, *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, &je), *w = NULL;
        ck_assert_msg(o, "%s", je.text);
        char *wn = strchr(wl, '\n');
        ck_assert(wn);
        w = json_loadb(wl, (size_t)(wn - wl), JSON_ALLOW_NUL, &je);
        ck_assert(w);
        wl = wn + 1;
        ck_assert(json_equal(json_object_get(o, "text"), json_object_get(w, "text")));
        ck_assert(json_equal(json_object_get(o, "ids"), json_object_get(w, "ids")));
        ck_assert(!strncmp(line, "{\"ids\":[", 8));
        json_decref(o);
        json_decref(w);
    }
    ck_assert_uint_eq(lines, count);
    free(out);
    free(want);
}

/* The real vocabulary straight from the GGUF: --tokenizer MODEL.gguf. */
START_TEST(cli_reproduces_the_vector_file_byte_for_byte) {
    NEED_GGUF();
    cli_round_trip(g_gguf_path, VECTORS, N_VECTORS);
    char in[600], args[4200], *out;
    tmp_path(in, sizeof in, "in.jsonl");
    const char *ok = "{\"text\": \"x y\"}\n\n{\"text\": \"<bos>\", \"other\": 1}\n";
    write_file(in, ok, strlen(ok));
    snprintf(args, sizeof args, "tokenize --tokenizer %s --add-special", g_gguf_path);
    ck_assert_int_eq(run_cli(args, in, &out, true), 0);
    ck_assert_str_eq(out, "{\"text\":\"x y\",\"ids\":[2,236781,570,1]}\n"
                          "{\"text\":\"<bos>\",\"ids\":[2,236820,46757,236813,1]}\n");
    free(out);
}
END_TEST

START_TEST(cli_reproduces_the_8k_vector_file_byte_for_byte) {
    cli_round_trip(JSON_8K, VECTORS_8K, N_VECTORS_8K);
}
END_TEST

START_TEST(cli_flags_and_malformed_lines) {
    char in[600], args[1200], *out, small[600];
    /* A small model for the cases that do not need Gemma's ids (each run loads the model). */
    const char *p[] = {"<pad>", "<eos>", "<bos>", "<unk>", "x", "\xE2\x96\x81", "y", "\xE2\x96\x81y"};
    float sc[] = {0, 0, 0, 0, 0, 0, 0, -1};
    int32_t ty[] = {3, 3, 3, 2, 1, 1, 1, 1};
    gt_tokenizer *st;
    ck_assert(!gt_tok_from_pieces(p, sc, ty, 8, &st, NULL, 0));
    tmp_path(small, sizeof small, "cli_small.spm");
    ck_assert_msg(!gt_tok_save_spm(st, small, g_err, sizeof g_err), "%s", g_err);
    gt_tok_free(st);
    tmp_path(in, sizeof in, "in.jsonl");
    const char *ok = "{\"text\": \"x y\"}\n\n{\"text\": \"<bos>\", \"other\": 1}\n";
    write_file(in, ok, strlen(ok));
    snprintf(args, sizeof args, "tokenize --tokenizer=%s --match-special", small);
    ck_assert_int_eq(run_cli(args, in, &out, true), 0);
    ck_assert_str_eq(out, "{\"text\":\"x y\",\"ids\":[4,7]}\n{\"text\":\"<bos>\",\"ids\":[2]}\n");
    free(out);
    snprintf(args, sizeof args, "tokenize --tokenizer %s --add-special", small);
    ck_assert_int_eq(run_cli(args, in, &out, true), 0);
    ck_assert_str_eq(out, "{\"text\":\"x y\",\"ids\":[2,4,7,1]}\n{\"text\":\"<bos>\",\"ids\":[2,3,1]}\n");
    free(out);
    /* JSON.stringify escaping of control characters */
    const char *ctl = "{\"text\": \"a\\u0001\\t\\\"\\\\/\"}\n";
    write_file(in, ctl, strlen(ctl));
    snprintf(args, sizeof args, "tokenize --tokenizer %s", small);
    ck_assert_int_eq(run_cli(args, in, &out, true), 0);
    const char *esc = "{\"text\":\"a\\u0001\\t\\\"\\\\/\",\"ids\":[";
    ck_assert_msg(!strncmp(out, esc, strlen(esc)), "%s", out);
    free(out);
    static const struct { const char *input, *flags, *msg; } bad[] = {
        {"{\"text\": \"a\"}\nnot json\n", "", "<stdin>:2: invalid JSON"},
        {"{\"text\": 3}\n", "", "<stdin>:1: expected a string \"text\""},
        {"[1]\n", "", "<stdin>:1: expected a JSON object"},
        {"{\"ids\": [1, 999999]}\n", "--decode", "<stdin>:1: ids[1] is not a token id"},
        {"{\"ids\": [1, \"x\"]}\n", "--decode", "<stdin>:1: ids[1]"},
        {"{\"text\": \"a\"}\n{\"text\": \"\\ud800\"}\n", "", "<stdin>:2: invalid JSON"},
    };
    for (int i = 0; i < 6; i++) {
        write_file(in, bad[i].input, strlen(bad[i].input));
        snprintf(args, sizeof args, "tokenize --tokenizer %s %s", small, bad[i].flags);
        ck_assert_int_eq(run_cli(args, in, &out, true), 1);
        ck_assert_msg(strstr(out, bad[i].msg), "case %d: %s", i, out);
        free(out);
    }
    /* usage errors: exit 2 */
    write_file(in, "", 0);
    const char *usage[] = {"tokenize", "tokenize --tokenizer", "tokenize --frob",
                           "tokenize --tokenizer x --decode --add-special"};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(run_cli(usage[i], in, &out, true), 2);
        ck_assert_msg(strstr(out, "gemmatrain tokenize:"), "%s", out);
        free(out);
    }
    ck_assert_int_eq(run_cli("tokenize --help", in, &out, true), 0);
    ck_assert(strstr(out, "--match-special"));
    free(out);
    ck_assert_int_eq(run_cli("tokenize --tokenizer /nonexistent.json", in, &out, true), 1);
    ck_assert_msg(strstr(out, "/nonexistent.json"), "%s", out);
    free(out);
    /* --write-spm gives the library's bytes */
    char spm2[600];
    tmp_path(spm2, sizeof spm2, "cli.spm");
    snprintf(args, sizeof args, "tokenize --tokenizer %s --write-spm %s", small, spm2);
    ck_assert_int_eq(run_cli(args, in, &out, true), 0);
    free(out);
    size_t n1, n2;
    char *a = slurp(small, &n1), *b = slurp(spm2, &n2);
    ck_assert(a && b && n1 == n2 && !memcmp(a, b, n1));
    free(a);
    free(b);
}
END_TEST



/* ---------------------------------------------------------------- main */

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gt_tok_test_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    struct timespec t0;
    g_gguf_path = gt_test_gemma3_270m_gguf("test_tokenizer's real-vocabulary cases");
    if (g_gguf_path) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (gt_tok_load(g_gguf_path, &g_gguf, g_err, sizeof g_err)) {
            fprintf(stderr, "test_tokenizer: %s\n", g_err);
        } else {
            printf("GGUF vocabulary loaded in %.3f s\n", seconds_since(&t0));
            tmp_path(g_spm_path, sizeof g_spm_path, "gemma3.spm");
            if (gt_tok_save_spm(g_gguf, g_spm_path, g_err, sizeof g_err) ||
                gt_tok_load_spm(g_spm_path, &g_spm, g_err, sizeof g_err))
                fprintf(stderr, "test_tokenizer: %s\n", g_err);
        }
    }
    const char *json = getenv("GT_GEMMA3_TOKENIZER_JSON");
    if (json && *json) {
        g_json_path = json;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (gt_tok_load_hf_json(g_json_path, &g_json, g_json_err, sizeof g_json_err))
            fprintf(stderr, "test_tokenizer: %s\n", g_json_err);
        else
            printf("tokenizer.json (%s) loaded in %.3f s\n", g_json_path, seconds_since(&t0));
    }
    if (gt_tok_load_hf_json(JSON_8K, &g_8k, g_8k_err, sizeof g_8k_err))
        fprintf(stderr, "test_tokenizer: %s\n", g_8k_err);
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("gemma3");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gguf_vocabulary_reproduces_every_vector);
    tcase_add_test(tc, spm_export_reproduces_every_vector);
    tcase_add_test(tc, from_pieces_reproduces_every_vector);
    tcase_add_test(tc, concurrent_encoding_matches);
    tcase_add_test(tc, real_vocabularies_agree);
    tcase_add_test(tc, special_tokens_only_when_asked);
    tcase_add_test(tc, byte_fallback_for_characters_outside_the_vocabulary);
    tcase_add_test(tc, empty_text_and_whitespace_runs);
    tcase_add_test(tc, newline_and_tab_runs);
    tcase_add_test(tc, gguf_whitespace_pieces_are_spelled_as_sentencepiece_does);
    tcase_add_test(tc, encode_appends_and_rejects_bad_utf8);
    tcase_add_test(tc, cli_reproduces_the_vector_file_byte_for_byte);
    suite_add_tcase(s, tc);
    TCase *k8 = tcase_create("tokenizer_json_8k");
    tcase_set_timeout(k8, 60);
    tcase_add_test(k8, tokenizer_json_8k_reproduces_every_vector);
    tcase_add_test(k8, sliced_parse_of_a_big_tokenizer_json);
    tcase_add_test(k8, jansson_allocator_is_left_as_it_was);
    tcase_add_test(k8, truncated_tokenizer_json_names_the_file);
    tcase_add_test(k8, cli_reproduces_the_8k_vector_file_byte_for_byte);
    suite_add_tcase(s, k8);
    TCase *small = tcase_create("rules_and_errors");
    tcase_add_test(small, sentencepiece_rule_on_a_tiny_vocabulary);
    tcase_add_test(small, sentencepiece_rule_ties_and_unknowns);
    tcase_add_test(small, user_defined_pieces_match_spaces_as_u2581);
    tcase_add_test(small, tokenizer_json_rules_on_a_tiny_vocabulary);
    tcase_add_test(small, normalizer_growth_is_capped);
    tcase_add_test(small, missing_files_are_named);
    tcase_add_test(small, malformed_tokenizer_json);
    tcase_add_test(small, not_a_model_proto);
    tcase_add_test(small, truncated_and_mutated_spm_fail_cleanly);
    tcase_add_test(small, cli_flags_and_malformed_lines);
    suite_add_tcase(s, small);
    SRunner *sr = srunner_create(s);
    /* One process: the loaded tokenizers are shared by the tests (and forking after the parse's
     * OpenMP threads exist confuses LeakSanitizer). */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    gt_tok_free(g_gguf);
    gt_tok_free(g_spm);
    gt_tok_free(g_json);
    gt_tok_free(g_8k);
    gt_test_rmtree(g_tmp);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
