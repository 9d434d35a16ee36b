#!/usr/bin/env python3
"""Hugging Face Gemma 4 MoE fixture: an implementation independent of KerasHub for the MoE block.

A tiny transformers Gemma4ForCausalLM (fp32, eager attention) with enable_moe_block (6 experts of
width 12, top 2), shaped like tests/fixtures/gemma4_moe.h5's KerasHub model except that there is
no attention soft-cap (transformers' Gemma 4 has none); random weights (seeded; router kernel
spread so the top-k choices have clear gaps), saved with save_pretrained to
tests/fixtures/hf/gemma4_moe/ (config.json + model.safetensors: experts.gate_up_proj [E, 2F, D],
experts.down_proj [E, D, F], router.{proj.weight, scale, per_expert_scale}); transformers' logits
on the KerasHub fixture's inputs in tests/fixtures/hf/gemma4_moe.ref.h5 (/token_ids,
/padding_mask, /logits).

--check-export DIR: load DIR (gemmatrain's HF export of tests/fixtures/hf/gemma4_moe, see
tests/test_gemma4_moe.c) with transformers, run the same inputs and write /logits to
tests/fixtures/hf/export_gemma4_moe_ref.h5.

Run: python3 tools/reference/make_hf_gemma4_moe_fixture.py  (transformers 5.25, torch, h5py)
"""
import os
import sys

import h5py
import numpy as np
import torch
from transformers import Gemma4ForCausalLM, Gemma4TextConfig

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")


def inputs():
    with h5py.File(os.path.join(ROOT, "gemma4_moe.h5")) as src:
        return np.asarray(src["inputs/token_ids"]), np.asarray(src["inputs/padding_mask"]), dict(src["config"].attrs)


def logits_of(model, ids, mask):
    with torch.no_grad():
        z = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()).logits
    return z.numpy().astype("float32")


def main(seed=4117):
    ids, mask, a = inputs()
    L, pat = int(a["num_layers"]), int(a["sliding_window_pattern"])
    types = ["full_attention" if i % pat == pat - 1 else "sliding_attention" for i in range(L)]
    cfg = Gemma4TextConfig(
        vocab_size=int(a["vocabulary_size"]), hidden_size=int(a["hidden_dim"]),
        intermediate_size=int(a["intermediate_dim"]), num_hidden_layers=L,
        num_attention_heads=int(a["num_query_heads"]), num_key_value_heads=int(a["num_key_value_heads"]),
        head_dim=int(a["head_dim"]), global_head_dim=int(a["global_head_dim"]),
        num_global_key_value_heads=int(a["num_global_key_value_heads"]), attention_k_eq_v=True,
        sliding_window=int(a["sliding_window_size"]), layer_types=types,
        final_logit_softcapping=float(a["final_logit_soft_cap"]), hidden_size_per_layer_input=0,
        enable_moe_block=True, num_experts=int(a["num_experts"]),
        moe_intermediate_size=int(a["expert_intermediate_dim"]), top_k_experts=int(a["num_experts_per_token"]),
        rope_parameters={
            "full_attention": {"rope_type": "proportional", "rope_theta": 1e6,
                               "partial_rotary_factor": float(a["global_rope_partial_rotary_factor"])},
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
        elif "norm" in k or k.endswith(("router.scale", "per_expert_scale")):
            val = 1.0 + rng.normal(0, 0.3, v.shape)
        elif k.endswith("router.proj.weight"):
            val = rng.normal(0, 2.0, v.shape)
        else:
            val = rng.normal(0, 0.5, v.shape)
        state[k] = torch.from_numpy(val.astype("float32"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "lm_head.weight" for k in missing), (missing, unexpected)
    logits = logits_of(model, ids, mask)
    out = os.path.join(ROOT, "hf", "gemma4_moe")
    model.save_pretrained(out, safe_serialization=True)
    with h5py.File(os.path.join(ROOT, "hf", "gemma4_moe.ref.h5"), "w") as f:
        f["token_ids"] = ids
        f["padding_mask"] = mask
        f["logits"] = logits
    print(f"{out}: max|logit| {np.abs(logits).max():.3f}; files {sorted(os.listdir(out))}")


def check_export(d):
    ids, mask, _ = inputs()
    model = Gemma4ForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager").eval()
    logits = logits_of(model, ids, mask)
    with h5py.File(os.path.join(ROOT, "hf", "gemma4_moe.ref.h5")) as f:
        want = np.asarray(f["logits"])
    rows = mask.reshape(-1) > 0
    err = np.abs(logits.reshape(-1, logits.shape[-1])[rows] - want.reshape(-1, want.shape[-1])[rows]).max()
    print(f"{d}: transformers on the export vs the fixture: {err / np.abs(want).max():.2e} x max")
    with h5py.File(os.path.join(ROOT, "hf", "export_gemma4_moe_ref.h5"), "w") as f:
        f["logits"] = logits


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2])
    else:
        main()
