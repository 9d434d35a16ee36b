/* GGUF reader: metadata of every type, dequantisation of every supported ggml type bit-equal to
 * the gguf package's own dequantize (tools/reference/make_gguf_fixtures.py), all fp16 patterns
 * like numpy, split files, and corrupt ones: every prefix of tiny.gguf, thousands of random byte
 * flips, and the hand-made regressions (duplicates, wrapping sizes, gemma metadata). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "data/tokenizer.h"
#include "models/io/gemma_gguf.h"
#include "models/io/gguf.h"
#include "models/io/h5io.h"
#include "tests/check_main.h"

/* ---- a GGUF writer for hand-made (and deliberately broken) files */
typedef struct {
    uint8_t *b;
    size_t n, cap;
} gbuf;

static void put(gbuf *g, const void *p, size_t n) {
    if (g->n + n > g->cap) {
        g->cap = (g->n + n) * 2 + 256;
        g->b = realloc(g->b, g->cap);
        ck_assert(g->b != NULL);
    }
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void put_u32(gbuf *g, uint32_t v) { put(g, &v, 4); }
static void put_u64(gbuf *g, uint64_t v) { put(g, &v, 8); }
static void put_str(gbuf *g, const char *s) {
    put_u64(g, strlen(s));
    put(g, s, strlen(s));
}
static void kv_u32(gbuf *g, const char *k, uint32_t v) {
    put_str(g, k);
    put_u32(g, GT_GGUF_UINT32);
    put_u32(g, v);
}
static void kv_str(gbuf *g, const char *k, const char *v) {
    put_str(g, k);
    put_u32(g, GT_GGUF_STRING);
    put_str(g, v);
}
static void header(gbuf *g, uint64_t n_tensors, uint64_t n_kv) {
    put(g, "GGUF", 4);
    put_u32(g, 3);
    put_u64(g, n_tensors);
    put_u64(g, n_kv);
}
/* 2-D tensor info: ne0 innermost */
static void tinfo(gbuf *g, const char *name, uint64_t ne0, uint64_t ne1, uint32_t type, uint64_t off) {
    put_str(g, name);
    put_u32(g, 2);
    put_u64(g, ne0);
    put_u64(g, ne1);
    put_u32(g, type);
    put_u64(g, off);
}
static void pad32(gbuf *g) {
    static const uint8_t z[32];
    put(g, z, (32 - g->n % 32) % 32);
}
/* Opens g's bytes from an exact-size copy (so ASan sees any read past the end). */
static int open_gbuf(const gbuf *g, gt_gguf **out, uint8_t **copy, char *err, size_t errn) {
    *copy = malloc(g->n ? g->n : 1);
    memcpy(*copy, g->b, g->n);
    return gt_gguf_open_buffer(*copy, g->n, "made.gguf", out, err, errn);
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len);
    ck_assert(fread(b, 1, *len, f) == *len);
    fclose(f);
    return b;
}

START_TEST(metadata_of_every_type) {
    gt_gguf *g;
    char err[512];
    ck_assert_msg(gt_gguf_open("tests/fixtures/tiny.gguf", &g, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gt_gguf_version(g), 3);
    int64_t v;
    double f;
    struct { const char *k; int64_t want; } ints[] = {
        {"t.u8", 200}, {"t.i8", -100}, {"t.u16", 60000}, {"t.i16", -30000},
        {"t.u32", 4000000000LL}, {"t.i32", -2000000000LL}, {"t.u64", 1LL << 40},
        {"t.i64", -(1LL << 40)}, {"t.bool", 1}, {"gemma3.block_count", 2}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        ck_assert_msg(gt_gguf_get_int(g, ints[i].k, &v, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(v, ints[i].want);
    }
    ck_assert(gt_gguf_get_float(g, "t.f32", &f, err, sizeof err) == 0 && f == 0.15625);
    ck_assert(gt_gguf_get_float(g, "t.f64", &f, err, sizeof err) == 0 && f == 2.718281828459045);
    const char *s;
    uint64_t len;
    ck_assert(gt_gguf_get_str(g, "t.str", &s, &len, err, sizeof err) == 0);
    ck_assert(len == strlen("héllo ▁world") && !memcmp(s, "héllo ▁world", len));
    int32_t *ia;
    float *fa;
    char **sa;
    uint64_t n;
    ck_assert(gt_gguf_get_i32s(g, "t.arr_i32", &ia, &n, err, sizeof err) == 0);
    ck_assert(n == 3 && ia[0] == 1 && ia[1] == -2 && ia[2] == 3);
    ck_assert(gt_gguf_get_f32s(g, "t.arr_f32", &fa, &n, err, sizeof err) == 0);
    ck_assert(n == 2 && fa[0] == 0.5f && fa[1] == -1.25f);
    ck_assert(gt_gguf_get_strings(g, "t.arr_str", &sa, &n, err, sizeof err) == 0);
    ck_assert(n == 3 && !strcmp(sa[0], "<bos>") && !strcmp(sa[1], "") && !strcmp(sa[2], "▁the"));
    free(ia);
    free(fa);
    gt_gguf_free_strings(sa, n);
    /* wrong type and missing keys name the key */
    ck_assert_int_ne(gt_gguf_get_int(g, "t.str", &v, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "t.str") && strstr(err, "integer"), "%s", err);
    ck_assert_int_ne(gt_gguf_get_str(g, "no.such.key", &s, &len, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "no.such.key") && strstr(err, "missing"), "%s", err);
    gt_gguf_close(g);
}
END_TEST

START_TEST(dequantisation_matches_the_gguf_package) {
    gt_gguf *g;
    gt_h5 h;
    char err[512];
    ck_assert(gt_gguf_open("tests/fixtures/tiny.gguf", &g, err, sizeof err) == 0);
    ck_assert(gt_h5_open_read("tests/fixtures/tiny_gguf_expected.h5", &h, err, sizeof err) == 0);
    const char *names[] = {"f32", "f16", "bf16", "f64", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                           "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const gt_gguf_tensor *t = gt_gguf_find_tensor(g, names[i]);
        ck_assert_msg(t != NULL, "%s missing", names[i]);
        ck_assert_int_eq(t->ndim, 2);
        ck_assert(t->dims[0] == 512 && t->dims[1] == 2);
        float *got = malloc(sizeof(float) * (size_t)t->n_elements), *want;
        ck_assert_msg(gt_gguf_dequant(g, t, got, err, sizeof err) == 0, "%s", err);
        int nd;
        int64_t shape[8];
        char path[32];
        snprintf(path, sizeof path, "/%s", names[i]);
        ck_assert(gt_h5_read_f32(h, path, &want, &nd, shape, err, sizeof err) == 0);
        for (int64_t j = 0; j < t->n_elements; j++) /* bit-equal, NaN and signed zero included */
            ck_assert_msg(!memcmp(&got[j], &want[j], 4), "%s[%lld]: %.9g vs %.9g", names[i],
                          (long long)j, got[j], want[j]);
        free(got);
        free(want);
    }
    gt_h5_close(h);
    gt_gguf_close(g);
}
END_TEST

START_TEST(every_fp16_bit_pattern_converts_like_numpy) {
    /* an F16 tensor holding all 65536 patterns, against numpy's float16 -> float32 */
    gbuf g = {0};
    header(&g, 1, 0);
    tinfo(&g, "all", 256, 256, 1, 0);
    pad32(&g);
    for (uint32_t h = 0; h < 65536; h++) put(&g, &(uint16_t){(uint16_t)h}, 2);
    gt_gguf *f;
    uint8_t *copy;
    char err[512];
    ck_assert_msg(open_gbuf(&g, &f, &copy, err, sizeof err) == 0, "%s", err);
    float *got = malloc(65536 * sizeof *got), *want;
    ck_assert(gt_gguf_dequant(f, gt_gguf_find_tensor(f, "all"), got, err, sizeof err) == 0);
    gt_h5 h;
    int nd;
    int64_t shape[8];
    ck_assert(gt_h5_open_read("tests/fixtures/tiny_gguf_expected.h5", &h, err, sizeof err) == 0);
    ck_assert_msg(gt_h5_read_f32(h, "/fp16_all", &want, &nd, shape, err, sizeof err) == 0, "%s", err);
    ck_assert(nd == 1 && shape[0] == 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        ck_assert_msg(a == b, "fp16 0x%04x: 0x%08x, numpy 0x%08x", i, a, b);
    }
    gt_h5_close(h);
    free(want);
    free(got);
    gt_gguf_close(f);
    free(copy);
    free(g.b);
}
END_TEST

/* Every reason a prefix is refused must say so in words about the file's end. */
static bool says_truncated(const char *e) {
    static const char *words[] = {"truncated", "past the end", "too short", "exceed"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(e, words[i])) return true;
    return false;
}

START_TEST(every_prefix_is_refused_with_a_clear_message) {
    size_t len;
    uint8_t *b = slurp("tests/fixtures/tiny.gguf", &len);
    char err[512];
    gt_gguf *g;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan flags any read past the cut */
        memcpy(copy, b, cut);
        err[0] = 0;
        int rc = gt_gguf_open_buffer(copy, cut, "cut.gguf", &g, err, sizeof err);
        free(copy);
        if (rc == 0) gt_gguf_close(g);
        ck_assert_msg(rc != 0, "a file cut at %zu of %zu bytes was accepted", cut, len);
        ck_assert_msg(strstr(err, "cut.gguf") && says_truncated(err), "cut at %zu: %s", cut, err);
    }
    free(b);
}
END_TEST

/* Exercises everything a caller may ask of an accepted (possibly corrupt) file. */
static void use_everything(gt_gguf *g) {
    char err[512];
    for (int64_t i = 0; i < gt_gguf_n_keys(g); i++) {
        const char *k = gt_gguf_key(g, i), *s;
        int64_t v;
        double f;
        uint64_t n;
        gt_gguf_vtype et;
        char **ss;
        float *fs;
        int32_t *is;
        gt_gguf_get_int(g, k, &v, err, sizeof err);
        gt_gguf_get_float(g, k, &f, err, sizeof err);
        gt_gguf_get_str(g, k, &s, &n, err, sizeof err);
        gt_gguf_get_array(g, k, &et, &n, err, sizeof err);
        if (gt_gguf_get_strings(g, k, &ss, &n, err, sizeof err) == 0) gt_gguf_free_strings(ss, n);
        if (gt_gguf_get_f32s(g, k, &fs, &n, err, sizeof err) == 0) free(fs);
        if (gt_gguf_get_i32s(g, k, &is, &n, err, sizeof err) == 0) free(is);
    }
    for (int64_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_gguf_tensor *t = gt_gguf_tensor_at(g, i);
        if (t->n_elements > (1 << 20)) continue;
        float *out = malloc(sizeof(float) * (size_t)t->n_elements);
        ck_assert(out != NULL);
        gt_gguf_dequant(g, t, out, err, sizeof err);
        free(out);
    }
    gt_gemma_config c;
    gt_gemma_config_from_gguf(g, &c, err, sizeof err);
}

START_TEST(random_byte_flips_never_crash) {
    size_t len;
    uint8_t *b = slurp("tests/fixtures/tiny.gguf", &len);
    char err[512];
    gt_gguf *g;
    uint64_t st = 0x9E3779B97F4A7C15ull;
    int accepted = 0, refused = 0;
    size_t header_len = 2600; /* metadata and tensor directory of tiny.gguf; data follows */
    for (int trial = 0; trial < 4000; trial++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, b, len);
        int flips = 1 + trial % 4;
        for (int k = 0; k < flips; k++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(st >> 33) % (trial % 8 ? header_len : len); /* mostly the header */
            copy[pos] ^= (uint8_t)(1u << ((st >> 20) & 7)) | (uint8_t)(trial % 3 ? 0 : st >> 24);
        }
        if (gt_gguf_open_buffer(copy, len, "flip.gguf", &g, err, sizeof err) == 0) {
            use_everything(g);
            gt_gguf_close(g);
            accepted++;
        } else {
            ck_assert_msg(strstr(err, "flip.gguf"), "message lacks the file name: %s", err);
            refused++;
        }
        free(copy);
    }
    ck_assert_int_gt(refused, 500); /* both paths were exercised */
    ck_assert_int_gt(accepted, 500);
    free(b);
}
END_TEST

/* llama.cpp writes Gemma 4's BPE vocabulary as tokenizer.ggml.model "gemma4": refused, not
 * read as SentencePiece pieces (which would tokenize wrongly) */
START_TEST(non_sentencepiece_vocabularies_are_refused) {
    gbuf b = {0};
    header(&b, 0, 1);
    kv_str(&b, "tokenizer.ggml.model", "gemma4");
    gt_gguf *g;
    uint8_t *copy;
    char err[512];
    ck_assert_int_eq(open_gbuf(&b, &g, &copy, err, sizeof err), 0);
    gt_tokenizer *tok = NULL;
    ck_assert_int_ne(gt_tok_from_gguf(g, &tok, err, sizeof err), 0);
    ck_assert(tok == NULL);
    ck_assert_msg(strstr(err, "tokenizer.ggml.model is \"gemma4\""), "%s", err);
    gt_gguf_close(g);
    free(copy);
    free(b.b);
}
END_TEST

START_TEST(bad_magic_version_and_missing_file) {
    size_t len;
    uint8_t *b = slurp("tests/fixtures/tiny.gguf", &len);
    char err[512];
    gt_gguf *g;
    memcpy(b, "GGUX", 4);
    ck_assert_int_ne(gt_gguf_open_buffer(b, len, "bad.gguf", &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "magic"), "%s", err);
    memcpy(b, "GGUF", 4);
    b[4] = 9;
    ck_assert_int_ne(gt_gguf_open_buffer(b, len, "bad.gguf", &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "version 9"), "%s", err);
    free(b);
    ck_assert_int_ne(gt_gguf_open("tests/fixtures/no-such.gguf", &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "no-such.gguf"), "%s", err);
}
END_TEST

/* Writes b[from, to) to dir/name and returns the path in out. */
static void write_part(const char *dir, const char *name, const uint8_t *b, size_t from, size_t to, char *out,
                       size_t n) {
    snprintf(out, n, "%s/%s", dir, name);
    FILE *f = fopen(out, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(b + from, 1, to - from, f) == to - from);
    fclose(f);
}

static void same_as_whole(gt_gguf *whole, gt_gguf *parts) {
    char err[512];
    ck_assert_int_eq(gt_gguf_n_tensors(whole), gt_gguf_n_tensors(parts));
    ck_assert_int_eq(gt_gguf_n_keys(whole), gt_gguf_n_keys(parts));
    for (int64_t i = 0; i < gt_gguf_n_tensors(whole); i++) {
        const gt_gguf_tensor *a = gt_gguf_tensor_at(whole, i), *b = gt_gguf_tensor_at(parts, i);
        ck_assert_str_eq(a->name, b->name);
        ck_assert(a->n_bytes == b->n_bytes && !memcmp(a->data, b->data, a->n_bytes));
        float *x = malloc(4 * (size_t)a->n_elements), *y = malloc(4 * (size_t)a->n_elements);
        ck_assert(gt_gguf_dequant(whole, a, x, err, sizeof err) == 0);
        ck_assert(gt_gguf_dequant(parts, b, y, err, sizeof err) == 0);
        ck_assert(!memcmp(x, y, 4 * (size_t)a->n_elements));
        free(x);
        free(y);
    }
}

START_TEST(split_files_open_as_one) {
    size_t len;
    uint8_t *b = slurp("tests/fixtures/tiny.gguf", &len);
    char dir[] = "/tmp/gt_gguf_parts_XXXXXX", err[512], p[4][512], list[2048];
    ck_assert(mkdtemp(dir) != NULL);
    gt_gguf *whole, *g;
    ck_assert(gt_gguf_open("tests/fixtures/tiny.gguf", &whole, err, sizeof err) == 0);
    long page = sysconf(_SC_PAGESIZE);
    ck_assert((size_t)page * 3 < len);
    /* page-multiple parts (mapped in place, like the PyPI chunks) and odd ones (read) */
    size_t cuts[2][4] = {{0, (size_t)page, 3 * (size_t)page, len}, {0, 1000, 7777, len}};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++) {
            char name[32];
            snprintf(name, sizeof name, "m.gguf.part%02d", i);
            write_part(dir, name, b, cuts[k][i], cuts[k][i + 1], p[i], sizeof p[i]);
        }
        const char *paths[3] = {p[0], p[1], p[2]};
        ck_assert_msg(gt_gguf_open_parts(paths, 3, &g, err, sizeof err) == 0, "%s", err);
        same_as_whole(whole, g);
        gt_gguf_close(g);
        snprintf(list, sizeof list, "%s,%s,%s", p[0], p[1], p[2]); /* the same through gt_gguf_open */
        ck_assert_msg(gt_gguf_open(list, &g, err, sizeof err) == 0, "%s", err);
        same_as_whole(whole, g);
        gt_gguf_close(g);
    }
    /* a missing or left-out part is named / refused */
    const char *two[2] = {p[0], p[1]};
    ck_assert_int_ne(gt_gguf_open_parts(two, 2, &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "part00") && says_truncated(err), "%s", err);
    snprintf(list, sizeof list, "%s,%s/nope,%s", p[0], dir, p[2]);
    ck_assert_int_ne(gt_gguf_open(list, &g, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "nope") && strstr(err, "cannot open"), "%s", err);
    ck_assert_int_ne(gt_gguf_open_parts(two, 0, &g, err, sizeof err), 0);
    for (int i = 0; i < 3; i++) unlink(p[i]);
    rmdir(dir);
    gt_gguf_close(whole);
    free(b);
}
END_TEST

START_TEST(duplicates_and_nul_bytes_are_refused) {
    char err[512];
    gt_gguf *f;
    uint8_t *copy;
    gbuf g = {0};
    header(&g, 0, 2);
    kv_u32(&g, "a.b", 1);
    kv_u32(&g, "a.b", 2);
    ck_assert_int_ne(open_gbuf(&g, &f, &copy, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "'a.b' appears more than once"), "%s", err);
    free(copy);
    g.n = 0;
    header(&g, 2, 0);
    tinfo(&g, "w", 32, 1, 0, 0);
    tinfo(&g, "w", 32, 1, 0, 128);
    pad32(&g);
    put(&g, (uint8_t[256]){0}, 256);
    ck_assert_int_ne(open_gbuf(&g, &f, &copy, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "tensor name 'w' appears more than once"), "%s", err);
    free(copy);
    g.n = 0;
    header(&g, 1, 0);
    put_u64(&g, 3);
    put(&g, "w\0x", 3);
    put_u32(&g, 1);
    put_u64(&g, 32);
    put_u32(&g, 0);
    put_u64(&g, 0);
    pad32(&g);
    put(&g, (uint8_t[128]){0}, 128);
    ck_assert_int_ne(open_gbuf(&g, &f, &copy, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "NUL"), "%s", err);
    free(copy);
    free(g.b);
}
END_TEST

/* Keys are found by a search over their sorted order: each key in an unsorted file, and names
 * before, between and after them (or a prefix of one) are absent. */
START_TEST(keys_are_found_in_any_order) {
    static const char *const keys[] = {"m.z", "a.b", "q", "a.a", "zz.top", "b", "a.bb"};
    enum { NK = sizeof keys / sizeof keys[0] };
    char err[512];
    gt_gguf *f;
    uint8_t *copy;
    gbuf g = {0};
    header(&g, 0, NK);
    for (int i = 0; i < NK; i++) kv_u32(&g, keys[i], (uint32_t)(100 + i));
    ck_assert_int_eq(open_gbuf(&g, &f, &copy, err, sizeof err), 0);
    for (int i = 0; i < NK; i++) {
        int64_t v = 0;
        ck_assert_int_eq(gt_gguf_find_key(f, keys[i]), i);
        ck_assert_int_eq(gt_gguf_get_int(f, keys[i], &v, err, sizeof err), 0);
        ck_assert_int_eq(v, 100 + i);
    }
    static const char *const absent[] = {"", "a", "a.", "a.ba", "c", "m.y", "zz.top2", "\x7f"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        ck_assert_int_eq(gt_gguf_find_key(f, absent[i]), -1);
    gt_gguf_close(f);
    free(copy);
    free(g.b);
}
END_TEST

/* One hand-made corruption per field, each refused with a message naming the field. */
START_TEST(corrupt_fields_are_refused_by_name) {
    char err[512];
    gt_gguf *f;
    uint8_t *copy;
    gbuf g = {0};
    struct { const char *what, *want; } cases[] = {
        {"big-endian", "a big-endian file"},
        {"string length", "entry 0: truncated key"},
        {"value type", "'k.x': unknown value type 13"},
        {"element type", "'k.arr': unsupported array element type 77"},
        {"nested array", "'k.arr': unsupported array element type 9"},
        {"string array count", "'k.arr': array of 2305843009213693952 strings runs past"},
        {"number array count", "'k.arr': array of 3 runs past"},
        {"alignment 0", "general.alignment must be a power of two"},
        {"alignment 48", "general.alignment must be a power of two"},
        {"5 dims", "tensor 'w': 5 dimensions"},
        {"zero dim", "tensor 'w': dimension 1 (0) is zero"},
        {"ggml type", "tensor 'w': unknown ggml type 31"},
        {"block", "tensor 'w': first dimension 8 is not a multiple of the Q8_0 block (32)"},
        {"offset align", "tensor 'w': offset 4 is not aligned to 32"},
        {"offset past", "tensor 'w': data (32 bytes at data offset 64) runs past the end of the file (160 bytes)"},
        {"offset wrap", "tensor 'w': data (32 bytes at data offset 18446744073709551584) runs past the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *w = cases[i].what;
        g.n = 0;
        if (!strcmp(w, "big-endian")) {
            put(&g, "GGUF", 4);
            put_u32(&g, 0x03000000u);
            put_u64(&g, 0);
            put_u64(&g, 0);
        } else if (!strcmp(w, "string length")) {
            header(&g, 0, 1);
            put_u64(&g, UINT64_MAX - 3);
            put(&g, "abcdefghijklmnop", 16);
        } else if (!strcmp(w, "value type")) {
            header(&g, 0, 1);
            put_str(&g, "k.x");
            put_u32(&g, 13);
            put_u64(&g, 0);
        } else if (!strcmp(w, "element type") || strstr(w, "nested") || strstr(w, "count")) {
            header(&g, 0, 1);
            put_str(&g, "k.arr");
            put_u32(&g, GT_GGUF_ARRAY);
            bool strs = strstr(w, "string") != NULL, nums = strstr(w, "number") != NULL;
            put_u32(&g, strs ? GT_GGUF_STRING : nums ? GT_GGUF_UINT64 : strstr(w, "nested") ? GT_GGUF_ARRAY : 77);
            put_u64(&g, strs ? 1ull << 61 : nums ? 3 : 1);
            put_u64(&g, 1);
            put_u64(&g, 2);
        } else if (strstr(w, "alignment")) {
            header(&g, 0, 1);
            kv_u32(&g, "general.alignment", w[10] == '0' ? 0 : 48);
        } else {
            header(&g, 1, 0);
            put_str(&g, "w");
            bool five = !strcmp(w, "5 dims");
            put_u32(&g, five ? 5 : 2);
            for (int d = 0; d < (five ? 5 : 2); d++) put_u64(&g, d == 0 ? 8 : !strcmp(w, "zero dim") ? 0 : 1);
            put_u32(&g, !strcmp(w, "ggml type") ? 31 : !strcmp(w, "block") ? 8 : 0);
            put_u64(&g, !strcmp(w, "offset align") ? 4 : !strcmp(w, "offset past") ? 64 : !strcmp(w, "offset wrap") ? UINT64_MAX - 31 : 0);
            pad32(&g);
            put(&g, (uint8_t[64]){0}, 64);
        }
        ck_assert_msg(open_gbuf(&g, &f, &copy, err, sizeof err) != 0, "%s: accepted", w);
        ck_assert_msg(strstr(err, "made.gguf: ") == err && strstr(err, cases[i].want), "%s: %s", w, err);
        free(copy);
    }
    free(g.b);
}
END_TEST

START_TEST(huge_dimensions_do_not_wrap_the_byte_size) {
    /* 2^61 x 2 F32 elements: the byte size 2^64 would wrap to 0 and "fit" in the file */
    char err[512];
    gt_gguf *f;
    uint8_t *copy;
    gbuf g = {0};
    header(&g, 1, 0);
    tinfo(&g, "big", 1ull << 61, 2, 0, 0);
    pad32(&g);
    ck_assert_int_ne(open_gbuf(&g, &f, &copy, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "'big'") && strstr(err, "exceed the file size"), "%s", err);
    free(copy);
    free(g.b);
}
END_TEST

START_TEST(int32_arrays_refuse_values_out_of_range) {
    char err[512];
    gt_gguf *f;
    uint8_t *copy;
    gbuf g = {0};
    header(&g, 0, 2);
    put_str(&g, "big");
    put_u32(&g, GT_GGUF_ARRAY);
    put_u32(&g, GT_GGUF_UINT32);
    put_u64(&g, 2);
    put_u32(&g, 7);
    put_u32(&g, 4000000000u);
    put_str(&g, "nan");
    put_u32(&g, GT_GGUF_ARRAY);
    put_u32(&g, GT_GGUF_FLOAT32);
    put_u64(&g, 1);
    put_u32(&g, 0x7FC00000u);
    ck_assert_msg(open_gbuf(&g, &f, &copy, err, sizeof err) == 0, "%s", err);
    int32_t *v = NULL;
    uint64_t n;
    ck_assert_int_ne(gt_gguf_get_i32s(f, "big", &v, &n, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "'big'[1]") && strstr(err, "int32"), "%s", err);
    ck_assert_int_ne(gt_gguf_get_i32s(f, "nan", &v, &n, err, sizeof err), 0);
    ck_assert(v == NULL);
    gt_gguf_close(f);
    free(copy);
    free(g.b);
}
END_TEST

/* A gemma3 header with the given head count (0: no key_length fallback is possible) and the
 * tensors that size a layer, [ne0 x ne1] each. */
static void gemma_file(gbuf *g, uint32_t heads, uint32_t layers, uint64_t q_rows) {
    g->n = 0;
    header(g, 3, 7);
    kv_str(g, "general.architecture", "gemma3");
    kv_u32(g, "gemma3.embedding_length", 32);
    kv_u32(g, "gemma3.block_count", layers);
    kv_u32(g, "gemma3.feed_forward_length", 64);
    kv_u32(g, "gemma3.attention.head_count", heads);
    kv_u32(g, "gemma3.attention.head_count_kv", 1);
    kv_u32(g, "gemma3.context_length", 128);
    tinfo(g, "token_embd.weight", 32, 16, 0, 0);
    tinfo(g, "blk.0.attn_q.weight", 32, q_rows, 0, 32 * 16 * 4);
    tinfo(g, "blk.0.ffn_gate.weight", 32, 64, 0, 32 * 16 * 4 + 32 * q_rows * 4);
    pad32(g);
    size_t data = (32 * 16 + 32 * q_rows + 32 * 64) * 4;
    uint8_t *z = calloc(1, data);
    put(g, z, data);
    free(z);
}

START_TEST(gemma_metadata_is_checked_before_allocating) {
    char err[512];
    gt_gguf *f;
    uint8_t *copy;
    gt_gemma_config c;
    gt_gemma *m;
    gbuf g = {0};
    /* head_count 0 without key_length: once a division by zero */
    gemma_file(&g, 0, 1, 32);
    ck_assert_msg(open_gbuf(&g, &f, &copy, err, sizeof err) == 0, "%s", err);
    ck_assert_int_ne(gt_gemma_config_from_gguf(f, &c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "head counts"), "%s", err);
    gt_gguf_close(f);
    free(copy);
    /* a block count the file's tensors do not back is refused before any allocation; one past
     * any model's by the config's bounds first */
    gemma_file(&g, 2, 1000, 32);
    ck_assert_msg(open_gbuf(&g, &f, &copy, err, sizeof err) == 0, "%s", err);
    ck_assert_int_ne(gt_gemma_from_gguf(f, false, &m, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "blk.1.attn_q.weight") && strstr(err, "missing"), "%s", err);
    gt_gguf_close(f);
    free(copy);
    gemma_file(&g, 2, 1000000000, 32);
    ck_assert_msg(open_gbuf(&g, &f, &copy, err, sizeof err) == 0, "%s", err);
    ck_assert_int_ne(gt_gemma_from_gguf(f, false, &m, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "model.num_layers: must be in [1, 1024], got 1000000000"), "%s", err);
    gt_gguf_close(f);
    free(copy);
    /* so is a query width that disagrees with head_count x key_length */
    gemma_file(&g, 2, 1, 48);
    ck_assert_msg(open_gbuf(&g, &f, &copy, err, sizeof err) == 0, "%s", err);
    ck_assert_int_ne(gt_gemma_from_gguf(f, false, &m, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "blk.0.attn_q.weight") && strstr(err, "expected [32, 32]"), "%s", err);
    gt_gguf_close(f);
    free(copy);
    free(g.b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, metadata_of_every_type);
    tcase_add_test(tc, dequantisation_matches_the_gguf_package);
    tcase_add_test(tc, every_fp16_bit_pattern_converts_like_numpy);
    tcase_add_test(tc, every_prefix_is_refused_with_a_clear_message);
    tcase_add_test(tc, random_byte_flips_never_crash);
    tcase_add_test(tc, bad_magic_version_and_missing_file);
    tcase_add_test(tc, split_files_open_as_one);
    tcase_add_test(tc, duplicates_and_nul_bytes_are_refused);
    tcase_add_test(tc, corrupt_fields_are_refused_by_name);
    tcase_add_test(tc, huge_dimensions_do_not_wrap_the_byte_size);
    tcase_add_test(tc, int32_arrays_refuse_values_out_of_range);
    tcase_add_test(tc, gemma_metadata_is_checked_before_allocating);
    tcase_add_test(tc, non_sentencepiece_vocabularies_are_refused);
    tcase_add_test(tc, keys_are_found_in_any_order);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
