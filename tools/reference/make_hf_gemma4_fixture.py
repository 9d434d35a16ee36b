#!/usr/bin/env python3
"""Hugging Face Gemma 4 fixture, an independent reference for the Gemma 4 forward: a tiny
transformers Gemma4ForCausalLM (fp32, eager attention) shaped like tests/fixtures/gemma4.h5's
KerasHub model, random weights (seeded), saved with save_pretrained to tests/fixtures/hf/gemma4/
(config.json + model.safetensors), and HF's logits on the KerasHub fixture's inputs in
tests/fixtures/hf/gemma4.ref.h5 (/token_ids, /padding_mask, /logits [B, T, V]).

Differences from the KerasHub fixture: 9 layers (transformers makes the last layer full
attention), no attention-logit soft-cap (transformers' Gemma 4 has none). Kept: global head dim
16, one global kv head with k = v, proportional RoPE 0.25 on base 1e6 with factor 2, window 3,
pattern 3, 3 kv-shared layers (6, 7 <- 4; 8 <- 5), double-wide MLP, PLE 4, layer scalars, final
soft-cap 8.

Run: python3 tools/reference/make_hf_gemma4_fixture.py  (transformers 5.23, torch, h5py)
"""
import os

import h5py
import numpy as np
import torch
from transformers import Gemma4ForCausalLM, Gemma4TextConfig

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")


def main(seed=4104):
    src = h5py.File(os.path.join(ROOT, "gemma4.h5"))
    a = src["config"].attrs
    # 9 layers: transformers makes the last layer full attention, so the KerasHub fixture's 8
    # layers (pattern 3: the last one local) cannot be expressed; weights are drawn afresh.
    L, P, pat = 9, int(a["hidden_size_per_layer_input"]), int(a["sliding_window_pattern"])
    types = ["full_attention" if i % pat == pat - 1 else "sliding_attention" for i in range(L)]
    cfg = Gemma4TextConfig(
        vocab_size=int(a["vocabulary_size"]), hidden_size=int(a["hidden_dim"]),
        intermediate_size=int(a["intermediate_dim"]), num_hidden_layers=L,
        num_attention_heads=int(a["num_query_heads"]), num_key_value_heads=int(a["num_key_value_heads"]),
        head_dim=int(a["head_dim"]), global_head_dim=int(a["global_head_dim"]),
        num_global_key_value_heads=int(a["num_global_key_value_heads"]), attention_k_eq_v=True,
        sliding_window=int(a["sliding_window_size"]), layer_types=types,
        final_logit_softcapping=float(a["final_logit_soft_cap"]), hidden_size_per_layer_input=P,
        vocab_size_per_layer_input=int(a["vocab_size_per_layer_input"]),
        num_kv_shared_layers=int(a["num_kv_shared_layers"]), use_double_wide_mlp=True,
        rope_parameters={
            "full_attention": {"rope_type": "proportional", "rope_theta": 1e6,
                               "partial_rotary_factor": float(a["global_rope_partial_rotary_factor"]),
                               "factor": float(a["global_rope_scaling_factor"])},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
        tie_word_embeddings=True, attn_implementation="eager")
    torch.manual_seed(0)
    model = Gemma4ForCausalLM(cfg).float().eval()
    rng = np.random.default_rng(seed)
    state = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        if k.endswith("layer_scalar"):
            val = rng.uniform(0.5, 1.5, v.shape)
        elif "norm" in k:  # Gemma 4 norms multiply by w itself
            val = 1.0 + rng.normal(0, 0.3, v.shape)
        else:
            val = rng.normal(0, 0.5, v.shape)
        state[k] = torch.from_numpy(val.astype("float32"))
    model.load_state_dict(state, strict=False)
    ids = np.asarray(src["inputs/token_ids"])
    mask = np.asarray(src["inputs/padding_mask"])
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()).logits
    logits = logits.numpy().astype("float32")
    out = os.path.join(ROOT, "hf", "gemma4")
    model.save_pretrained(out, safe_serialization=True)
    with h5py.File(os.path.join(ROOT, "hf", "gemma4.ref.h5"), "w") as f:
        f["token_ids"] = ids
        f["padding_mask"] = mask
        f["logits"] = logits
    print(f"{out}: max|logit| {np.abs(logits).max():.3f}; files {sorted(os.listdir(out))}")


if __name__ == "__main__":
    main()
