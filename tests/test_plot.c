/* gemmatrain plot: metrics JSONL -> SVG, through the library (train/plot.h) and the CLI. */
#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/plot.h"
#include "tests/cli_run.h"
#include "tests/check_main.h"

/* ---- helpers ---- */

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/gt-test-plot-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
}

/* DIR/name in one of a few rotating buffers: good for a call's arguments, not to keep. */
static const char *in_dir(const char *name) {
    static char bufs[4][256];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 256, "%s/%s", dir, name);
    return b;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Files in the test directory: a failed write must leave no temporary file behind. */
static int files_in_dir(void) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == ':' || c == '.';
}

/* &amp; &lt; &gt; &quot; &apos; &#N; &#xH; at p; length, or 0. */
static size_t entity(const char *p) {
    static const char *const named[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (int i = 0; i < 5; i++)
        if (!strncmp(p, named[i], strlen(named[i]))) return strlen(named[i]);
    if (p[1] != '#') return 0;
    size_t i = 2;
    bool hex = p[2] == 'x';
    i += hex;
    size_t d = i;
    while ((hex && strchr("0123456789abcdefABCDEF", p[i]) && p[i]) || (!hex && p[i] >= '0' && p[i] <= '9')) i++;
    return i > d && p[i] == ';' ? i + 1 : 0;
}

/* A small well-formedness check (no XML library is a dependency): the XML declaration, one root
 * <svg> element, balanced and properly nested tags, quoted attributes, no raw '<' or stray '&'. */
static bool xml_ok(const char *s, char *why, size_t whyn) {
#define FAIL(...) return snprintf(why, whyn, __VA_ARGS__), false
    if (strncmp(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", 39)) FAIL("no XML declaration");
    const char *p = strstr(s, "?>") + 2;
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == ' ')) len--;
    if (len < 6 || strncmp(s + len - 6, "</svg>", 6)) FAIL("does not end with </svg>");
    char stack[32][32];
    int depth = 0, roots = 0;
    while (*p) {
        if (*p == '<' && !strncmp(p, "<!--", 4)) {
            const char *e = strstr(p, "-->");
            if (!e) FAIL("unterminated comment");
            p = e + 3;
        } else if (*p == '<' && p[1] == '/') {
            const char *n = p + 2, *e = n;
            while (name_char(*e)) e++;
            if (!depth) FAIL("closing tag with nothing open at offset %ld", (long)(p - s));
            depth--;
            if ((size_t)(e - n) != strlen(stack[depth]) || strncmp(n, stack[depth], (size_t)(e - n)))
                FAIL("</%.*s> closes <%s> at offset %ld", (int)(e - n), n, stack[depth], (long)(p - s));
            if (*e != '>') FAIL("bad closing tag at offset %ld", (long)(p - s));
            p = e + 1;
        } else if (*p == '<') {
            const char *n = p + 1, *e = n;
            while (name_char(*e)) e++;
            if (e == n || (size_t)(e - n) >= 32) FAIL("bad tag name at offset %ld", (long)(p - s));
            if (!depth && (roots++ || strncmp(n, "svg", 3) || e - n != 3)) FAIL("root is not one <svg>");
            if (depth == 32) FAIL("nesting too deep");
            p = e;
            for (;;) { /* attributes */
                bool space = *p == ' ' || *p == '\n';
                while (*p == ' ' || *p == '\n') p++;
                if (*p == '>' || (p[0] == '/' && p[1] == '>')) break;
                if (!space || !name_char(*p)) FAIL("bad attribute at offset %ld", (long)(p - s));
                while (name_char(*p)) p++;
                if (*p != '=' || (p[1] != '"' && p[1] != '\'')) FAIL("unquoted attribute at offset %ld", (long)(p - s));
                char q = p[1];
                for (p += 2; *p != q; p++) {
                    if (!*p || *p == '<') FAIL("bad attribute value at offset %ld", (long)(p - s));
                    if (*p == '&' && !entity(p)) FAIL("bad entity at offset %ld", (long)(p - s));
                }
                p++;
            }
            if (*p == '>') {
                snprintf(stack[depth++], 32, "%.*s", (int)(e - n), n);
                p++;
            } else {
                p += 2;
            }
        } else {
            if (*p == '&' && !entity(p)) FAIL("bad entity at offset %ld", (long)(p - s));
            if (!depth && *p != '\n' && *p != ' ') FAIL("text outside the root at offset %ld", (long)(p - s));
            p++;
        }
    }
    if (depth) FAIL("<%s> not closed", stack[depth - 1]);
    if (roots != 1) FAIL("no root element");
    return true;
#undef FAIL
}

static void assert_xml(const char *svg, const char *path) {
    char why[256];
    ck_assert_msg(xml_ok(svg, why, sizeof why), "%s: not well-formed: %s", path, why);
    /* a real XML parser too, where one is installed (not a dependency) */
    if (path && system("command -v xmllint >/dev/null 2>&1") == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "xmllint --noout %s", path);
        ck_assert_msg(system(cmd) == 0, "xmllint rejects %s", path);
    }
}

/* The number of x,y pairs in <polyline id="ID" ... points="...">, or -1 without one. */
static int polyline_points(const char *svg, const char *id) {
    char key[64];
    snprintf(key, sizeof key, "<polyline id=\"%s\"", id);
    const char *p = strstr(svg, key);
    if (!p) return -1;
    const char *end = strchr(p, '>');
    p = strstr(p, " points=\"");
    if (!p || p > end) return -1;
    p += 9;
    int n = 0;
    for (;;) {
        double x, y;
        int used;
        if (sscanf(p, "%lf,%lf%n", &x, &y, &used) != 2) return -1;
        ck_assert_msg(x >= 0 && x <= 800 && y >= 0 && y <= 480, "%s point %d at (%g, %g)", id, n, x, y);
        n++;
        p += used;
        if (*p == '"') return n;
        if (*p != ' ') return -1;
        p++;
    }
}

/* Occurrences of `what` inside <g id="ID">...</g>, or -1 without the group. */
static int count_in_group(const char *svg, const char *id, const char *what) {
    char key[64];
    snprintf(key, sizeof key, "<g id=\"%s\"", id);
    const char *p = strstr(svg, key);
    if (!p) return -1;
    const char *end = strstr(p, "</g>");
    int n = 0;
    for (p = strstr(p, what); p && p < end; p = strstr(p + 1, what)) n++;
    return n;
}

/* Six logged steps with lr, evals at 0, 3 and 6; then a resume from step 3 logs steps 4-6 and the
 * eval at 6 again with new values. Blank lines are allowed. */
static const char *metrics =
    "{\"step\": 0, \"eval_loss\": 6.036, \"eval_perplexity\": 418.3, \"eval_tokens\": 900}\n"
    "{\"step\": 1, \"loss\": 6.1, \"lr\": 0.0005, \"grad_norm\": 1.2, \"weighted_tokens\": 40, \"tokens_per_s\": 100.0, \"skipped\": false}\n"
    "{\"step\": 2, \"loss\": 5.5, \"lr\": 0.001, \"grad_norm\": 1.1, \"weighted_tokens\": 40, \"tokens_per_s\": 100.0, \"skipped\": false}\n"
    "{\"step\": 3, \"loss\": 5.0, \"lr\": 0.001, \"grad_norm\": 1.0, \"weighted_tokens\": 40, \"tokens_per_s\": 100.0, \"skipped\": false}\n"
    "{\"step\": 3, \"eval_loss\": 5.2, \"eval_perplexity\": 181.3, \"eval_tokens\": 900}\n"
    "{\"step\": 4, \"loss\": 9.9, \"lr\": 0.0009, \"grad_norm\": 0.9, \"weighted_tokens\": 40, \"tokens_per_s\": 100.0, \"skipped\": false}\n"
    "{\"step\": 5, \"loss\": 9.8, \"lr\": 0.0008, \"grad_norm\": 0.9, \"weighted_tokens\": 40, \"tokens_per_s\": 100.0, \"skipped\": false}\n"
    "{\"step\": 6, \"loss\": 9.7, \"lr\": 0.0007, \"grad_norm\": 0.9, \"weighted_tokens\": 40, \"tokens_per_s\": 100.0, \"skipped\": false}\n"
    "{\"step\": 6, \"eval_loss\": 9.9, \"eval_perplexity\": 1.0, \"eval_tokens\": 900}\n"
    "\n"
    "{\"step\": 4, \"loss\": 4.6, \"lr\": 0.0009, \"grad_norm\": 0.9, \"weighted_tokens\": 40, \"tokens_per_s\": 90.0, \"skipped\": false}\n"
    "{\"step\": 5, \"loss\": 4.3, \"lr\": 0.0008, \"grad_norm\": 0.9, \"weighted_tokens\": 40, \"tokens_per_s\": 90.0, \"skipped\": false}\n"
    "{\"step\": 6, \"loss\": 4.1, \"lr\": 0.0007, \"grad_norm\": 0.8, \"weighted_tokens\": 40, \"tokens_per_s\": 90.0, \"skipped\": false}\n"
    "{\"step\": 6, \"eval_loss\": 4.4, \"eval_perplexity\": 81.5, \"eval_tokens\": 900}\n";

/* ---- library ---- */

START_TEST(read_keeps_the_last_value_per_step_sorted) {
    char path[256];
    snprintf(path, sizeof path, "%s", in_dir("run.jsonl"));
    write_file(path, metrics);
    gt_plot_data d;
    char err[512];
    ck_assert_msg(gt_plot_read(path, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(d.loss.n, 6);
    ck_assert_int_eq(d.eval_loss.n, 3);
    ck_assert_int_eq(d.lr.n, 6);
    ck_assert_int_eq(d.repeated, 3 + 1 + 3); /* loss 4-6, eval 6, lr 4-6 */
    ck_assert_int_eq(d.loss.skipped + d.eval_loss.skipped + d.lr.skipped, 0);
    static const double loss[6] = {6.1, 5.5, 5.0, 4.6, 4.3, 4.1}, eval[3] = {6.036, 5.2, 4.4};
    static const int64_t eval_steps[3] = {0, 3, 6};
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(d.loss.pts[i].step, i + 1);
        ck_assert_double_eq_tol(d.loss.pts[i].value, loss[i], 1e-12);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(d.eval_loss.pts[i].step, eval_steps[i]);
        ck_assert_double_eq_tol(d.eval_loss.pts[i].value, eval[i], 1e-12);
    }
    ck_assert_double_eq_tol(d.lr.pts[1].value, 0.001, 1e-15);
    gt_plot_free(&d);
}
END_TEST

START_TEST(svg_has_both_series_the_lr_axis_and_a_legend) {
    char path[256], out[256];
    snprintf(path, sizeof path, "%s", in_dir("run.jsonl"));
    snprintf(out, sizeof out, "%s", in_dir("run.svg"));
    write_file(path, metrics);
    gt_plot_data d;
    char err[512];
    ck_assert_msg(gt_plot_read(path, &d, err, sizeof err) == 0, "%s", err);
    gt_plot_opts o = {"loss <&> \"run\" \xff end"}; /* markup and a byte that is not UTF-8 */
    ck_assert_msg(gt_plot_write_svg(&d, &o, out, err, sizeof err) == 0, "%s", err);
    gt_plot_free(&d);
    ck_assert_int_eq(files_in_dir(), 2); /* no temporary file left */
    char *svg = read_all(out);
    assert_xml(svg, out);
    ck_assert_int_eq(polyline_points(svg, "train_loss"), 6);
    ck_assert_int_eq(polyline_points(svg, "eval_loss"), 3);
    ck_assert_int_eq(count_in_group(svg, "eval_loss_markers", "<circle"), 3);
    ck_assert_int_eq(polyline_points(svg, "lr"), 6);
    ck_assert_msg(strstr(svg, "stroke-dasharray=\"6 4\" stroke-opacity=\"0.85\" points="), "lr is not dashed");
    ck_assert_msg(strstr(svg, "class=\"train_loss\"") && strstr(svg, "class=\"eval_loss\""), "no classes");
    /* round ticks: steps 0..6 by 1, loss 4..6.5 by 0.5, lr 0..1.2e-3 by 2e-4 on its own axis */
    ck_assert_int_eq(count_in_group(svg, "x_axis", "<text"), 7 + 1);
    ck_assert_msg(strstr(svg, ">0</text>") && strstr(svg, ">6</text>"), "x ticks");
    ck_assert_int_eq(count_in_group(svg, "y_axis", "<text"), 6 + 1);
    ck_assert_msg(strstr(svg, ">4.0</text>") && strstr(svg, ">6.5</text>") && !strstr(svg, ">7.0</text>"), "loss ticks");
    ck_assert_int_eq(count_in_group(svg, "lr_axis", "<text"), 7 + 1);
    ck_assert_msg(strstr(svg, ">2e-4</text>") && strstr(svg, ">1.2e-3</text>"), "lr ticks");
    ck_assert_msg(strstr(svg, ">learning rate</text>") && strstr(svg, ">step</text>") && strstr(svg, ">loss</text>"),
                  "axis titles");
    ck_assert_int_eq(count_in_group(svg, "legend", "<text"), 3);
    ck_assert_msg(strstr(svg, "loss &lt;&amp;&gt; &quot;run&quot; \xEF\xBF\xBD end</text>"), "title not escaped");
    free(svg);
}
END_TEST

/* nan / -nan / inf as printf writes them, and null: the point is left out and counted; a finite
 * value later for the same step wins, a missing one later removes the point. */
START_TEST(non_finite_values_are_left_out) {
    char path[256];
    snprintf(path, sizeof path, "%s", in_dir("nan.jsonl"));
    write_file(path,
               "{\"step\": 0, \"eval_loss\": nan, \"eval_perplexity\": nan, \"eval_tokens\": 900}\n"
               "{\"step\": 1, \"loss\": 3.5, \"lr\": 1e-4, \"grad_norm\": 1.0, \"skipped\": false}\n"
               "{\"step\": 2, \"loss\": -nan, \"lr\": 1e-4, \"grad_norm\": nan, \"skipped\": true}\n"
               "{\"step\": 3, \"loss\": inf, \"lr\": null, \"grad_norm\": -inf, \"skipped\": true}\n"
               "{\"step\": 4, \"loss\": null, \"lr\": 1e-4, \"skipped\": true}\n"
               "{\"step\": 5, \"loss\": 3.0, \"lr\": 1e-4, \"note\": \"a nan in a string stays\"}\n"
               "{\"step\": 6, \"loss\": 2.5, \"lr\": 1e-4}\n"
               "{\"step\": 6, \"loss\": NaN, \"lr\": 1e-4}\n"
               "{\"step\": 7, \"loss\": Infinity, \"lr\": 1e-4}\n"
               "{\"step\": 7, \"loss\": 2.0, \"lr\": 1e-4}\n"
               "{\"step\": 7, \"eval_loss\": 2.2}\n");
    gt_plot_data d;
    char err[512];
    ck_assert_msg(gt_plot_read(path, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(d.loss.n, 3); /* steps 1, 5, 7 */
    ck_assert_int_eq(d.loss.skipped, 4); /* steps 2, 3, 4, 6 */
    ck_assert_int_eq(d.eval_loss.n, 1);
    ck_assert_int_eq(d.eval_loss.skipped, 1);
    ck_assert_int_eq(d.lr.n, 6);
    ck_assert_int_eq(d.lr.skipped, 1);
    ck_assert_int_eq(d.loss.pts[2].step, 7);
    ck_assert_double_eq(d.loss.pts[2].value, 2.0);
    gt_plot_free(&d);
    char out[4096], args[512];
    snprintf(args, sizeof args, "plot %s", path);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 0);
    ck_assert_msg(strstr(out, "note: 6 non-finite or null values left out (loss 4, eval_loss 1, lr 1)"), "%s", out);
    char *svg = read_all(in_dir("nan.svg"));
    assert_xml(svg, in_dir("nan.svg"));
    ck_assert_int_eq(polyline_points(svg, "train_loss"), 3);
    ck_assert_int_eq(polyline_points(svg, "eval_loss"), 1);
    ck_assert_int_eq(count_in_group(svg, "eval_loss_markers", "<circle"), 1);
    ck_assert_msg(!strstr(svg, "nan") && !strstr(svg, "inf"), "a non-finite number in the SVG");
    free(svg);
}
END_TEST

/* The well-formedness check above must be able to fail. */
START_TEST(xml_check_rejects_broken_documents) {
    const char *head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    static const char *const bad[] = {
        "<svg><g></svg>\n",                   /* unclosed */
        "<svg><g></h></g></svg>\n",           /* mismatched */
        "<svg><text>a < b</text></svg>\n",    /* raw < */
        "<svg><text>a & b</text></svg>\n",    /* raw & */
        "<svg><line x1=1/></svg>\n",          /* unquoted */
        "<svg><line x1=\"1\"y1=\"2\"/></svg>\n", /* no space between attributes */
        "<svg></svg><svg></svg>\n",           /* two roots */
        "<g></g>\n",                          /* not svg, no </svg> end */
    };
    char doc[256], why[256];
    snprintf(doc, sizeof doc, "%s<svg><text x=\"1\">a &amp; b &#x3c;</text><line x1=\"1\" y1=\"2\"/></svg>\n", head);
    ck_assert_msg(xml_ok(doc, why, sizeof why), "%s", why);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(doc, sizeof doc, "%s%s", head, bad[i]);
        ck_assert_msg(!xml_ok(doc, why, sizeof why), "accepted %s", bad[i]);
    }
    ck_assert(!xml_ok("<svg></svg>\n", why, sizeof why)); /* no declaration */
}
END_TEST

/* ---- CLI ---- */

START_TEST(cli_default_output_title_and_path) {
    char path[256];
    snprintf(path, sizeof path, "%s", in_dir("metrics.jsonl"));
    write_file(path, metrics);
    char out[4096], args[1024];
    snprintf(args, sizeof args, "plot %s", path);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 0);
    char want[300];
    snprintf(want, sizeof want, "%s\n", in_dir("metrics.svg"));
    ck_assert_msg(strstr(out, want), "%s", out);
    ck_assert_msg(strstr(out, "note: 7 values logged again for the same step"), "%s", out);
    char *svg = read_all(in_dir("metrics.svg"));
    assert_xml(svg, in_dir("metrics.svg"));
    ck_assert_int_eq(polyline_points(svg, "train_loss"), 6);
    ck_assert_int_eq(polyline_points(svg, "eval_loss"), 3);
    ck_assert_int_eq(polyline_points(svg, "lr"), 6);
    ck_assert_msg(strstr(svg, "<g id=\"lr_axis\""), "no lr axis");
    ck_assert_msg(!strstr(svg, "id=\"title\""), "a title nobody asked for");
    free(svg);
    /* -o and --title, options after the file (getopt permutes) */
    snprintf(args, sizeof args, "plot %s -o %s --title 'a < b & c'", path, in_dir("other.svg"));
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 0);
    ck_assert_msg(strstr(out, in_dir("other.svg")), "%s", out);
    svg = read_all(in_dir("other.svg"));
    assert_xml(svg, in_dir("other.svg"));
    ck_assert_msg(strstr(svg, ">a &lt; b &amp; c</text>"), "no escaped title");
    free(svg);
    ck_assert_int_eq(files_in_dir(), 3);
    /* a name without .jsonl gets .svg appended */
    write_file(in_dir("log"), metrics);
    snprintf(args, sizeof args, "plot -t T %s", in_dir("log"));
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    ck_assert(exists(in_dir("log.svg")));
}
END_TEST

START_TEST(cli_malformed_line_names_file_and_line) {
    char path[256];
    snprintf(path, sizeof path, "%s", in_dir("bad.jsonl"));
    char out[4096], args[512];
    static const struct { const char *text, *why; } cases[] = {
        {"{\"step\": 1, \"loss\": 2.0}\n\n{\"step\": 2, \"loss\": 1.9\n", ":3: malformed JSON: "},
        {"{\"step\": 1, \"loss\": 2.0}\n[1, 2]\n", ":2: expected a JSON object"},
        {"{\"step\": 1, \"loss\": \"2.0\"}\n", ":1: \"loss\" must be a number (or null)"},
        {"{\"step\": 1, \"loss\": 2.0}\n{\"loss\": 2.0}\n", ":2: missing \"step\""},
        {"{\"step\": 1.5, \"loss\": 2.0}\n", ":1: \"step\" must be a non-negative integer"},
        {"{\"step\": 1, \"loss\": 2.0, \"loss\": 3.0}\n", ":1: malformed JSON: duplicate object key"},
        {"{\"step\": 1, \"loss\": nano}\n", ":1: malformed JSON: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(path, cases[i].text);
        snprintf(args, sizeof args, "plot %s", path);
        ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
        char want[512];
        snprintf(want, sizeof want, "gemmatrain plot: %s%s", path, cases[i].why);
        ck_assert_msg(strstr(out, want), "case %zu: want '%s' in:\n%s", i, want, out);
        ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "case %zu: not one line:\n%s", i, out);
        ck_assert_int_eq(files_in_dir(), 1); /* no SVG, no temporary file */
    }
    /* an SVG already there is left alone */
    write_file(in_dir("bad.svg"), "old");
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    char *old = read_all(in_dir("bad.svg"));
    ck_assert_str_eq(old, "old");
    free(old);
}
END_TEST

START_TEST(cli_missing_empty_and_unplottable_files) {
    char out[4096], args[512];
    snprintf(args, sizeof args, "plot %s", in_dir("none.jsonl"));
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    char want[512];
    snprintf(want, sizeof want, "gemmatrain plot: %s: cannot open: No such file or directory\n", in_dir("none.jsonl"));
    ck_assert_str_eq(out, want);
    write_file(in_dir("empty.jsonl"), "");
    snprintf(args, sizeof args, "plot %s", in_dir("empty.jsonl"));
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    snprintf(want, sizeof want, "gemmatrain plot: %s: no loss or eval_loss values to plot (the file is empty)\n",
             in_dir("empty.jsonl"));
    ck_assert_str_eq(out, want);
    /* only lr, or only missing losses: nothing to draw */
    write_file(in_dir("lr.jsonl"), "{\"step\": 1, \"lr\": 0.1}\n{\"step\": 2, \"loss\": nan, \"lr\": 0.1}\n");
    snprintf(args, sizeof args, "plot %s", in_dir("lr.jsonl"));
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "no loss or eval_loss values to plot (1 non-finite or null)"), "%s", out);
    ck_assert_int_eq(files_in_dir(), 2);
    /* a directory is not a metrics file */
    snprintf(args, sizeof args, "plot %s", dir);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, ": cannot read: Is a directory"), "%s", out);
}
END_TEST

START_TEST(cli_write_failures_leave_nothing) {
    char path[256];
    snprintf(path, sizeof path, "%s", in_dir("run.jsonl"));
    write_file(path, metrics);
    char out[4096], args[1024];
    /* the output is a directory: the rename fails and the temporary file goes */
    mkdir(in_dir("sub"), 0755);
    snprintf(args, sizeof args, "plot %s -o %s", path, in_dir("sub"));
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "cannot rename the temporary file into place"), "%s", out);
    ck_assert_int_eq(files_in_dir(), 2);
    snprintf(args, sizeof args, "plot %s -o %s/no/such/dir/x.svg", path, dir);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "x.svg: cannot create a temporary file beside it: No such file or directory"), "%s", out);
    /* -o naming the metrics file itself */
    snprintf(args, sizeof args, "plot %s -o %s/./run.jsonl", path, dir);
    ck_assert_int_eq(gt_test_run(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "is the metrics file"), "%s", out);
    char *s = read_all(path);
    ck_assert_str_eq(s, metrics);
    free(s);
    ck_assert_int_eq(files_in_dir(), 2);
}
END_TEST

START_TEST(cli_usage_errors) {
    char out[4096];
    ck_assert_int_eq(gt_test_run("plot", out, sizeof out), 2);
    ck_assert_msg(strstr(out, "no metrics file given") && strstr(out, "usage: gemmatrain plot"), "%s", out);
    ck_assert_int_eq(gt_test_run("plot a.jsonl b.jsonl", out, sizeof out), 2);
    ck_assert_int_eq(gt_test_run("plot --frobnicate a.jsonl", out, sizeof out), 2);
    ck_assert_msg(strstr(out, "unknown option '--frobnicate'"), "%s", out);
    ck_assert_int_eq(gt_test_run("plot a.jsonl -o", out, sizeof out), 2);
    ck_assert_msg(strstr(out, "option '-o' needs a value"), "%s", out);
    ck_assert_int_eq(gt_test_run("plot --help", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "--title TEXT"), "%s", out);
    ck_assert_int_eq(gt_test_run("--help", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "  plot "), "%s", out);
}
END_TEST

/* What the trainer really writes (train/report.c) plots: 4 steps logged, evals before and after. */
START_TEST(cli_plots_a_real_training_run) {
    char out[1 << 16], args[1024];
    snprintf(args, sizeof args,
             "train configs/tiny.yaml tokenizer=tests/fixtures/gemma3-tokenizer-8k.json model.vocab_size=8192 "
             "train.steps=4 logging.every_steps=1 eval.max_examples=8 logging.metrics=%s", in_dir("m.jsonl"));
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    snprintf(args, sizeof args, "plot %s", in_dir("m.jsonl"));
    ck_assert_msg(gt_test_run(args, out, sizeof out) == 0, "%s", out);
    char *svg = read_all(in_dir("m.svg"));
    assert_xml(svg, in_dir("m.svg"));
    ck_assert_int_eq(polyline_points(svg, "train_loss"), 4);
    ck_assert_int_eq(polyline_points(svg, "eval_loss"), 2);
    ck_assert_int_eq(polyline_points(svg, "lr"), 4);
    free(svg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("plot");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, xml_check_rejects_broken_documents);
    tcase_add_test(tc, read_keeps_the_last_value_per_step_sorted);
    tcase_add_test(tc, svg_has_both_series_the_lr_axis_and_a_legend);
    tcase_add_test(tc, non_finite_values_are_left_out);
    tcase_add_test(tc, cli_default_output_title_and_path);
    tcase_add_test(tc, cli_malformed_line_names_file_and_line);
    tcase_add_test(tc, cli_missing_empty_and_unplottable_files);
    tcase_add_test(tc, cli_write_failures_leave_nothing);
    tcase_add_test(tc, cli_usage_errors);
    tcase_add_test(tc, cli_plots_a_real_training_run);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
