/* Gemma 4 from a llama.cpp GGUF (architecture gemma4): tests/fixtures/gguf/gemma4_tiny.gguf, a tiny
 * transformers Gemma4ForCausalLM written with llama.cpp's converter's names and keys by
 * tools/reference/make_gguf_gemma4_fixture.py (llama.cpp itself reads it), gives transformers'
 * logits (gemma4_tiny_ref.h5) within 1e-4 x max|logit|, with every Gemma 4 feature read back. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "logits.h"
#include "models/io/gemma_gguf.h"
#include "tests/check_main.h"

#define FIX "tests/fixtures/gguf/gemma4_tiny"

START_TEST(config_from_metadata) {
    char err[512];
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open(FIX ".gguf", &g, err, sizeof err) == 0, "%s", err);
    gt_gemma_config c;
    ck_assert_msg(gt_gemma_config_from_gguf(g, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.generation, 4);
    ck_assert_int_eq(c.vocab_size, 1024);
    ck_assert_int_eq(c.num_layers, 9);
    ck_assert_int_eq(c.hidden_dim, 32);
    ck_assert_int_eq(c.intermediate_dim, 24);
    ck_assert(c.double_wide_mlp);
    ck_assert_int_eq(c.num_query_heads, 4);
    ck_assert_int_eq(c.num_kv_heads, 2);
    ck_assert_int_eq(c.num_global_kv_heads, 1); /* k = v: no attn_v on global layers */
    ck_assert_int_eq(c.head_dim, 8);
    ck_assert_int_eq(c.global_head_dim, 16);
    ck_assert_int_eq(c.sliding_pattern, 3);
    ck_assert_int_eq(c.sliding_window, 3);
    ck_assert_int_eq(c.num_kv_shared_layers, 3);
    ck_assert_int_eq(c.per_layer_input_dim, 4);
    ck_assert(c.rope_global_partial == 0.25);
    ck_assert(c.rope_global_base == 1e6 && c.rope_local_base == 1e4);
    ck_assert(c.final_logit_softcap == 8.0);
    ck_assert(!c.norm_add_one);
    gt_gguf_close(g);
}
END_TEST

START_TEST(logits_match_transformers) {
    char err[512];
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open(FIX ".gguf", &g, err, sizeof err) == 0, "%s", err);
    gt_gemma *m;
    ck_assert_msg(gt_gemma_from_gguf(g, false, &m, err, sizeof err) == 0, "%s", err);
    gt_gguf_close(g);
    double rel = gt_test_compare_ref(m, FIX "_ref.h5", 1.0);
    printf("gemma4 GGUF vs transformers: max|diff| / max|logit| = %.2e\n", rel);
    ck_assert_msg(rel <= 1e-4, "relative error %.3g", rel);
    gt_gemma_free(m);
}
END_TEST

/* A layer layout the pattern cannot express is one clear error naming the key. */
START_TEST(unsupported_pattern_named) {
    char err[512];
    FILE *f = fopen(FIX ".gguf", "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert(n > 0 && n < sizeof buf);
    const char *key = "gemma4.attention.sliding_window_pattern";
    uint8_t *k = memmem(buf, n, key, strlen(key));
    ck_assert_ptr_nonnull(k);
    uint8_t *flags = k + strlen(key) + 4 + 4 + 8; /* value type, element type, count */
    ck_assert(flags[0] == 1 && flags[2] == 0);
    flags[0] = 0; /* layer 0 global: one global every layer, but layer 1 is local */
    gt_gguf *g;
    ck_assert_msg(gt_gguf_open_buffer(buf, n, "bad.gguf", &g, err, sizeof err) == 0, "%s", err);
    gt_gemma_config c;
    ck_assert_int_ne(gt_gemma_config_from_gguf(g, &c, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "gemma4.attention.sliding_window_pattern") && strstr(err, "layer 1"), "%s", err);
    gt_gguf_close(g);
}
END_TEST

/* gemmatrain generate --chat on the Gemma 4 GGUF writes the prompt in Gemma 4's turns. */
START_TEST(generate_chat_uses_gemma4_turns) {
    char cmd[512], out[4096];
    snprintf(cmd, sizeof cmd, "%s generate --model " FIX ".gguf --chat --max-new-tokens 3 'Hi' 2>&1",
             getenv("GT_BIN") ? getenv("GT_BIN") : "build/gemmatrain");
    FILE *p = popen(cmd, "r");
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", out);
    ck_assert_msg(strstr(out, "Hi<turn|>\n<|turn>model\n"), "%s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gguf_gemma4");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, config_from_metadata);
    tcase_add_test(tc, logits_match_transformers);
    tcase_add_test(tc, unsupported_pattern_named);
    tcase_add_test(tc, generate_chat_uses_gemma4_turns);
    suite_add_tcase(s, tc);
    return gt_test_suite_main(s);
}
