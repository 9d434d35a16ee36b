/* The init's normal draws (autograd/normal.h): every value against the header's formula in double
 * precision with libm, any split of a range (and any thread count) equal to the whole, and the
 * moments and tails of a standard normal. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/normal.h"
#include "tests/check_main.h"

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* value i of key's stream as normal.h defines it, in double with libm */
static double z_ref(uint64_t key, uint64_t i) {
    uint64_t k = mix(key ^ 0x6A09E667F3BCC909ull), h = mix(k + (i / 2 + 1) * 0x9E3779B97F4A7C15ull);
    uint64_t a = h >> 40, t = (h >> 8) & 0xFFFFFF;
    double u1 = (double)(a + 1) / 16777216.0, f = (double)(t & 0x3FFFFF) / 4194304.0;
    double ang = (double)(t >> 22) * M_PI / 2 + (f - 0.5) * M_PI / 2, r = sqrt(-2 * log(u1));
    return i % 2 ? r * sin(ang) : r * cos(ang);
}

enum { N = 1 << 21 };

START_TEST(values_follow_the_formula) {
    gt_real *y = malloc(sizeof(gt_real) * N);
    gt_normal_fill(42, 0, 1.0, y, N);
    double worst = 0;
    for (int64_t i = 0; i < N; i++) {
        double want = z_ref(42, (uint64_t)i), e = fabs(y[i] - want) / (1 + fabs(want));
        worst = e > worst ? e : worst;
    }
    printf("normal draws: worst |z - libm| / (1 + |z|) = %.2e over %d values\n", worst, N);
    ck_assert_msg(worst < 1e-6, "worst error %.3g", worst);
    /* std scales; a later start continues the stream */
    gt_real s[7];
    gt_normal_fill(42, 1000001, 0.02, s, 7);
    for (int k = 0; k < 7; k++) ck_assert_double_eq_tol(s[k], 0.02 * y[1000001 + k], 1e-9);
    free(y);
}
END_TEST

START_TEST(any_split_equals_the_whole) {
    enum { M = 300007 };
    gt_real *all = malloc(sizeof(gt_real) * M), *part = malloc(sizeof(gt_real) * M);
    omp_set_num_threads(1);
    gt_normal_fill(7, 5, 0.5, all, M);
    omp_set_num_threads(2);
    gt_normal_fill(7, 5, 0.5, part, M);
    ck_assert(!memcmp(all, part, sizeof(gt_real) * M));
    memset(part, 0, sizeof(gt_real) * M);
    uint64_t s = 3;
    for (int64_t at = 0; at < M;) { /* odd and even starts, pieces of 1 to ~4000 values */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int64_t len = 1 + (int64_t)((s >> 33) % 4000);
        if (at + len > M) len = M - at;
        gt_normal_fill(7, 5 + (uint64_t)at, 0.5, part + at, len);
        at += len;
    }
    ck_assert(!memcmp(all, part, sizeof(gt_real) * M));
    gt_normal_fill(8, 5, 0.5, part, M); /* a neighbouring seed: another stream */
    double c = 0;
    for (int64_t i = 0; i < M; i++) c += all[i] * part[i] * 4; /* std 0.5 each */
    ck_assert_msg(fabs(c / M) < 5 / sqrt((double)M), "seeds 7 and 8 correlate: %.4f", c / M);
    free(all), free(part);
}
END_TEST

/* moments against N(0, 1), each within 5 standard errors, and the tail mass beyond 2 and 3 */
START_TEST(moments_and_tails_are_normal) {
    gt_real *y = malloc(sizeof(gt_real) * N);
    gt_normal_fill(1, 0, 1.0, y, N);
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0, c1 = 0, big = 0;
    int64_t t2 = 0, t3 = 0;
    for (int64_t i = 0; i < N; i++) {
        double v = y[i], v2 = v * v;
        m1 += v, m2 += v2, m3 += v2 * v, m4 += v2 * v2;
        t2 += fabs(v) > 2, t3 += fabs(v) > 3;
        if (i + 1 < N) c1 += v * y[i + 1];
        big = fabs(v) > big ? fabs(v) : big;
    }
    double n = N, se = 1 / sqrt(n);
    m1 /= n, m2 /= n, m3 /= n, m4 /= n, c1 /= n - 1;
    printf("normal draws: mean %.2e var %.5f skew %.2e kurtosis %.4f lag-1 corr %.2e max %.3f\n", m1, m2, m3,
           m4, c1, big);
    ck_assert_msg(fabs(m1) < 5 * se, "mean %.3g", m1);
    ck_assert_msg(fabs(m2 - 1) < 5 * sqrt(2.0) * se, "variance %.5f", m2);
    ck_assert_msg(fabs(m3) < 5 * sqrt(15.0) * se, "third moment %.3g", m3);
    ck_assert_msg(fabs(m4 - 3) < 5 * sqrt(96.0) * se, "fourth moment %.4f", m4);
    ck_assert_msg(fabs(c1) < 5 * se, "neighbours correlate: %.3g", c1);
    double p2 = 0.0455003, p3 = 0.0026998;
    ck_assert_msg(fabs(t2 / n - p2) < 5 * sqrt(p2 * (1 - p2) / n), "P(|z| > 2) %.5f", t2 / n);
    ck_assert_msg(fabs(t3 / n - p3) < 5 * sqrt(p3 * (1 - p3) / n), "P(|z| > 3) %.6f", t3 / n);
    ck_assert(big > 4.5 && big <= 5.78);
    free(y);
}
END_TEST

int main(void) {
    Suite *s = suite_create("normal");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, values_follow_the_formula);
    tcase_add_test(tc, any_split_equals_the_whole);
    tcase_add_test(tc, moments_and_tails_are_normal);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
