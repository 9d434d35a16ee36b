#include "tests/score_json.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double gt_test_score_diff(const char *out, const int32_t *ids, int64_t n, const gt_tensor *z, int64_t V, double *mx) {
    const char *p = strstr(out, "{\"tokens\":[");
    ck_assert_msg(p, "no {\"tokens\":[ in %.2000s", out);
    p += 11;
    for (int64_t i = 0; i < n; i++) {
        char *e;
        long id = strtol(p, &e, 10);
        ck_assert_msg(id == ids[i], "token %lld: CLI %ld, expected %d", (long long)i, id, ids[i]);
        p = e + 1;
    }
    ck_assert_msg(p[-1] == ']', "more tokens than the %lld expected", (long long)n);
    p = strstr(p, "\"logits\":[");
    ck_assert_msg(p, "no \"logits\":[ after the tokens");
    p += 10;
    double worst = 0, top = 0;
    for (int64_t t = 0; t < n; t++) {
        p = strchr(p, '[') + 1;
        for (int64_t v = 0; v < V; v++) {
            char *e;
            worst = fmax(worst, fabs(strtod(p, &e) - z->data[t * V + v]));
            top = fmax(top, fabs(z->data[t * V + v]));
            p = e + 1;
        }
    }
    if (mx) *mx = top;
    return worst;
}
