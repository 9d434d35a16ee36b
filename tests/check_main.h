/* check_main.h: the end of every test program's main: run the Check suite, report, and turn
 * its failures into the exit status. Inline so that the f64 tests, which link no test helpers,
 * use it too. */
#ifndef GT_TESTS_CHECK_MAIN_H
#define GT_TESTS_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

/* Runs s (CK_NORMAL output) and frees it; EXIT_FAILURE when any test failed. */
static inline int gt_test_suite_main(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
