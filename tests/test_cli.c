/* The gemmatrain binary: --help, --version, unknown commands (run as a subprocess). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/cli_run.h"
#include "tests/check_main.h"

START_TEST(help_and_version) {
    char out[4096];
    ck_assert_int_eq(gt_test_run("--help", out, sizeof out), 0);
    ck_assert_msg(strstr(out, "usage: gemmatrain"), "%s", out);
    ck_assert_int_eq(gt_test_run("--version", out, sizeof out), 0);
    ck_assert_msg(strncmp(out, "gemmatrain 0.", 13) == 0, "%s", out);
}
END_TEST

START_TEST(unknown_command_fails_with_a_message) {
    char out[4096];
    ck_assert_int_eq(gt_test_run("frobnicate", out, sizeof out), 2);
    ck_assert_msg(strstr(out, "unknown command 'frobnicate'"), "%s", out);
    ck_assert_int_eq(gt_test_run("", out, sizeof out), 2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("basic");
    tcase_add_test(tc, help_and_version);
    tcase_add_test(tc, unknown_command_fails_with_a_message);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
