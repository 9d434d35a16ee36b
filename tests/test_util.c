/* util/: half-float conversions bit for bit against copies of the implementations they replaced
 * (models/io/safetensors.c, models/io/gguf.c, autograd/ops_bf16.c), over every 16-bit pattern; gt_errf;
 * path joining, mkdir -p and atomic file replacement in a scratch directory. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fsutil.h"
#include "util/half.h"
#include "util/hugepage.h"
#include "tests/check_main.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- the replaced implementations, verbatim but for their names ---- */

static float old_st_f16_to_f32(uint16_t h) { /* models/io/safetensors.c gt_st_f16_to_f32 */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man) {
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    } else {
        u = sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float old_gguf_half_to_float(uint16_t h) { /* models/io/gguf.c half_to_float */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3FF) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float old_st_bf16_to_f32(uint16_t b) { /* models/io/safetensors.c gt_st_bf16_to_f32 */
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float old_bf16_to_float(uint16_t h) { /* autograd/ops_bf16.h gt_bf16_to_float */
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

static uint16_t old_st_f32_to_bf16(float f) { /* models/io/safetensors.c gt_st_f32_to_bf16 */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static uint16_t old_to_bf16(float x) { /* autograd/ops_bf16.c gt_to_bf16 */
    union { float f; uint32_t u; } v = {x};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    uint32_t lsb = (v.u >> 16) & 1;
    return (uint16_t)((v.u + 0x7fffu + lsb) >> 16);
}

START_TEST(f16_to_f32_every_pattern) {
    int nan = 0, inf = 0, sub = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t got = bits(gt_f16_to_f32((uint16_t)h));
        ck_assert_msg(got == bits(old_st_f16_to_f32((uint16_t)h)), "f16 %04x: %08x (safetensors)", h, got);
        ck_assert_msg(got == bits(old_gguf_half_to_float((uint16_t)h)), "f16 %04x: %08x (gguf)", h, got);
        float f = from_bits(got);
        nan += !!isnan(f), inf += !!isinf(f), sub += ((h & 0x7c00) == 0 && (h & 0x3ff));
    }
    ck_assert_int_eq(nan, 2 * 1023);
    ck_assert_int_eq(inf, 2);
    ck_assert_int_eq(sub, 2 * 1023);
    /* known values */
    ck_assert(gt_f16_to_f32(0x3c00) == 1.0f);
    ck_assert(gt_f16_to_f32(0xc000) == -2.0f);
    ck_assert(gt_f16_to_f32(0x7bff) == 65504.0f);
    ck_assert(gt_f16_to_f32(0x0001) == ldexpf(1, -24)); /* smallest subnormal */
    ck_assert(gt_f16_to_f32(0x03ff) == ldexpf(1023, -24)); /* largest subnormal */
    ck_assert_uint_eq(bits(gt_f16_to_f32(0x8000)), 0x80000000u);
    ck_assert_uint_eq(bits(gt_f16_to_f32(0x7c00)), 0x7f800000u);
    ck_assert_uint_eq(bits(gt_f16_to_f32(0x7e01)), 0x7fc02000u); /* NaN payload kept */
}
END_TEST

START_TEST(bf16_to_f32_every_pattern) {
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t got = bits(gt_bf16_to_f32((uint16_t)h));
        ck_assert_uint_eq(got, h << 16);
        ck_assert_uint_eq(got, bits(old_st_bf16_to_f32((uint16_t)h)));
        ck_assert_uint_eq(got, bits(old_bf16_to_float((uint16_t)h)));
        /* bf16 -> f32 -> bf16 is the identity, except that a NaN comes back quiet */
        uint16_t back = gt_f32_to_bf16(from_bits(got));
        bool is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        ck_assert_uint_eq(back, is_nan ? (h | 0x40) : h);
    }
}
END_TEST

START_TEST(f32_to_bf16_matches_and_rounds_to_nearest_even) {
    /* every top half with low halves around the tie, the extremes and a pseudo-random one */
    static const uint32_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff};
    uint64_t s = 42;
    for (uint32_t hi = 0; hi < 65536; hi++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        for (int k = 0; k <= 6; k++) {
            uint32_t u = hi << 16 | (k < 6 ? lows[k] : (uint32_t)(s >> 48));
            float f = from_bits(u);
            uint16_t got = gt_f32_to_bf16(f);
            ck_assert_msg(got == old_st_f32_to_bf16(f), "f32 %08x -> %04x (safetensors)", u, got);
            ck_assert_msg(got == old_to_bf16(f), "f32 %08x -> %04x (ops_bf16)", u, got);
        }
    }
    ck_assert_uint_eq(gt_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie, even stays */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x3f807fff)), 0x3f80); /* below the tie */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x3f808001)), 0x3f81); /* above the tie */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0xbf818000)), 0xbf82); /* negative tie */
    ck_assert_uint_eq(gt_f32_to_bf16(-0.0f), 0x8000);
    ck_assert_uint_eq(gt_f32_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(gt_f32_to_bf16(-INFINITY), 0xff80);
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80); /* FLT_MAX overflows to inf */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x7f7f7fff)), 0x7f7f); /* largest that does not */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x00000001)), 0x0000); /* subnormals round too */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x00018000)), 0x0002);
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x007fffff)), 0x0080); /* up into the normals */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0x7f800001)), 0x7fc0); /* low-bit NaN stays NaN */
    ck_assert_uint_eq(gt_f32_to_bf16(from_bits(0xffffffff)), 0xffff);
}
END_TEST

/* ---- err ---- */

/* The nearest half by brute force over the two neighbours (ties: even mantissa). */
static uint16_t f16_nearest(float f) {
    if (isnan(f)) return 0x7e00;
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double x = fabs((double)f);
    if (x >= 65520.0) return sign | 0x7c00;
    uint16_t lo = 0;
    for (uint16_t step = 0x4000; step; step >>= 1) /* largest half <= x (halves order as integers) */
        if ((uint16_t)(lo | step) < 0x7c00 && gt_f16_to_f32((uint16_t)(lo | step)) <= x) lo |= step;
    double dl = x - gt_f16_to_f32(lo), dh = gt_f16_to_f32((uint16_t)(lo + 1)) - x;
    uint16_t h = dl < dh ? lo : dh < dl ? (uint16_t)(lo + 1) : (lo & 1) ? (uint16_t)(lo + 1) : lo;
    return sign | h;
}

START_TEST(f32_to_f16_rounds_to_nearest_even) {
    /* every half round-trips; every midpoint between neighbours goes to the even one */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        ck_assert_uint_eq(gt_f32_to_f16(gt_f16_to_f32((uint16_t)h)), h);
        ck_assert_uint_eq(gt_f32_to_f16(-gt_f16_to_f32((uint16_t)h)), h | 0x8000);
        float mid = (float)(((double)gt_f16_to_f32((uint16_t)h) + gt_f16_to_f32((uint16_t)(h + 1))) / 2);
        ck_assert_uint_eq(gt_f32_to_f16(mid), (h & 1) ? h + 1 : h);
    }
    uint64_t st = 7;
    for (int i = 0; i < 300000; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(st >> 32);
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        ck_assert_msg(gt_f32_to_f16(f) == f16_nearest(f), "%a: %04x vs %04x", f, gt_f32_to_f16(f), f16_nearest(f));
    }
    ck_assert_uint_eq(gt_f32_to_f16(INFINITY), 0x7c00);
    ck_assert_uint_eq(gt_f32_to_f16(65519.0f), 0x7bff);
    ck_assert_uint_eq(gt_f32_to_f16(65520.0f), 0x7c00);
    ck_assert_uint_eq(gt_f32_to_f16(0x1p-25f), 0);
    ck_assert_uint_eq(gt_f32_to_f16(0x1.000002p-25f), 1);
    ck_assert(isnan(gt_f16_to_f32(gt_f32_to_f16(NAN))));
}
END_TEST

START_TEST(printable_keeps_messages_on_one_line) {
    char s[] = "near '\"dtyp\\\n\x01x\x7f'";
    ck_assert_str_eq(gt_err_printable(s), "near '\"dtyp\\??x?'");
}
END_TEST

START_TEST(fail_formats_and_returns_minus_one) {
    char err[16] = "untouched";
    ck_assert_int_eq(gt_errf(err, sizeof err, "%s: %d", "x", 42), -1);
    ck_assert_str_eq(err, "x: 42");
    ck_assert_int_eq(gt_errf(err, 4, "truncated"), -1);
    ck_assert_str_eq(err, "tru");
    ck_assert_int_eq(gt_errf(NULL, 0, "nowhere %d", 1), -1);
    ck_assert_int_eq(gt_errf(err, 0, "not written"), -1);
    ck_assert_str_eq(err, "tru");
}
END_TEST

/* ---- fsutil ---- */

static char g_dir[64];

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/gt-util-XXXXXX");
    ck_assert(mkdtemp(g_dir));
}

static int rm_tree(const char *p) {
    struct stat st;
    if (lstat(p, &st)) return -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(p);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                char *c = gt_path_join(p, e->d_name);
                rm_tree(c);
                free(c);
            }
        if (d) closedir(d);
        return rmdir(p);
    }
    return unlink(p);
}

static void teardown(void) { rm_tree(g_dir); }

static char *in_dir(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 256, "%s/%s", g_dir, name);
    return b;
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n;
}

static char *slurp(const char *path) {
    static char buf[256];
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

START_TEST(path_join_adds_one_slash) {
    char *p = gt_path_join("a/b", "c.json");
    ck_assert_str_eq(p, "a/b/c.json");
    free(p);
    p = gt_path_join("a/b/", "c");
    ck_assert_str_eq(p, "a/b/c");
    free(p);
    p = gt_path_join("", "c");
    ck_assert_str_eq(p, "c");
    free(p);
}
END_TEST

START_TEST(mkdir_p_creates_nested_and_reports_files) {
    char err[512] = "";
    ck_assert_msg(gt_mkdir_p(in_dir("a/b/c"), err, sizeof err) == 0, "%s", err);
    struct stat st;
    ck_assert(stat(in_dir("a/b/c"), &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_msg(gt_mkdir_p(in_dir("a/b/c/"), err, sizeof err) == 0, "%s", err); /* exists: fine */
    ck_assert_msg(gt_mkdir_parents(in_dir("p/q/file.txt"), err, sizeof err) == 0, "%s", err);
    ck_assert(stat(in_dir("p/q"), &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert(stat(in_dir("p/q/file.txt"), &st) != 0);
    ck_assert_int_eq(gt_mkdir_parents("file.txt", err, sizeof err), 0); /* no directory part */
    FILE *f = fopen(in_dir("a/f"), "w");
    ck_assert(f);
    fclose(f);
    ck_assert_int_eq(gt_mkdir_p(in_dir("a/f/g"), err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/a/f: exists and is not a directory"), "%s", err);
    ck_assert_int_eq(gt_mkdir_p("", err, sizeof err), -1);
}
END_TEST

START_TEST(atomic_write_replaces_and_leaves_no_temporary) {
    char err[512] = "";
    const char *p = in_dir("x.txt");
    ck_assert_msg(gt_write_file_atomic(p, "old", 3, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(slurp(p), "old");
    struct stat st;
    ck_assert(stat(p, &st) == 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0644);
    gt_atomic w;
    ck_assert_msg(gt_atomic_open(p, &w, err, sizeof err) == 0, "%s", err);
    fputs("new content", w.f);
    ck_assert_str_eq(slurp(p), "old"); /* not yet */
    ck_assert_int_eq(entries(g_dir), 2);
    ck_assert_msg(gt_atomic_commit(&w, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(slurp(p), "new content");
    ck_assert_int_eq(entries(g_dir), 1);
    /* abort keeps the old file */
    ck_assert_msg(gt_atomic_open(p, &w, err, sizeof err) == 0, "%s", err);
    fputs("discarded", w.f);
    gt_atomic_abort(&w);
    gt_atomic_abort(&w); /* twice is harmless */
    ck_assert_str_eq(slurp(p), "new content");
    ck_assert_int_eq(entries(g_dir), 1);
    /* the target is a directory: the rename fails and the temporary goes */
    ck_assert(mkdir(in_dir("d"), 0755) == 0);
    ck_assert_int_eq(gt_write_file_atomic(in_dir("d"), "x", 1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/d: cannot rename the temporary file into place"), "%s", err);
    ck_assert_int_eq(entries(g_dir), 2);
    /* no directory to put the temporary in */
    ck_assert_int_eq(gt_write_file_atomic(in_dir("missing/y"), "x", 1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "missing/y: cannot create a temporary file beside it: No such file or directory"), "%s",
                  err);
    ck_assert_int_eq(gt_fsync_path(p, false), 0);
    ck_assert_int_eq(gt_fsync_path(g_dir, true), 0);
    ck_assert_int_eq(gt_fsync_path(in_dir("missing"), false), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* Whether the mapping holding p carries madvise(MADV_HUGEPAGE) ("hg" in /proc/self/smaps's
 * VmFlags); -1 when smaps cannot tell. */
static int huge_advised(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int inside = 0, found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && !strncmp(line, "VmFlags:", 8)) {
            found = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    return found;
}

START_TEST(hugepage_advice_marks_whole_huge_pages) {
    gt_hugepage_advise(NULL, 0); /* nothing to do: no crash */
    size_t huge = (size_t)2 << 20;
    unsigned char *p = aligned_alloc(huge, 4 * huge);
    ck_assert_ptr_nonnull(p);
    gt_hugepage_advise(p + 100, 100); /* under one huge page: left alone */
    int before = huge_advised(p + huge);
    gt_hugepage_advise(p + 1, 4 * huge - 1); /* the 3 whole huge pages after p's own */
    int mid = huge_advised(p + huge), edge = huge_advised(p);
    FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (thp && before >= 0) { /* a kernel with THP: the advice shows in smaps */
        ck_assert_int_eq(before, 0);
        ck_assert_int_eq(mid, 1);
        ck_assert_int_eq(edge, 0); /* the partial first page is not advised */
    }
    if (thp) fclose(thp);
    p[0] = 1, p[4 * huge - 1] = 2; /* the memory stays usable */
    ck_assert_int_eq(p[0] + p[4 * huge - 1], 3);
    free(p);
}
END_TEST

int main(void) {
    Suite *s = suite_create("util");
    TCase *h = tcase_create("half");
    tcase_add_test(h, f16_to_f32_every_pattern);
    tcase_add_test(h, bf16_to_f32_every_pattern);
    tcase_add_test(h, f32_to_bf16_matches_and_rounds_to_nearest_even);
    tcase_add_test(h, f32_to_f16_rounds_to_nearest_even);
    tcase_add_test(h, printable_keeps_messages_on_one_line);
    tcase_add_test(h, fail_formats_and_returns_minus_one);
    tcase_add_test(h, hugepage_advice_marks_whole_huge_pages);
    suite_add_tcase(s, h);
    TCase *f = tcase_create("fsutil");
    tcase_add_checked_fixture(f, setup, teardown);
    tcase_add_test(f, path_join_adds_one_slash);
    tcase_add_test(f, mkdir_p_creates_nested_and_reports_files);
    tcase_add_test(f, atomic_write_replaces_and_leaves_no_temporary);
    suite_add_tcase(s, f);
    return gt_test_suite_main(s);
}
