/* plot.c: metrics JSONL -> loss-curve SVG (see plot.h). */
#include "train/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fsutil.h"
#include "util/err.h"

/* ------------------------------------------------------------------------------------------ */
/* Reading */

typedef struct {
    int64_t step;
    double value; /* NaN: missing (nan / inf / null in the file) */
    size_t seq;   /* file order, so the last line for a step wins after sorting */
} raw_point;

typedef struct {
    raw_point *p;
    size_t n, cap;
} raw_series;

static int raw_push(raw_series *s, int64_t step, double value) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        raw_point *p = realloc(s->p, cap * sizeof *p);
        if (!p) return -1;
        s->p = p;
        s->cap = cap;
    }
    s->p[s->n] = (raw_point){step, value, s->n};
    s->n++;
    return 0;
}

static int by_step_then_seq(const void *a, const void *b) {
    const raw_point *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort, keep the last value per step, drop the steps whose last value is missing. */
static int finish_series(raw_series *r, gt_plot_series *out, int64_t *repeated) {
    memset(out, 0, sizeof *out);
    if (!r->n) return 0;
    qsort(r->p, r->n, sizeof *r->p, by_step_then_seq);
    if (!(out->pts = malloc(r->n * sizeof *out->pts))) return -1;
    for (size_t i = 0; i < r->n; i++) {
        if (i + 1 < r->n && r->p[i + 1].step == r->p[i].step) {
            (*repeated)++;
            continue;
        }
        if (isfinite(r->p[i].value)) out->pts[out->n++] = (gt_plot_point){r->p[i].step, r->p[i].value};
        else out->skipped++;
    }
    return 0;
}

static bool is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
}

/* The trainer prints non-finite floats with printf (nan, -nan, inf, -inf), which JSON lacks:
 * rewrite those bare words (outside strings) to null. out holds 2 * len + 1 bytes. Returns the
 * number of words rewritten; *outn gets the new length. */
static int nonfinite_to_null(const char *in, size_t len, char *out, size_t *outn) {
    size_t o = 0;
    int rewritten = 0;
    bool in_str = false;
    for (size_t i = 0; i < len;) {
        char c = in[i];
        if (in_str) {
            out[o++] = in[i++];
            if (c == '\\' && i < len) out[o++] = in[i++];
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
            out[o++] = in[i++];
            continue;
        }
        size_t w = i + (c == '-' || c == '+');
        size_t e = w;
        while (e < len && ((in[e] >= 'a' && in[e] <= 'z') || (in[e] >= 'A' && in[e] <= 'Z'))) e++;
        bool boundary = (i == 0 || !is_word_char(in[i - 1])) && (e == len || !is_word_char(in[e]));
        if (e > w && boundary &&
            ((e - w == 3 && (!strncasecmp(in + w, "nan", 3) || !strncasecmp(in + w, "inf", 3))) ||
             (e - w == 8 && !strncasecmp(in + w, "infinity", 8)))) {
            memcpy(out + o, "null", 4);
            o += 4;
            i = e;
            rewritten++;
            continue;
        }
        if (e > w) { /* another word (true, null, garbage): copy it whole */
            memcpy(out + o, in + i, e - i);
            o += e - i;
            i = e;
            continue;
        }
        out[o++] = in[i++];
    }
    out[o] = 0;
    *outn = o;
    return rewritten;
}

static const char *const series_keys[3] = {"loss", "eval_loss", "lr"};

/* One line into the raw series. Message in why without the FILE:LINE prefix. */
static int parse_line(const char *line, size_t len, char *buf, raw_series raw[3], char *why, size_t whyn) {
    size_t n;
    int rewritten = nonfinite_to_null(line, len, buf, &n);
    json_error_t je;
    json_t *o = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        if (rewritten) snprintf(why, whyn, "malformed JSON: %s", gt_err_printable(je.text));
        else snprintf(why, whyn, "malformed JSON: %s (column %d)", gt_err_printable(je.text), je.column);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(o)) {
        snprintf(why, whyn, "expected a JSON object");
        goto done;
    }
    json_t *v[3];
    bool any = false;
    for (int k = 0; k < 3; k++) any |= (v[k] = json_object_get(o, series_keys[k])) != NULL;
    if (!any) { /* another kind of record: nothing to plot */
        rc = 0;
        goto done;
    }
    json_t *st = json_object_get(o, "step");
    if (!json_is_integer(st) || json_integer_value(st) < 0) {
        snprintf(why, whyn, "%s", st ? "\"step\" must be a non-negative integer" : "missing \"step\"");
        goto done;
    }
    int64_t step = (int64_t)json_integer_value(st);
    for (int k = 0; k < 3; k++) {
        if (!v[k]) continue;
        if (!json_is_number(v[k]) && !json_is_null(v[k])) {
            snprintf(why, whyn, "\"%s\" must be a number (or null)", series_keys[k]);
            goto done;
        }
        if (raw_push(&raw[k], step, json_is_null(v[k]) ? NAN : json_number_value(v[k]))) {
            snprintf(why, whyn, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(o);
    return rc;
}

void gt_plot_free(gt_plot_data *d) {
    if (!d) return;
    free(d->loss.pts);
    free(d->eval_loss.pts);
    free(d->lr.pts);
    memset(d, 0, sizeof *d);
}

int gt_plot_read(const char *path, gt_plot_data *d, char *err, size_t errn) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "r");
    if (!f) return gt_err_open(err, errn, path, errno);
    raw_series raw[3] = {{0}};
    char *line = NULL, *buf = NULL, why[256];
    size_t cap = 0, bufcap = 0;
    ssize_t len;
    int64_t lineno = 0, nonblank = 0;
    int rc = -1;
    errno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t l = (size_t)len;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) l--;
        size_t s = 0;
        while (s < l && (line[s] == ' ' || line[s] == '\t')) s++;
        if (s == l) continue; /* blank lines are allowed, as in the datasets */
        nonblank++;
        if (2 * l + 1 > bufcap) {
            free(buf);
            bufcap = 2 * l + 1;
            if (!(buf = malloc(bufcap))) {
                snprintf(err, errn, "%s:%lld: out of memory", path, (long long)lineno);
                goto done;
            }
        }
        if (parse_line(line + s, l - s, buf, raw, why, sizeof why)) {
            snprintf(err, errn, "%s:%lld: %s", path, (long long)lineno, why);
            goto done;
        }
        errno = 0;
    }
    if (ferror(f)) {
        snprintf(err, errn, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
        goto done;
    }
    gt_plot_series *out[3] = {&d->loss, &d->eval_loss, &d->lr};
    for (int k = 0; k < 3; k++)
        if (finish_series(&raw[k], out[k], &d->repeated)) {
            snprintf(err, errn, "%s: out of memory", path);
            goto done;
        }
    if (!d->loss.n && !d->eval_loss.n) {
        int64_t missing = d->loss.skipped + d->eval_loss.skipped;
        if (!nonblank) snprintf(err, errn, "%s: no loss or eval_loss values to plot (the file is empty)", path);
        else if (missing)
            snprintf(err, errn, "%s: no loss or eval_loss values to plot (%lld non-finite or null)", path,
                     (long long)missing);
        else snprintf(err, errn, "%s: no loss or eval_loss values to plot (not a metrics file?)", path);
        goto done;
    }
    rc = 0;
done:
    if (rc) gt_plot_free(d);
    for (int k = 0; k < 3; k++) free(raw[k].p);
    free(line);
    free(buf);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Axes */

typedef struct {
    double lo, hi, step; /* ticks at lo, lo + step, ..., hi */
    int n;
} axis;

/* Heckbert's "nice numbers": 1, 2 or 5 times a power of ten. */
static double nice_num(double x, bool round_) {
    double e = floor(log10(x)), f = x / pow(10, e), nf;
    if (round_) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

/* Round ticks covering [lo, hi], about `target` of them; integer: no step below 1. */
static axis nice_axis(double lo, double hi, int target, bool integer) {
    if (!(hi > lo)) { /* one value: give it some room */
        double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
        if (integer && pad < 1) pad = 1;
        hi = lo + pad;
        lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad;
    }
    axis a;
    a.step = nice_num((hi - lo) / (target - 1), true);
    if (integer && a.step < 1) a.step = 1;
    /* the small slack keeps 0.30000000000000004 / 0.1 from adding a tick */
    double k0 = floor(lo / a.step + 1e-9), k1 = ceil(hi / a.step - 1e-9);
    if (k1 <= k0) k1 = k0 + 1;
    a.lo = k0 * a.step;
    a.hi = k1 * a.step;
    a.n = (int)(k1 - k0) + 1;
    return a;
}

/* Shorten printf's exponent form: trailing zeros of the mantissa, the exponent's '+' and leading
 * zeros go (1.0e-04 -> 1e-4, 2.50e+06 -> 2.5e6). */
static void tidy_exponent(char *s) {
    char *e = strchr(s, 'e');
    if (!e) return;
    char *m = e;
    if (strchr(s, '.')) {
        while (m[-1] == '0') m--;
        if (m[-1] == '.') m--;
    }
    char *p = e + 1, *q = m + 1;
    *m = 'e';
    if (*p == '+') p++;
    else if (*p == '-') *q++ = *p++;
    while (*p == '0' && p[1]) p++;
    memmove(q, p, strlen(p) + 1);
}

/* A tick label with just the digits the tick step needs: 0.5, 12, 3e-4, 2.5e-5. */
static void fmt_tick(double v, const axis *a, char *buf, size_t n) {
    if (fabs(v) < a->step * 1e-6) {
        snprintf(buf, n, "0");
        return;
    }
    int es = (int)floor(log10(a->step) + 1e-9);
    double big = fmax(fabs(a->lo), fabs(a->hi));
    if (es < -3 || big >= 1e6) { /* tiny or huge: d.dde-N */
        int ev = (int)floor(log10(fabs(v)) + 1e-9), prec = ev - es;
        snprintf(buf, n, "%.*e", prec < 0 ? 0 : prec, v);
        tidy_exponent(buf);
    } else {
        snprintf(buf, n, "%.*f", es < 0 ? -es : 0, v);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* SVG */

/* Text content or attribute value: XML-escaped, valid UTF-8 only (a bad byte, or a character XML
 * forbids, becomes U+FFFD), line breaks and tabs as spaces (labels are one line). */
static void put_text(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        bool ok = len > 0;
        for (int i = 1; ok && i < len; i++) {
            ok = (p[i] & 0xC0) == 0x80;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if (ok) /* no overlong forms, surrogates or values past U+10FFFF */
            ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) && !(len == 4 && cp < 0x10000) &&
                 !(cp >= 0xD800 && cp <= 0xDFFF) && cp <= 0x10FFFF && cp != 0xFFFE && cp != 0xFFFF;
        if (!ok) {
            fputs("\xEF\xBF\xBD", f);
            p++; /* resynchronise at the next byte */
            continue;
        }
        switch (cp) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '\t': case '\n': case '\r': putc(' ', f); break;
        default:
            if (cp < 0x20) fputs("\xEF\xBF\xBD", f);
            else fwrite(p, 1, (size_t)len, f);
        }
        p += len;
    }
}

enum { W = 800, H = 480 };
static const char *const c_train = "#1f77b4", *const c_eval = "#d62728", *const c_lr = "#2ca02c";

typedef struct {
    double x0, x1, y0, y1; /* plot area: left, right, top, bottom */
    axis ax, ay, alr;
} frame;

static double px(const frame *fr, double step) {
    return fr->x0 + (step - fr->ax.lo) / (fr->ax.hi - fr->ax.lo) * (fr->x1 - fr->x0);
}

static double py(const frame *fr, const axis *a, double v) {
    return fr->y1 - (v - a->lo) / (a->hi - a->lo) * (fr->y1 - fr->y0);
}

static void put_polyline(FILE *f, const frame *fr, const axis *a, const gt_plot_series *s, const char *id,
                         const char *color, const char *extra) {
    fprintf(f, "<polyline id=\"%s\" class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" "
               "stroke-linejoin=\"round\"%s points=\"", id, id, color, extra);
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", px(fr, (double)s->pts[i].step), py(fr, a, s->pts[i].value));
    fputs("\"/>\n", f);
}

static void put_markers(FILE *f, const frame *fr, const gt_plot_series *s, const char *id, const char *color) {
    fprintf(f, "<g id=\"%s\" fill=\"white\" stroke=\"%s\" stroke-width=\"1.6\">\n", id, color);
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>\n", px(fr, (double)s->pts[i].step),
                py(fr, &fr->ay, s->pts[i].value));
    fputs("</g>\n", f);
}

static void min_max(const gt_plot_series *s, bool steps, double *lo, double *hi) {
    for (size_t i = 0; i < s->n; i++) {
        double v = steps ? (double)s->pts[i].step : s->pts[i].value;
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
}

static void render(FILE *f, const gt_plot_data *d, const char *title) {
    bool has_title = title && title[0], lr = d->lr.n > 0;
    frame fr = {.x0 = 64, .x1 = lr ? W - 84 : W - 28, .y0 = has_title ? 64 : 40, .y1 = H - 54};
    double lo = INFINITY, hi = -INFINITY;
    min_max(&d->loss, true, &lo, &hi);
    min_max(&d->eval_loss, true, &lo, &hi);
    min_max(&d->lr, true, &lo, &hi);
    fr.ax = nice_axis(lo, hi, 8, true);
    lo = INFINITY, hi = -INFINITY;
    min_max(&d->loss, false, &lo, &hi);
    min_max(&d->eval_loss, false, &lo, &hi);
    fr.ay = nice_axis(lo, hi, 6, false);
    if (lr) {
        /* from 0 (warmup starts there), and 5% headroom so a constant rate is not the frame's top */
        lo = INFINITY, hi = -INFINITY;
        min_max(&d->lr, false, &lo, &hi);
        fr.alr = nice_axis(fmin(0, lo), hi > 0 ? hi * 1.05 : hi, 6, false);
    }
    double xm = (fr.x0 + fr.x1) / 2, ym = (fr.y0 + fr.y1) / 2;
    char lab[64];

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\" fill=\"#222\">\n",
            W, H, W, H);
    fputs("<title>", f);
    put_text(f, has_title ? title : "training loss");
    fputs("</title>\n", f);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);

    /* grid of the step and loss ticks, under everything */
    fputs("<g id=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n", f);
    for (int i = 0; i < fr.ax.n; i++) {
        double x = px(&fr, fr.ax.lo + i * fr.ax.step);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, fr.y0, x, fr.y1);
    }
    for (int i = 0; i < fr.ay.n; i++) {
        double y = py(&fr, &fr.ay, fr.ay.lo + i * fr.ay.step);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", fr.x0, y, fr.x1, y);
    }
    fputs("</g>\n", f);

    fputs("<g id=\"x_axis\" font-size=\"11\" text-anchor=\"middle\">\n", f);
    for (int i = 0; i < fr.ax.n; i++) {
        double v = fr.ax.lo + i * fr.ax.step, x = px(&fr, v);
        fmt_tick(v, &fr.ax, lab, sizeof lab);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x, fr.y1, x, fr.y1 + 5, x, fr.y1 + 18, lab);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"13\">step</text>\n</g>\n", xm, H - 14);

    fputs("<g id=\"y_axis\" font-size=\"11\" text-anchor=\"end\">\n", f);
    for (int i = 0; i < fr.ay.n; i++) {
        double v = fr.ay.lo + i * fr.ay.step, y = py(&fr, &fr.ay, v);
        fmt_tick(v, &fr.ay, lab, sizeof lab);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" dy=\"0.35em\">%s</text>\n", fr.x0 - 5, y, fr.x0, y, fr.x0 - 8, y, lab);
    }
    fprintf(f, "<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">"
               "loss</text>\n</g>\n", ym);

    if (lr) {
        fprintf(f, "<g id=\"lr_axis\" font-size=\"11\" text-anchor=\"start\" fill=\"%s\">\n", c_lr);
        for (int i = 0; i < fr.alr.n; i++) {
            double v = fr.alr.lo + i * fr.alr.step, y = py(&fr, &fr.alr, v);
            fmt_tick(v, &fr.alr, lab, sizeof lab);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" dy=\"0.35em\">%s</text>\n",
                    fr.x1, y, fr.x1 + 5, y, c_lr, fr.x1 + 8, y, lab);
        }
        fprintf(f, "<text transform=\"translate(%d %.1f) rotate(90)\" text-anchor=\"middle\" font-size=\"13\">"
                   "learning rate</text>\n</g>\n", W - 16, ym);
    }

    fprintf(f, "<rect id=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#333\"/>\n", fr.x0, fr.y0, fr.x1 - fr.x0, fr.y1 - fr.y0);

    /* lr first: the loss curves draw over it */
    if (lr) put_polyline(f, &fr, &fr.alr, &d->lr, "lr", c_lr, " stroke-dasharray=\"6 4\" stroke-opacity=\"0.85\"");
    if (d->loss.n) {
        put_polyline(f, &fr, &fr.ay, &d->loss, "train_loss", c_train, "");
        if (d->loss.n == 1) put_markers(f, &fr, &d->loss, "train_loss_markers", c_train); /* a lone point */
    }
    if (d->eval_loss.n) {
        put_polyline(f, &fr, &fr.ay, &d->eval_loss, "eval_loss", c_eval, "");
        put_markers(f, &fr, &d->eval_loss, "eval_loss_markers", c_eval);
    }

    /* legend in a row above the plot area, so it never covers a curve; ~7 px per character */
    fputs("<g id=\"legend\" font-size=\"12\">\n", f);
    double lx = fr.x0, ly = fr.y0 - 14;
    struct { bool on; const char *label, *color, *dash; bool marker; } items[3] = {
        {d->loss.n > 0, "train loss", c_train, "", false},
        {d->eval_loss.n > 0, "eval loss", c_eval, "", true},
        {lr, "learning rate (right axis)", c_lr, " stroke-dasharray=\"6 4\"", false},
    };
    for (int k = 0; k < 3; k++) {
        if (!items[k].on) continue;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.8\"%s/>",
                lx, ly, lx + 24, ly, items[k].color, items[k].dash);
        if (items[k].marker)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"white\" stroke=\"%s\" stroke-width=\"1.6\"/>",
                    lx + 12, ly, items[k].color);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" dy=\"0.35em\">%s</text>\n", lx + 30, ly, items[k].label);
        lx += 30 + 7.0 * (double)strlen(items[k].label) + 22;
    }
    fputs("</g>\n", f);

    if (has_title) {
        fprintf(f, "<text id=\"title\" x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" "
                   "font-weight=\"bold\">", W / 2);
        put_text(f, title);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

int gt_plot_svg(const gt_plot_data *d, const gt_plot_opts *o, char **svg, size_t *n, char *err, size_t errn) {
    *svg = NULL;
    *n = 0;
    if (!d->loss.n && !d->eval_loss.n) return snprintf(err, errn, "no loss or eval_loss values to plot"), -1;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return snprintf(err, errn, "out of memory"), -1;
    render(f, d, o ? o->title : NULL);
    /* a memory stream fails only for memory; its error shows at the close */
    bool bad = ferror(f) != 0;
    if (fclose(f) || bad) {
        free(buf);
        return snprintf(err, errn, "out of memory"), -1;
    }
    *svg = buf;
    *n = len;
    return 0;
}

int gt_plot_write_svg(const gt_plot_data *d, const gt_plot_opts *o, const char *path, char *err, size_t errn) {
    char *svg;
    size_t n;
    if (gt_plot_svg(d, o, &svg, &n, err, errn)) return -1;
    int rc = gt_write_file_atomic(path, svg, n, err, errn);
    free(svg);
    return rc;
}
