#include "data/dataset.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "data/preprocess.h"
#include "data/media.h"
#include "util/err.h"

void gt_example_free(gt_example *e) {
    free(e->prompt);
    free(e->response);
    free(e->text);
    for (int i = 0; i < e->n_turns; i++) {
        free(e->roles[i]);
        free(e->contents[i]);
    }
    free(e->roles);
    free(e->contents);
    for (int i = 0; i < e->n_images; i++) free(e->images[i]);
    free(e->images);
    gt_media_free(e->audio, e->n_audio);
    memset(e, 0, sizeof *e);
}

static char *dup_str(json_t *s) {
    size_t n = json_string_length(s);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, json_string_value(s), n);
        d[n] = 0;
    }
    return d;
}

/* The "<start_of_image>" markers where images go: the prompt, or the user turns of a chat. */
static int count_markers(json_t *o, gt_ds_format kind) {
    if (kind == GT_DS_PROMPT_RESPONSE)
        return gt_pp_count_image_markers(json_string_value(json_object_get(o, "prompt")));
    int n = 0;
    json_t *m = json_object_get(o, "messages"), *turn;
    size_t i;
    json_array_foreach(m, i, turn) {
        const char *role = json_string_value(json_object_get(turn, "role"));
        if (!strcmp(role, "user")) /* system text is not expanded (preprocess.c) */
            n += gt_pp_count_image_markers(json_string_value(json_object_get(turn, "content")));
    }
    return n;
}

/* The record's "images" (absent: none): strings, one per marker, each a file that opens
 * (validation, ex NULL) or resolved against dir into ex->images. */
static int parse_images(json_t *o, gt_ds_format kind, const char *dir, gt_example *ex, char *err,
                        size_t errn) {
    json_t *im = json_object_get(o, "images"), *v;
    if (!im) return 0;
    if (!json_is_array(im)) return snprintf(err, errn, "\"images\" must be an array of paths"), -1;
    if (kind == GT_DS_TEXT) return snprintf(err, errn, "\"images\" needs a prompt or messages record"), -1;
    int n = (int)json_array_size(im), marks = count_markers(o, kind);
    if (n != marks)
        return snprintf(err, errn, "%d image%s for %d <start_of_image> marker%s", n, n == 1 ? "" : "s",
                        marks, marks == 1 ? "" : "s"), -1;
    if (ex && n && !(ex->images = calloc((size_t)n, sizeof *ex->images)))
        return snprintf(err, errn, "out of memory"), -1;
    size_t i;
    json_array_foreach(im, i, v) {
        if (!json_is_string(v)) return snprintf(err, errn, "images[%zu] must be a string", i), -1;
        const char *p = json_string_value(v);
        char *full = malloc(strlen(dir) + strlen(p) + 2);
        if (!full) return snprintf(err, errn, "out of memory"), -1;
        sprintf(full, "%s%s%s", p[0] == '/' ? "" : dir, p[0] == '/' || !dir[0] ? "" : "/", p);
        FILE *f = ex ? NULL : fopen(full, "rb");
        if (!ex && !f) {
            snprintf(err, errn, "images[%zu]: %s: cannot open: %s", i, full, strerror(errno));
            free(full);
            return -1;
        }
        if (f) fclose(f);
        if (ex) ex->images[ex->n_images++] = full;
        else free(full);
    }
    return 0;
}

/* The folder of a file path ("" for a bare name). */
static void dir_of(const char *path, char *dir, size_t n) {
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) + (slash == path) : 0;
    snprintf(dir, n, "%.*s", (int)len, path);
}

/* Parse one line into ex (ex may be NULL to validate only); image paths are relative to dir.
 * Message in err without the prefix. */
static int parse_line(const char *line, size_t len, gt_ds_format fmt, const char *dir,
                      gt_example *ex, char *err, size_t errn) {
    json_error_t je;
    json_t *o = json_loadb(line, len, 0, &je);
    if (!o) return snprintf(err, errn, "malformed JSON: %s (column %d)", gt_err_printable(je.text), je.column), -1;
    int rc = -1;
    if (!json_is_object(o)) {
        snprintf(err, errn, "expected a JSON object");
        goto done;
    }
    json_t *p = json_object_get(o, "prompt"), *r = json_object_get(o, "response");
    json_t *t = json_object_get(o, "text"), *m = json_object_get(o, "messages");
    gt_ds_format kind = fmt;
    if (kind == GT_DS_AUTO) kind = m ? GT_DS_CHAT : (p || r) ? GT_DS_PROMPT_RESPONSE : t ? GT_DS_TEXT : GT_DS_AUTO;
    switch (kind) {
    case GT_DS_PROMPT_RESPONSE:
        if (!json_is_string(p) || !json_is_string(r)) {
            snprintf(err, errn, "%s", !p ? "missing field \"prompt\"" : !r ? "missing field \"response\""
                                     : "\"prompt\" and \"response\" must be strings");
            goto done;
        }
        if (ex) {
            ex->prompt = dup_str(p);
            ex->response = dup_str(r);
        }
        break;
    case GT_DS_TEXT:
        if (!json_is_string(t)) {
            snprintf(err, errn, "%s", t ? "\"text\" must be a string" : "missing field \"text\"");
            goto done;
        }
        if (ex) ex->text = dup_str(t);
        break;
    case GT_DS_CHAT: {
        if (!json_is_array(m) || json_array_size(m) == 0) {
            snprintf(err, errn, "%s", m ? "\"messages\" must be a non-empty array" : "missing field \"messages\"");
            goto done;
        }
        size_t n = json_array_size(m);
        for (size_t i = 0; i < n; i++) {
            json_t *turn = json_array_get(m, i);
            json_t *role = json_object_get(turn, "role"), *content = json_object_get(turn, "content");
            if (!json_is_string(role) || !json_is_string(content)) {
                snprintf(err, errn, "messages[%zu] needs string \"role\" and \"content\"", i);
                goto done;
            }
            const char *rs = json_string_value(role);
            if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "model")) {
                snprintf(err, errn, "messages[%zu]: unknown role \"%s\" (system, user, assistant, model)", i, rs);
                goto done;
            }
        }
        if (ex) {
            ex->n_turns = (int)n;
            ex->roles = calloc(n, sizeof *ex->roles);
            ex->contents = calloc(n, sizeof *ex->contents);
            for (size_t i = 0; ex->roles && ex->contents && i < n; i++) {
                json_t *turn = json_array_get(m, i);
                ex->roles[i] = dup_str(json_object_get(turn, "role"));
                ex->contents[i] = dup_str(json_object_get(turn, "content"));
            }
        }
        break;
    }
    default:
        snprintf(err, errn, "no \"prompt\"/\"response\", \"text\" or \"messages\" field");
        goto done;
    }
    if (parse_images(o, kind, dir, ex, err, errn)) goto done;
    if (gt_media_parse(o, "audio", ex ? &ex->audio : NULL, ex ? &ex->n_audio : NULL, err, errn))
        goto done;
    if (ex) ex->kind = kind;
    rc = 0;
done:
    json_decref(o);
    return rc;
}

int gt_dataset_open(const char *path, gt_ds_format format, bool skip_bad, gt_dataset *ds,
                    char *err, size_t errn) {
    memset(ds, 0, sizeof *ds);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    ds->format = format;
    ds->world = 1;
    ds->f = fopen(path, "rb");
    if (!ds->f) return gt_err_open(err, errn, path, errno);
    char *line = NULL, msg[768], dir[512];
    dir_of(path, dir, sizeof dir);
    size_t cap = 0, room = 0;
    ssize_t len;
    int64_t lineno = 0;
    uint64_t off = 0;
    while ((len = getline(&line, &cap, ds->f)) >= 0) {
        lineno++;
        uint64_t here = off;
        off += (uint64_t)len;
        size_t l = (size_t)len;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) l--;
        size_t s = 0;
        while (s < l && (line[s] == ' ' || line[s] == '\t')) s++;
        if (s == l) continue; /* blank lines are allowed */
        if (parse_line(line, l, format, dir, NULL, msg, sizeof msg) != 0) {
            if (skip_bad) {
                ds->skipped++;
                continue;
            }
            snprintf(err, errn, "%s:%lld: %s", path, (long long)lineno, msg);
            free(line);
            gt_dataset_close(ds);
            return -1;
        }
        if ((size_t)ds->n == room) {
            room = room ? 2 * room : 1024;
            uint64_t *o2 = realloc(ds->offsets, room * sizeof *o2);
            int64_t *l2 = o2 ? realloc(ds->lines, room * sizeof *l2) : NULL;
            if (o2) ds->offsets = o2;
            if (!o2 || !l2) {
                free(line);
                gt_dataset_close(ds);
                return snprintf(err, errn, "%s: out of memory indexing line %lld", path, (long long)lineno), -1;
            }
            ds->lines = l2;
        }
        ds->offsets[ds->n] = here;
        ds->lines[ds->n] = lineno;
        ds->n++;
    }
    free(line);
    if (ds->n == 0) {
        snprintf(err, errn, "%s: no usable records%s", path, ds->skipped ? " (all lines were bad)" : "");
        gt_dataset_close(ds);
        return -1;
    }
    return gt_dataset_set_order(ds, 0, false, 0, 1, err, errn);
}

void gt_dataset_close(gt_dataset *ds) {
    if (ds->f) fclose(ds->f);
    free(ds->offsets);
    free(ds->lines);
    free(ds->order);
    memset(ds, 0, sizeof *ds);
}

int gt_dataset_read(gt_dataset *ds, int64_t i, gt_example *ex, char *err, size_t errn) {
    memset(ex, 0, sizeof *ex);
    if (i < 0 || i >= ds->n) return snprintf(err, errn, "%s: record %lld out of range", ds->path, (long long)i), -1;
    if (fseek(ds->f, (long)ds->offsets[i], SEEK_SET) != 0)
        return snprintf(err, errn, "%s: seek failed", ds->path), -1;
    char *line = NULL, msg[768], dir[512];
    dir_of(ds->path, dir, sizeof dir);
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, ds->f);
    int rc = 0;
    if (len < 0 || parse_line(line, (size_t)len, ds->format, dir, ex, msg, sizeof msg) != 0) {
        /* the file changed under us since it was indexed */
        snprintf(err, errn, "%s:%lld: %s", ds->path, (long long)ds->lines[i],
                 len < 0 ? "unexpected end of file (changed since opening?)" : msg);
        gt_example_free(ex);
        rc = -1;
    } else if (gt_media_resolve(ds->path, ex->audio, ex->n_audio, err, errn)) {
        gt_example_free(ex);
        rc = -1;
    } else {
        ex->line = ds->lines[i];
    }
    free(line);
    return rc;
}

static void build_order(gt_dataset *ds) {
    for (int64_t i = 0; i < ds->n; i++) ds->order[i] = i;
    if (!ds->shuffle) return;
    uint64_t s = ds->seed ^ (0xA0761D6478BD642Full * (uint64_t)(ds->epoch + 1));
    for (int64_t i = ds->n - 1; i > 0; i--) {
        int64_t j = (int64_t)(gt_rng_next(&s) % (uint64_t)(i + 1));
        int64_t t = ds->order[i];
        ds->order[i] = ds->order[j];
        ds->order[j] = t;
    }
}

int gt_dataset_set_order(gt_dataset *ds, uint64_t seed, bool shuffle, int rank, int world,
                         char *err, size_t errn) {
    if (world < 1 || rank < 0 || rank >= world)
        return snprintf(err, errn, "dataset: rank %d of world %d is invalid", rank, world), -1;
    ds->seed = seed;
    ds->shuffle = shuffle;
    ds->rank = rank;
    ds->world = world;
    free(ds->order);
    ds->order = malloc((size_t)ds->n * sizeof *ds->order);
    if (!ds->order) return snprintf(err, errn, "%s: out of memory", ds->path), -1;
    return gt_dataset_seek(ds, 0, 0, err, errn);
}

int gt_dataset_seek(gt_dataset *ds, int64_t epoch, int64_t next, char *err, size_t errn) {
    if (epoch < 0 || next < 0 || next > ds->n)
        return snprintf(err, errn, "%s: cannot resume at epoch %lld, index %lld (%lld records)",
                        ds->path, (long long)epoch, (long long)next, (long long)ds->n), -1;
    ds->epoch = epoch;
    ds->next = next;
    build_order(ds);
    return 0;
}

/* Global index of this rank's next record, moving to a new epoch when this one is used up. */
static int64_t take_index(gt_dataset *ds) {
    if (ds->next + ds->rank >= ds->n) { /* each epoch restarts the round-robin at rank 0 */
        ds->epoch++;
        ds->next = 0;
        build_order(ds);
    }
    int64_t idx = ds->order[ds->next + ds->rank];
    ds->next += ds->world;
    return idx;
}

int gt_dataset_next(gt_dataset *ds, gt_example *ex, int64_t *epoch_out, char *err, size_t errn) {
    if (ds->rank >= ds->n)
        return snprintf(err, errn, "%s: %lld records cannot feed rank %d", ds->path, (long long)ds->n, ds->rank), -1;
    int64_t idx = take_index(ds);
    if (epoch_out) *epoch_out = ds->epoch;
    return gt_dataset_read(ds, idx, ex, err, errn);
}

void gt_dataset_advance(gt_dataset *ds) {
    if (ds->rank < ds->n) take_index(ds);
}
