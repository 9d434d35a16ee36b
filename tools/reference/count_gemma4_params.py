#!/usr/bin/env python3
"""KerasHub parameter counts of the Gemma 4 text decoders, dense and MoE (the numbers checked by
tests/test_gemma_config.c).

KerasHub's gemma4_presets.py `params` metadata is rounded (5.1B, 7.9B, 31B) and counts the
vision and audio encoders too, so this builds the text-only Gemma4Backbone of each preset with
the hyperparameters of HF convert_gemma4_weights.py _VARIANTS (as KerasHub's convert_gemma4.py
maps them) and prints backbone.count_params(). The variables are allocated (bf16): E2B needs
about 10 GB, E4B 15 GB. The 31B (60 layers = 10 repeats of 5 local + 1 global, no kv sharing, no
PLE, tied embedding) would need over 62 GB, so it is counted from one 6-layer period with a
256-row vocabulary: n = V D + D + 10 (n_small - 256 D - D). The 26B-A4B (30 layers = 5 periods,
MoE of 128 experts x 704, top 8, in every layer) is counted the same way (5 periods).

Run: KERAS_BACKEND=jax python3 tools/reference/count_gemma4_params.py [gemma4_2b gemma4_4b gemma4_31b]
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

LOCAL, GLOBAL = "sliding_attention", "full_attention"
PRESETS = {
    "gemma4_2b": dict(num_layers=35, hidden_dim=1536, intermediate_dim=6144, num_query_heads=8,
                      num_key_value_heads=1, layer_types=([LOCAL] * 4 + [GLOBAL]) * 7,
                      sliding_window_size=512, sliding_window_pattern=5, num_kv_shared_layers=20,
                      use_double_wide_mlp=True, hidden_size_per_layer_input=256,
                      vocab_size_per_layer_input=262144),
    "gemma4_4b": dict(num_layers=42, hidden_dim=2560, intermediate_dim=10240, num_query_heads=8,
                      num_key_value_heads=2, layer_types=([LOCAL] * 5 + [GLOBAL]) * 7,
                      sliding_window_size=512, num_kv_shared_layers=18,
                      hidden_size_per_layer_input=256, vocab_size_per_layer_input=262144),
    "gemma4_31b": dict(num_layers=60, hidden_dim=5376, intermediate_dim=21504, num_query_heads=32,
                       num_key_value_heads=16, num_global_key_value_heads=4,
                       layer_types=([LOCAL] * 5 + [GLOBAL]) * 10, sliding_window_size=1024),
    "gemma4_26b_a4b": dict(num_layers=30, hidden_dim=2816, intermediate_dim=2112, num_query_heads=16,
                           num_key_value_heads=8, num_global_key_value_heads=2,
                           layer_types=([LOCAL] * 5 + [GLOBAL]) * 5, sliding_window_size=1024,
                           enable_moe_block=True, num_experts=128, expert_intermediate_dim=704,
                           num_experts_per_token=8),
}

V = 262144


def count(kw, vocab=V):
    bb = keras_hub.models.Gemma4Backbone(
        vocabulary_size=vocab, image_size=None, head_dim=256, global_head_dim=512,
        final_logit_soft_cap=30.0, global_rope_partial_rotary_factor=0.25, dtype="bfloat16", **kw)
    return sum(int(np.prod(v.shape)) for v in bb.weights)


for name in sys.argv[1:] or list(PRESETS):
    kw = dict(PRESETS[name])
    if name in ("gemma4_31b", "gemma4_26b_a4b"):
        reps, d = kw["num_layers"] // 6, kw["hidden_dim"]
        kw.update(num_layers=6, layer_types=kw["layer_types"][:6])
        layers = count(kw, vocab=256) - 256 * d - d
        print(name, V * d + d + reps * layers, flush=True)
    else:
        print(name, count(kw), flush=True)
