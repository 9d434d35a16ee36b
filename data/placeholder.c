/* placeholder.c: media placeholder expansion (contract in placeholder.h). */
#include "data/placeholder.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

int gt_placeholder_expand(const char *prompt, const char *ph, const char *start, const char *end,
                          int64_t n_tokens, const char *what, const char *unit, char **out,
                          char *err, size_t errn) {
    *out = NULL;
    if (n_tokens < 1 || n_tokens > (1 << 20))
        return gt_errf(err, errn, "%s: %lld soft tokens per %s (1..%d)", what,
                       (long long)n_tokens, unit, 1 << 20);
    size_t lp = strlen(ph), ls = strlen(start), le = strlen(end), hits = 0;
    for (const char *p = strstr(prompt, ph); p; p = strstr(p + lp, ph)) hits++;
    size_t rep = ls + (size_t)n_tokens * lp + le, len = strlen(prompt) + hits * (rep - lp);
    char *o = malloc(len + 1), *w = o;
    if (!o) return gt_errf(err, errn, "%s: out of memory", what);
    const char *p = prompt;
    for (const char *h = strstr(p, ph); h; h = strstr(p, ph)) {
        memcpy(w, p, (size_t)(h - p));
        w += h - p;
        memcpy(w, start, ls);
        w += ls;
        for (int64_t i = 0; i < n_tokens; i++, w += lp) memcpy(w, ph, lp);
        memcpy(w, end, le);
        w += le;
        p = h + lp;
    }
    strcpy(w, p);
    *out = o;
    return 0;
}
