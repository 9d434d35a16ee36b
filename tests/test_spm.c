/* SentencePiece models beyond identity-normalized BPE: the nmt_nfkc precompiled_charsmap
 * normalizer, WORD and UNIGRAM models.
 *
 * tests/fixtures/spm/ holds KerasHub's four test tokenizers (gemma_test_vocab.spm and
 * gemma3_test_vocab.spm: WORD with nmt_nfkc; gemma4_test_vocab.spm: UNIGRAM, nmt_nfkc named but
 * no charsmap; gemma_export_vocab.spm: UNIGRAM with nmt_nfkc and byte fallback), and three that
 * sentencepiece trained on the Debian prompts: bpe_nfkc.spm (500-piece BPE, nmt_nfkc),
 * word_user.spm (WORD, nmt_nfkc) and unigram_user.spm (UNIGRAM, identity, whitespace kept), each
 * with a user-defined "<tag>" and a control "<ctl>" piece. For each,
 * every text of tests/fixtures/spm/vectors.tsv (made by tools/reference/make_spm_vectors.py with
 * the real `sentencepiece`: NFKC cases, whitespace runs, unknown characters, piece texts, Debian
 * prompts) must encode to sentencepiece's ids, and decode back to the text where sentencepiece's
 * own decode does; the same after gt_tok_save_spm and reloading (the charsmap is written back,
 * and a second save gives the same bytes). Also: the KerasHub preset fixtures' vocabularies
 * still load and encode, `gemmatrain tokenize` works on the new models, models that cannot be
 * read are refused naming the file, and broken charsmaps never read out of bounds (SAN=1). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "tests/cli_run.h"

#define DIR "tests/fixtures/spm/"
/* Outside a test: a fatal message (ck_assert only works inside one). */
#define REQUIRE(c, ...)                                                                              \
    do {                                                                                             \
        if (!(c)) {                                                                                  \
            fprintf(stderr, "test_spm: " __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                                     \
            exit(EXIT_FAILURE);                                                                      \
        }                                                                                            \
    } while (0)
#define VECTORS DIR "vectors.tsv"
#define N_MODELS 7
#define N_TEXTS 124 /* per model */

static const char *g_models[N_MODELS] = {"gemma_test_vocab.spm", "gemma3_test_vocab.spm", "gemma4_test_vocab.spm",
                                         "gemma_export_vocab.spm", "bpe_nfkc.spm", "word_user.spm",
                                         "unigram_user.spm"};
/* Bytes of each model's precompiled_charsmap (0: none) */
static const size_t g_charsmap[N_MODELS] = {237561, 237561, 0, 237561, 240007, 240007, 0};
static char g_tmp[256];

typedef struct { int model; char *text; size_t len; int32_t *ids; size_t n; int rt; } vec;
static vec *g_vec;
static size_t g_nvec;

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

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* MODEL \t hex(text) \t ids \t roundtrip */
static void load_vectors(void) {
    char *buf = slurp(VECTORS, NULL);
    REQUIRE(buf, "cannot read %s", VECTORS);
    size_t cap = 1024;
    g_vec = calloc(cap, sizeof *g_vec);
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[4];
        f[0] = line;
        for (int k = 1; k < 4; k++) {
            char *tab = strchr(f[k - 1], '\t');
            REQUIRE(tab, "%s: a line with fewer than 4 fields", VECTORS);
            *tab = 0;
            f[k] = tab + 1;
        }
        REQUIRE(g_nvec < cap, "%s: too many lines", VECTORS);
        vec *v = &g_vec[g_nvec++];
        v->model = -1;
        for (int m = 0; m < N_MODELS; m++)
            if (!strcmp(f[0], g_models[m])) v->model = m;
        REQUIRE(v->model >= 0, "%s: unknown model %s", VECTORS, f[0]);
        size_t hl = strlen(f[1]);
        v->text = malloc(hl / 2 + 1);
        for (size_t i = 0; i + 1 < hl; i += 2) v->text[i / 2] = (char)(hexval(f[1][i]) * 16 + hexval(f[1][i + 1]));
        v->len = hl / 2;
        v->text[v->len] = 0;
        v->ids = malloc((strlen(f[2]) / 2 + 1) * sizeof *v->ids);
        for (char *p = f[2]; *p;) {
            char *e;
            long id = strtol(p, &e, 10);
            REQUIRE(e != p, "%s: bad ids \"%s\"", VECTORS, f[2]);
            v->ids[v->n++] = (int32_t)id;
            p = e;
            while (*p == ' ') p++;
        }
        v->rt = atoi(f[3]);
    }
    free(buf);
}

/* Every vector of model m through tok; counts the texts equal and the round trips checked. */
static void check_model(const gt_tokenizer *tok, int m, const char *what, int *equal, int *rts) {
    char err[512];
    *equal = *rts = 0;
    for (size_t i = 0; i < g_nvec; i++) {
        const vec *v = &g_vec[i];
        if (v->model != m) continue;
        gt_ids ids = {0};
        ck_assert_msg(!gt_tok_encode(tok, v->text, v->len, false, &ids, err, sizeof err), "%s: %s", what, err);
        bool same = ids.n == v->n && (v->n == 0 || !memcmp(ids.ids, v->ids, v->n * sizeof *v->ids));
        if (!same) {
            fprintf(stderr, "%s: \"%s\":", what, v->text);
            for (size_t k = 0; k < ids.n; k++) fprintf(stderr, " %d", ids.ids[k]);
            fprintf(stderr, " (sentencepiece:");
            for (size_t k = 0; k < v->n; k++) fprintf(stderr, " %d", v->ids[k]);
            fprintf(stderr, ")\n");
        }
        *equal += same;
        if (v->rt) {
            char *txt;
            size_t tl;
            ck_assert_msg(!gt_tok_decode(tok, v->ids, v->n, true, &txt, &tl, err, sizeof err), "%s", err);
            ck_assert_msg(tl == v->len && !memcmp(txt, v->text, tl), "%s: decode gave \"%s\", not \"%s\"", what,
                          txt, v->text);
            free(txt);
            (*rts)++;
        }
        gt_ids_free(&ids);
    }
}

START_TEST(every_model_matches_sentencepiece) {
    int m = _i;
    char path[512], err[512];
    snprintf(path, sizeof path, DIR "%s", g_models[m]);
    gt_tokenizer *t = NULL;
    ck_assert_msg(!gt_tok_load(path, &t, err, sizeof err), "%s", err);
    int equal, rts;
    check_model(t, m, path, &equal, &rts);
    printf("%s: %d of %d texts equal to sentencepiece, %d decode round trips\n", g_models[m], equal, N_TEXTS, rts);
    ck_assert_int_eq(equal, N_TEXTS);
    /* written back (charsmap, model type, normalizer name) and read again: the same */
    char out[600], again[600];
    snprintf(out, sizeof out, "%s/%d.spm", g_tmp, m);
    snprintf(again, sizeof again, "%s/%d-again.spm", g_tmp, m);
    ck_assert_msg(!gt_tok_save_spm(t, out, err, sizeof err), "%s", err);
    gt_tokenizer *t2 = NULL;
    ck_assert_msg(!gt_tok_load_spm(out, &t2, err, sizeof err), "%s", err);
    check_model(t2, m, out, &equal, &rts);
    ck_assert_int_eq(equal, N_TEXTS);
    ck_assert_int_eq(gt_tok_vocab_size(t2), gt_tok_vocab_size(t));
    ck_assert_int_eq(gt_tok_unk(t2), gt_tok_unk(t));
    ck_assert_int_eq(gt_tok_bos(t2), gt_tok_bos(t));
    ck_assert_int_eq(gt_tok_eos(t2), gt_tok_eos(t));
    ck_assert_msg(!gt_tok_save_spm(t2, again, err, sizeof err), "%s", err);
    size_t n1, n2, n0;
    char *a = slurp(out, &n1), *b = slurp(again, &n2), *orig = slurp(path, &n0);
    ck_assert_msg(a && b && n1 == n2 && !memcmp(a, b, n1), "%s: re-saved model differs", g_models[m]);
    /* the charsmap is in there byte for byte (KerasHub's: 237561 bytes) */
    size_t cl = g_charsmap[m];
    if (cl) { /* field 2 and its length as a varint, then the bytes: in the original and ours */
        char tag[8] = {0x12};
        size_t tl = 1;
        for (size_t v = cl; v; v >>= 7) tag[tl++] = (char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        const char *cm = memmem(orig, n0, tag, tl);
        ck_assert_msg(cm && (size_t)(cm - orig) + tl + cl <= n0, "%s: no %zu-byte charsmap", path, cl);
        ck_assert_msg(memmem(a, n1, cm, tl + cl), "%s: charsmap not written back", g_models[m]);
    }
    free(a);
    free(b);
    free(orig);
    gt_tok_free(t);
    gt_tok_free(t2);
}
END_TEST

static void expect_ids(const gt_tokenizer *t, const char *text, const int32_t *want, size_t n) {
    gt_ids ids = {0};
    char err[256];
    ck_assert_msg(!gt_tok_encode(t, text, strlen(text), false, &ids, err, sizeof err), "%s", err);
    ck_assert_uint_eq(ids.n, n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(ids.ids[i], want[i]);
    gt_ids_free(&ids);
}

/* Hand-checked against sentencepiece: fullwidth letters normalize (WORD), consecutive unknown
 * words fuse into one <unk>, a UNIGRAM <unk> becomes bytes with byte_fallback, USER_DEFINED
 * pieces are kept in UNIGRAM text. */
START_TEST(hand_checked_cases) {
    char err[512];
    gt_tokenizer *w = NULL, *u = NULL, *x = NULL;
    ck_assert_msg(!gt_tok_load(DIR "gemma_test_vocab.spm", &w, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_tok_load(DIR "gemma4_test_vocab.spm", &u, err, sizeof err), "%s", err);
    ck_assert_msg(!gt_tok_load(DIR "gemma_export_vocab.spm", &x, err, sizeof err), "%s", err);
    expect_ids(w, "ＴＨＥ ｔｈｅ　ｆｏｘ", (int32_t[]){3, 4, 7}, 3);   /* ▁THE unknown */
    expect_ids(w, "Thisk zz the", (int32_t[]){3, 4}, 2);
    expect_ids(u, "ＱＵＩＣＫ the①ﬁ", (int32_t[]){3, 9, 3}, 3);      /* no charsmap: no NFKC */
    expect_ids(u, "the<|image|>fox", (int32_t[]){9, 8, 3}, 3);
    expect_ids(x, "ＱＵＩＣＫ the①ﬁ", (int32_t[]){87, 91, 278, 73, 81, 262, 272, 275, 264, 55, 281, 263}, 12);
    gt_tok_free(w);
    gt_tok_free(u);
    gt_tok_free(x);
}
END_TEST

/* The tiny KerasHub presets' vocabularies (BPE, identity) still load and encode. */
START_TEST(preset_vocabularies_still_work) {
    const char *p[] = {"tests/fixtures/presets/gemma1/assets/tokenizer/vocabulary.spm",
                       "tests/fixtures/presets/gemma2/assets/tokenizer/vocabulary.spm",
                       "tests/fixtures/presets/gemma3/assets/tokenizer/vocabulary.spm"};
    for (int i = 0; i < 3; i++) {
        gt_tokenizer *t = NULL;
        char err[512];
        ck_assert_msg(!gt_tok_load(p[i], &t, err, sizeof err), "%s", err);
        gt_ids ids = {0};
        ck_assert_msg(!gt_tok_encode(t, "the quick brown fox", 19, false, &ids, err, sizeof err), "%s", err);
        ck_assert_uint_gt(ids.n, 0);
        char *txt;
        ck_assert(!gt_tok_decode(t, ids.ids, ids.n, true, &txt, NULL, err, sizeof err));
        ck_assert_str_eq(txt, "the quick brown fox");
        free(txt);
        gt_ids_free(&ids);
        gt_tok_free(t);
    }
}
END_TEST

static int run_cli(const char *args, const char *input, char **out) {
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    char inp[600], outp[600], cmd[2048];
    snprintf(inp, sizeof inp, "%s/cli.in", g_tmp);
    snprintf(outp, sizeof outp, "%s/cli.out", g_tmp);
    write_file(inp, input, strlen(input));
    snprintf(cmd, sizeof cmd, "%s %s < %s > %s 2>&1", bin, args, inp, outp);
    int st = system(cmd);
    *out = slurp(outp, NULL);
    ck_assert_ptr_nonnull(*out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(cli_tokenizes_word_and_unigram_models) {
    const char *in = "{\"text\": \"\\uff31\\uff35\\uff29\\uff23\\uff2b the  fox\\u2460\\ufb01 Thisk zz\"}\n";
    struct { const char *model, *ids; } c[] = {
        {DIR "gemma_test_vocab.spm", "\"ids\":[3,4,3]"},
        {DIR "gemma4_test_vocab.spm", "\"ids\":[3,9,12,3]"},
        {DIR "gemma_export_vocab.spm",
         "\"ids\":[87,91,278,73,81,262,272,275,264,262,281,270,287,55,281,263,262,267,263,266,269,262,274,274]"},
        {DIR "bpe_nfkc.spm", "\"ids\":[421,481,472,462,451,486,22,42,160,464,313,114,434,223,441,421,467,467]"},
    };
    for (int i = 0; i < 4; i++) {
        char args[600], *out;
        snprintf(args, sizeof args, "tokenize --tokenizer %s", c[i].model);
        ck_assert_int_eq(run_cli(args, in, &out), 0);
        ck_assert_msg(strstr(out, c[i].ids), "%s: %s", c[i].model, out);
        free(out);
    }
}
END_TEST

/* ModelProto pieces: "<unk>" (UNKNOWN) and "a". */
#define PIECES "\x0A\x09\x0A\x05<unk>\x18\x02" "\x0A\x03\x0A\x01" "a"

static void expect_refused(const char *name, const char *proto, size_t n, const char *want1, const char *want2) {
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    write_file(path, proto, n);
    gt_tokenizer *t = (gt_tokenizer *)1;
    ck_assert(gt_tok_load_spm(path, &t, err, sizeof err));
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, name) && strstr(err, want1) && (!want2 || strstr(err, want2)), "%s", err);
}

START_TEST(unreadable_models_are_refused) {
    /* normalization_rule_tsv only (normalizer_spec field 6), no precompiled_charsmap */
    expect_refused("tsv.spm", PIECES "\x12\x02\x18\x02" "\x1A\x0A\x0A\x03" "abc" "\x32\x03" "a\tb", 32,
                   "normalization_rule_tsv", NULL);
    /* CHAR model */
    expect_refused("char.spm", PIECES "\x12\x02\x18\x04", 20, "CHAR", "only UNIGRAM");
    /* charsmap shorter than its trie size says */
    expect_refused("short.spm", PIECES "\x12\x02\x18\x02" "\x1A\x08\x12\x06\x10\x00\x00\x00\x00\x00", 30,
                   "precompiled_charsmap", "trie size");
    expect_refused("tiny.spm", PIECES "\x12\x02\x18\x02" "\x1A\x04\x12\x02\x00\x00", 26, "precompiled_charsmap",
                   NULL);
    /* still loads: identity normalizer with only a name */
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/named.spm", g_tmp);
    write_file(path, PIECES "\x12\x02\x18\x01" "\x1A\x0A\x0A\x08" "nmt_nfkc", 32);
    gt_tokenizer *t = NULL;
    ck_assert_msg(!gt_tok_load_spm(path, &t, err, sizeof err), "%s", err);
    expect_ids(t, " a a", (int32_t[]){0, 1, 0, 1}, 4); /* "▁" is no piece: unk, then "a" */
    gt_tok_free(t);
}
END_TEST

/* Random double arrays: whatever the units say, lookups stay inside the charsmap (SAN=1). */
START_TEST(random_charsmaps_stay_in_bounds) {
    char err[512];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int round = 0; round < 200; round++) {
        uint8_t proto[512];
        size_t n = 0, units = 1 + round % 16, strs = round % 7;
        memcpy(proto, PIECES "\x12\x02\x18\x01", 20), n = 20;
        size_t cm = 4 + 4 * units + strs;
        size_t spec = 1 + (cm > 127 ? 2 : 1) + cm;
        proto[n++] = 0x1A, proto[n++] = (uint8_t)spec;
        proto[n++] = 0x12;
        if (cm > 127) proto[n++] = (uint8_t)(cm | 0x80), proto[n++] = (uint8_t)(cm >> 7);
        else proto[n++] = (uint8_t)cm;
        uint32_t ts = (uint32_t)(4 * units);
        memcpy(proto + n, &ts, 4), n += 4;
        for (size_t i = 0; i < 4 * units + strs; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            proto[n++] = i >= 4 * units ? (uint8_t)('a' + s % 3) : i % 4 == 0 ? (uint8_t)"ab \xE2"[s % 4] : (uint8_t)(s >> 24);
        }
        gt_tokenizer *t = NULL;
        ck_assert_msg(!gt_tok_load_spm_buffer((const char *)proto, n, "random", &t, err, sizeof err), "%s", err);
        gt_ids ids = {0};
        const char *txt = "ab a\xE2\x96\x81 b\xC3\xA9";
        int rc = gt_tok_encode(t, txt, strlen(txt), false, &ids, err, sizeof err);
        ck_assert(rc == 0 || strstr(err, "invalid UTF-8"));
        gt_ids_free(&ids);
        gt_tok_free(t);
    }
}
END_TEST

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/gt_spm_test_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    load_vectors();
    Suite *s = suite_create("spm");
    TCase *tc = tcase_create("sentencepiece");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, every_model_matches_sentencepiece, 0, N_MODELS);
    tcase_add_test(tc, hand_checked_cases);
    tcase_add_test(tc, preset_vocabularies_still_work);
    tcase_add_test(tc, cli_tokenizes_word_and_unigram_models);
    tcase_add_test(tc, unreadable_models_are_refused);
    tcase_add_test(tc, random_charsmaps_stay_in_bounds);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (size_t i = 0; i < g_nvec; i++) free(g_vec[i].text), free(g_vec[i].ids);
    free(g_vec);
    gt_test_rmtree(g_tmp);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
