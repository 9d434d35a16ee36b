/* Each command's --help matches what its parser accepts (issue 19): every long option in the
 * parser's option table (read from the command's source, cli/) appears in its --help, and every
 * --option its --help names is in that table, except the named cross-references to other tools'
 * flags. --help itself is accepted everywhere and not counted. */
#include <check.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "tests/check_main.h"

enum { MAXF = 64 };
typedef struct { char name[MAXF][40]; int n; } flags;

static void add(flags *f, const char *s, size_t len) {
    if (len >= sizeof f->name[0] || (len == 4 && !strncmp(s, "help", 4))) return;
    for (int i = 0; i < f->n; i++)
        if (strlen(f->name[i]) == len && !strncmp(f->name[i], s, len)) return;
    ck_assert(f->n < MAXF);
    memcpy(f->name[f->n], s, len);
    f->name[f->n++][len] = 0;
}

static bool has(const flags *f, const char *s) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->name[i], s)) return true;
    return false;
}

/* The --names in text (letters, digits, '-'; after a non-word character). */
static void scan_dashes(const char *text, flags *f) {
    for (const char *p = strstr(text, "--"); p; p = strstr(p + 2, "--")) {
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '-')) continue;
        const char *s = p + 2, *e = s;
        while (isalnum((unsigned char)*e) || *e == '-') e++;
        if (e > s && isalpha((unsigned char)*s)) add(f, s, (size_t)(e - s));
    }
}

/* The "--name" string literals of a source file (its comments do not count). */
static void scan_literals(const char *src, flags *f) {
    for (const char *p = strstr(src, "\"--"); p; p = strstr(p + 3, "\"--")) {
        const char *s = p + 3, *e = s;
        while (isalnum((unsigned char)*e) || *e == '-') e++;
        if (*e == '"' && e > s) add(f, s, (size_t)(e - s));
    }
}

static char *slurp(const char *path) {
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp, "cannot read %s (run from the repository root)", path);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

/* The long options of the which-th (0-based) `struct option` table in path. */
static void table(const char *path, int which, flags *f) {
    const char *p = slurp(path);
    for (int i = 0; i <= which; i++) {
        p = strstr(p, "struct option opts[] = {");
        ck_assert_msg(p, "%s: no option table %d", path, which);
        p++;
    }
    const char *end = strstr(p, "{NULL, 0, NULL, 0}");
    ck_assert(end);
    for (const char *q = strstr(p, "{\""); q && q < end; q = strstr(q + 2, "{\"")) {
        const char *e = strchr(q + 2, '"');
        add(f, q + 2, (size_t)(e - q - 2));
    }
}

static void help_of(const char *cmd, flags *f) {
    const char *bin = getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain";
    char c[512], out[1 << 14];
    snprintf(c, sizeof c, "%s %s --help 2>&1", bin, cmd);
    FILE *p = popen(c, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s --help: exit %d:\n%s", cmd, st, out);
    scan_dashes(out, f);
}

/* help and accepted equal, but for the cross-references xref (other tools' flags, "a,b"). */
static void same(const char *cmd, const flags *help, const flags *accepted, const char *xref) {
    for (int i = 0; i < accepted->n; i++)
        ck_assert_msg(has(help, accepted->name[i]), "%s accepts --%s, which its --help does not mention", cmd,
                      accepted->name[i]);
    for (int i = 0; i < help->n; i++) {
        char pat[48];
        snprintf(pat, sizeof pat, ",%s,", help->name[i]);
        char x[256];
        snprintf(x, sizeof x, ",%s,", xref);
        ck_assert_msg(has(accepted, help->name[i]) || strstr(x, pat),
                      "%s --help names --%s, which its parser does not accept", cmd, help->name[i]);
    }
}

START_TEST(getopt_commands) {
    static const struct { const char *cmd, *file; int table; const char *xref; } c[] = {
        {"generate", "cli/cli_generate.c", 0, "format,merge-lora"}, /* "export --format peft", "--merge-lora" */
        {"export", "cli/cli_export.c", 0, "lora"},                 /* "llama-cli --lora PATH" */
        {"convert", "cli/cli_export.c", 1, ""},
        {"tokenize", "cli/cli_tokenize.c", 0, ""},
        {"plot", "cli/cli_plot.c", 0, ""},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        flags h = {0}, a = {0};
        help_of(c[i].cmd, &h);
        table(c[i].file, c[i].table, &a);
        ck_assert_msg(a.n > 0, "%s: no options found in %s", c[i].cmd, c[i].file);
        same(c[i].cmd, &h, &a, c[i].xref);
        printf("%s: %d options, all in --help and back\n", c[i].cmd, a.n);
    }
}
END_TEST

/* train and eval share one hand-written parser (cli/cli_train.c): its "--name" literals and the
 * two commands' --help together; compare takes no options. */
START_TEST(train_eval_compare) {
    flags h = {0}, a = {0}, none = {0};
    help_of("train", &h);
    help_of("eval", &h);
    scan_literals(slurp("cli/cli_train.c"), &a);
    same("train/eval", &h, &a, "");
    printf("train/eval: %d options, all in --help and back\n", a.n);
    flags hc = {0};
    help_of("compare", &hc);
    same("compare", &hc, &none, "");
}
END_TEST

int main(void) {
    Suite *s = suite_create("help");
    TCase *tc = tcase_create("help");
    tcase_add_test(tc, getopt_commands);
    tcase_add_test(tc, train_eval_compare);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
