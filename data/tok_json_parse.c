/* tok_json_parse.c: reading tokenizer.json's JSON fast: a parallel parse of slices, and an arena
 * for jansson's allocations scoped to that parse.
 *
 * Contract: tok_json_parse gives the same jansson values that json_loadb(JSON_REJECT_DUPLICATES |
 * JSON_ALLOW_NUL) would (the same error message when the text is not valid JSON); model.vocab and
 * model.merges of a big file may come as several containers (hf_parts), to be read in file
 * order. The values live until tok_json_doc_free. Only tok_json.c calls this.
 *
 * The arena. Parsing the real tokenizer.json builds ~2 million jansson values (4-5x the file in
 * memory); with the system allocator their malloc and the json_decref walk cost ~30% of the load
 * (measured 560 -> 725 ms on the 34 MB file; ~25% even with the frees spread over the threads).
 * jansson's only allocator hook, json_set_alloc_funcs, is process-wide, so its use is scoped:
 *   - in time: the hooks are installed when the first parse starts and the functions that were
 *     there before are put back when the last one ends (a count under a mutex); between loads
 *     every other jansson user (config, metrics writer) runs on its own allocator untouched;
 *   - by thread: while installed, the hooks hand every allocation to those previous functions
 *     except on a thread that is inside one of this module's json_loadb calls; those come from
 *     that parse's arena, never escape it (the tokenizer copies what it keeps), and are dropped
 *     whole by tok_json_doc_free instead of walked by json_decref;
 *   - if someone else replaces the hooks meanwhile, parses that start after see it and go
 *     without the arena, and the last one leaves the other hooks in place.
 * Under AddressSanitizer the arena runs too, with every block fenced by poisoned bytes and
 * poisoned again when jansson frees it, so that overruns and use after free still show. */
#include <jansson.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "data/tok_internal.h"
#include "util/err.h"

#if defined(__SANITIZE_ADDRESS__)
#define TOK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TOK_ASAN 1
#endif
#endif
#ifdef TOK_ASAN
#include <sanitizer/asan_interface.h>
enum { BLOCK_HEAD = 16, BLOCK_TAIL = 16 }; /* poisoned: the head holds the block's size */
#else
enum { BLOCK_HEAD = 0, BLOCK_TAIL = 0 };
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

/* ================================================================ arena */

typedef struct arena_chunk { struct arena_chunk *next; size_t used, cap; max_align_t data[]; } arena_chunk;
typedef struct { arena_chunk *head; size_t next_cap; } json_arena;

static _Thread_local json_arena *tl_arena;   /* set only around this module's json_loadb */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static int hook_users;                       /* parses in progress with the hooks installed */
static json_malloc_t base_malloc;            /* the functions installed before */
static json_free_t base_free;

static void *hook_malloc(size_t n) {
    json_arena *a = tl_arena;
    if (!a) return base_malloc(n);
    if (n > SIZE_MAX / 4) return NULL;
    size_t need = BLOCK_HEAD + ((n + 15) & ~(size_t)15) + BLOCK_TAIL;
    arena_chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = a->next_cap > need ? a->next_cap : need;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head, c->used = 0, c->cap = cap;
        ASAN_POISON_MEMORY_REGION(c->data, cap);
        a->head = c;
        a->next_cap = cap * 2;
    }
    char *blk = (char *)c->data + c->used, *p = blk + BLOCK_HEAD;
    c->used += need;
#ifdef TOK_ASAN
    ASAN_UNPOISON_MEMORY_REGION(blk, BLOCK_HEAD);
    memcpy(blk, &n, sizeof n);
    ASAN_POISON_MEMORY_REGION(blk, BLOCK_HEAD);
#endif
    ASAN_UNPOISON_MEMORY_REGION(p, n);
    return p;
}

static void hook_free(void *p) {
    json_arena *a = tl_arena;
    for (arena_chunk *c = a ? a->head : NULL; c; c = c->next)
        if ((char *)p >= (char *)c->data && (char *)p < (char *)c->data + c->cap) {
#ifdef TOK_ASAN
            size_t n;
            char *blk = (char *)p - BLOCK_HEAD;
            ASAN_UNPOISON_MEMORY_REGION(blk, BLOCK_HEAD);
            memcpy(&n, blk, sizeof n);
            ASAN_POISON_MEMORY_REGION(blk, BLOCK_HEAD);
            ASAN_POISON_MEMORY_REGION(p, n);
#endif
            return; /* the arena's memory goes with the arena */
        }
    base_free(p);
}

/* Installs the hooks for the first parse in progress. False: parse without the arena (someone
 * else's hooks were installed over ours meanwhile). */
static bool hook_enter(void) {
    pthread_mutex_lock(&hook_mu);
    json_malloc_t cur;
    json_free_t cur_free;
    json_get_alloc_funcs(&cur, &cur_free);
    bool ok = cur == hook_malloc;
    if (hook_users == 0 && !ok) {
        base_malloc = cur, base_free = cur_free;
        json_set_alloc_funcs(hook_malloc, hook_free);
        ok = true;
    }
    hook_users += ok;
    pthread_mutex_unlock(&hook_mu);
    return ok;
}

/* After the last parse's arena is dropped: the previous functions back, unless replaced. */
static void hook_leave(void) {
    pthread_mutex_lock(&hook_mu);
    if (--hook_users == 0) {
        json_malloc_t cur;
        json_get_alloc_funcs(&cur, NULL);
        if (cur == hook_malloc) json_set_alloc_funcs(base_malloc, base_free);
    }
    pthread_mutex_unlock(&hook_mu);
}

static void arena_drop(json_arena *a) {
    while (a->head) {
        arena_chunk *c = a->head;
        a->head = c->next;
        ASAN_UNPOISON_MEMORY_REGION(c->data, c->cap);
        free(c);
    }
}

/* ================================================================ parallel parse
 * jansson parses every byte; this only finds where model.vocab and model.merges start and end
 * and where their elements are separated (strings and brackets, nothing else), so that
 * independent slices can be parsed at once: a skeleton (the file with both emptied) and each
 * container cut into k slices. Anything unexpected gives up, and the file is parsed whole. */

typedef struct { size_t start, end; } span;

static size_t skip_ws(const char *b, size_t n, size_t i) {
    while (i < n && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) i++;
    return i;
}

/* End of the string at b[i] == '"', or 0. */
static inline size_t skip_string(const char *b, size_t n, size_t i) {
    for (i++; i < n; i++) {
        if (b[i] == '\\') i++;
        else if (b[i] == '"') return i + 1;
    }
    return 0;
}

/* End of the value at b[i], or 0. */
static size_t skip_value(const char *b, size_t n, size_t i) {
    if (i >= n) return 0;
    if (b[i] == '"') return skip_string(b, n, i);
    if (b[i] == '{' || b[i] == '[') {
        int depth = 0;
        for (; i < n; i++) {
            char c = b[i];
            if (c == '"') {
                size_t e = skip_string(b, n, i);
                if (!e) return 0;
                i = e - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                return i + 1;
            }
        }
        return 0;
    }
    size_t s = i;
    while (i < n && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' &&
           b[i] != '\r' && b[i] != '\t')
        i++;
    return i > s ? i : 0;
}

/* Start of the value of member `key` (spelled without escapes) of the object at b[i] == '{',
 * or 0. The value itself is not scanned. */
static size_t find_member(const char *b, size_t n, size_t i, const char *key) {
    size_t kl = strlen(key);
    if (i >= n || b[i] != '{') return 0;
    for (i = skip_ws(b, n, i + 1); i < n && b[i] == '"';) {
        size_t ke = skip_string(b, n, i);
        if (!ke) return 0;
        bool hit = ke - i - 2 == kl && !memcmp(b + i + 1, key, kl);
        i = skip_ws(b, n, ke);
        if (i >= n || b[i] != ':') return 0;
        i = skip_ws(b, n, i + 1);
        if (hit) return i;
        size_t ve = skip_value(b, n, i);
        if (!ve) return 0;
        i = skip_ws(b, n, ve);
        if (i >= n || b[i] != ',') return 0;
        i = skip_ws(b, n, i + 1);
    }
    return 0;
}

typedef struct {
    const char *text;
    size_t len;
    char *own;        /* text, when it is a copy */
    json_t *val;
    json_arena arena;
    json_error_t je;
} parse_job;

static bool job_copy(parse_job *j, char open, const char *body, size_t n, char close) {
    j->own = malloc(n + 2);
    if (!j->own) return false;
    j->own[0] = open;
    memcpy(j->own + 1, body, n);
    j->own[n + 1] = close;
    j->text = j->own, j->len = n + 2;
    return true;
}

/* Cuts the container starting at b[start] into at most k jobs at top-level commas, aiming at
 * slices of about `hint` bytes; returns the count and sets *end, or returns 0 (nothing left
 * allocated) when the text does not look as expected. */
static int cut_container(const char *b, size_t n, size_t start, size_t hint, int k, parse_job *jobs,
                         size_t *end) {
    char open = b[start], close = open == '{' ? '}' : ']';
    bool obj = open == '{';
    size_t i = skip_ws(b, n, start + 1), first = i;
    int made = 0;
    if (i < n && b[i] == close) goto fail; /* empty: nothing to slice */
    while (i < n) {
        if (obj) {
            size_t ke = b[i] == '"' ? skip_string(b, n, i) : 0;
            if (!ke) break;
            i = skip_ws(b, n, ke);
            if (i >= n || b[i] != ':') break;
            i = skip_ws(b, n, i + 1);
        }
        size_t ve = skip_value(b, n, i);
        if (!ve) break;
        i = skip_ws(b, n, ve);
        if (i >= n) break;
        bool last = b[i] == close;
        if (!last && b[i] != ',') break;
        if (last || (made < k - 1 && i - first >= hint)) {
            if (!job_copy(&jobs[made], open, b + first, i - first, close)) break;
            made++;
            if (last) {
                *end = i + 1;
                return made;
            }
            first = i + 1;
        }
        i = skip_ws(b, n, i + 1);
    }
fail:
    for (int j = 0; j < made; j++) {
        free(jobs[j].own);
        jobs[j] = (parse_job){0};
    }
    return 0;
}

static void jobs_free(parse_job *jobs, int n, bool arena) {
    for (int i = 0; i < n; i++) {
        if (arena) arena_drop(&jobs[i].arena);
        else if (jobs[i].val) json_decref(jobs[i].val);
        free(jobs[i].own);
        jobs[i] = (parse_job){0};
    }
}

/* Parses jobs[order[0..n)] in parallel, in that order of start (order NULL: 0..n-1). */
static void jobs_run(parse_job *jobs, int n, const int *order, bool arena) {
    json_decref(json_object()); /* jansson seeds its hash on the first object: do it here, once */
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (int r = 0; r < n; r++) {
        int i = order ? order[r] : r;
        if (arena) {
            jobs[i].arena.next_cap = 5 * jobs[i].len + 4096;
            tl_arena = &jobs[i].arena;
        }
        jobs[i].val =
            json_loadb(jobs[i].text, jobs[i].len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jobs[i].je);
        tl_arena = NULL;
    }
}

/* Plans and runs the sliced parse; returns the job count (root first) or 0 to parse whole. */
static int parse_sliced(const char *b, size_t n, int k, bool arena, parse_job *jobs, hf_parts *parts) {
    size_t ms = find_member(b, n, skip_ws(b, n, 0), "model");
    if (k < 2 || !ms) return 0;
    /* One pass over model's members, slicing vocab and merges on the way. */
    span sp[2] = {{0, 0}, {0, 0}};
    int cnt[2] = {0, 0}, total = 1;
    size_t i = skip_ws(b, n, ms + 1);
    while (i < n && b[i] == '"') {
        size_t ke = skip_string(b, n, i);
        if (!ke) break;
        int which = ke - i == 7 && !memcmp(b + i, "\"vocab\"", 7)    ? 0
                    : ke - i == 8 && !memcmp(b + i, "\"merges\"", 8) ? 1
                                                                     : -1;
        i = skip_ws(b, n, ke);
        if (i >= n || b[i] != ':') break;
        i = skip_ws(b, n, i + 1);
        size_t ve;
        if (which >= 0 && !cnt[which] && i < n && b[i] == (which ? '[' : '{')) {
            /* vocab parses about 3x slower per byte than merges: slice it finer */
            size_t hint = which ? n / (size_t)(4 * k) : n / (size_t)(8 * k);
            cnt[which] = cut_container(b, n, i, hint, MAX_PARTS, jobs + total, &ve);
            if (!cnt[which]) break;
            sp[which] = (span){i, ve};
            total += cnt[which];
        } else if (!(ve = skip_value(b, n, i))) {
            break;
        }
        i = skip_ws(b, n, ve);
        if (i < n && b[i] == ',') i = skip_ws(b, n, i + 1);
        else break;
    }
    if (!cnt[0] || !cnt[1]) {
        jobs_free(jobs, total, false);
        return 0;
    }
    /* Skeleton: both containers emptied, in file order. */
    const span *lo = sp[0].start < sp[1].start ? &sp[0] : &sp[1], *hi = lo == &sp[0] ? &sp[1] : &sp[0];
    size_t sk = n - (lo->end - lo->start) - (hi->end - hi->start) + 4;
    char *s = malloc(sk);
    if (!s) {
        jobs_free(jobs, total, false);
        return 0;
    }
    size_t o = 0;
    memcpy(s + o, b, lo->start), o += lo->start;
    s[o++] = b[lo->start], s[o++] = b[lo->end - 1];
    memcpy(s + o, b + lo->end, hi->start - lo->end), o += hi->start - lo->end;
    s[o++] = b[hi->start], s[o++] = b[hi->end - 1];
    memcpy(s + o, b + hi->end, n - hi->end), o += n - hi->end;
    jobs[0].own = s, jobs[0].text = s, jobs[0].len = o;
    /* vocab slices first: an object costs jansson far more per byte than the merges array */
    int order[1 + 2 * MAX_PARTS], no = 0;
    int v1 = sp[0].start < sp[1].start ? 1 : 1 + cnt[1], m1 = sp[0].start < sp[1].start ? 1 + cnt[0] : 1;
    for (int j = 0; j < cnt[0]; j++) order[no++] = v1 + j;
    for (int j = 0; j < cnt[1]; j++) order[no++] = m1 + j;
    order[no++] = 0;
    jobs_run(jobs, total, order, arena);
    bool ok = true;
    for (int j = 0; j < total; j++) ok &= jobs[j].val != NULL;
    json_t *m = ok ? json_object_get(jobs[0].val, "model") : NULL;
    json_t *v0 = json_object_get(m, "vocab"), *m0 = json_object_get(m, "merges");
    if (!ok || !json_is_object(v0) || json_object_size(v0) || !json_is_array(m0) || json_array_size(m0)) {
        jobs_free(jobs, total, arena);
        return 0;
    }
    parts->nv = cnt[0], parts->nm = cnt[1];
    for (int j = 0; j < cnt[0]; j++) parts->vocab[j] = jobs[v1 + j].val;
    for (int j = 0; j < cnt[1]; j++) parts->merges[j] = jobs[m1 + j].val;
    return total;
}

struct tok_json_doc {
    parse_job jobs[1 + 2 * MAX_PARTS];
    int njobs;
    bool arena;
};

int tok_json_parse(const char *buf, size_t n, const char *src, tok_json_doc **docp, json_t **root,
                   hf_parts *parts, char *err, size_t errn) {
    *root = NULL;
    memset(parts, 0, sizeof *parts);
    tok_json_doc *d = *docp = calloc(1, sizeof *d);
    if (!d) return gt_errf(err, errn, "%s: out of memory", src);
    d->arena = hook_enter();
    int k = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) k = omp_get_max_threads();
#endif
    if (k > MAX_PARTS) k = MAX_PARTS;
    /* Slicing pays off only for big files with threads to spare. */
    d->njobs = n > (4 << 20) ? parse_sliced(buf, n, k, d->arena, d->jobs, parts) : 0;
    if (!d->njobs) {
        d->jobs[0].text = buf, d->jobs[0].len = n;
        jobs_run(d->jobs, 1, NULL, d->arena);
        d->njobs = 1;
    }
    parse_job *j0 = &d->jobs[0];
    if (!j0->val)
        return gt_errf(err, errn, "%s:%d:%d: invalid JSON: %s", src, j0->je.line, j0->je.column, gt_err_printable(j0->je.text));
    if (d->njobs == 1) {
        json_t *model = json_object_get(j0->val, "model");
        parts->vocab[0] = json_object_get(model, "vocab"), parts->merges[0] = json_object_get(model, "merges");
        parts->nv = parts->vocab[0] != NULL, parts->nm = parts->merges[0] != NULL;
    }
    *root = j0->val;
    return 0;
}

void tok_json_doc_free(tok_json_doc *d) {
    if (!d) return;
    jobs_free(d->jobs, d->njobs, d->arena); /* with the arena: no json_decref walk, the memory goes whole */
    if (d->arena) hook_leave();
    free(d);
}
