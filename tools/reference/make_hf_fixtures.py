#!/usr/bin/env python3
"""Hugging Face Gemma fixtures, made with transformers (PyTorch, CPU, fp32, eager attention).

Mode 1 (no arguments): tiny seeded models with random weights (norm weights included), saved with
save_pretrained into tests/fixtures/hf/<name>/, and tests/fixtures/hf/<name>_ref.h5 holding
  /input_ids  int32 [B, T]      random ids
  /logits     float32 [B, T, V] the model's logits on them
for
  gemma1     GemmaForCausalLM: MQA (1 kv head), N*H != D
  gemma2     Gemma2ForCausalLM: query_pre_attn_scalar = D/N != H, small soft-caps (they bite),
             sliding window 4 < T, rope_theta 5000; saved in shards (model.safetensors.index.json)
  gemma3     Gemma3ForCausalLM: layer_types with period 3, linear RoPE x2 on full layers,
             global/local theta 1e5/1e4, window 4
  gemma3_mm  Gemma3ForConditionalGeneration (tiny SigLIP tower): the text part is what we load
plus tests/fixtures/hf/dtypes.safetensors (written by the safetensors library: F32, F16, BF16,
F64 tensors with subnormals, infinities, NaN; an I64 one) and dtypes_ref.h5 with torch's fp32
conversion of each float tensor.

Mode 2: --check-export DIR...: each DIR is a model directory exported by OUR code (the C test
writes them when GT_HF_EXPORT_TO is set). transformers loads it (AutoModelForCausalLM, fp32,
eager) and tests/fixtures/hf/export_<basename>_ref.h5 gets /input_ids (seeded) and /logits; when
the directory has a tokenizer, AutoTokenizer's ids for a few texts go to /tokenizer/<k> with the
texts as attribute text_<k>. The Gemma 4 exports (gemma4, gemma4_ple: Gemma4ForCausalLM with
per_layer_config, proportional RoPE, kv sharing, PLE) go through the same path; the committed
refs were made with transformers 5.25.0, where ours agree to ~1e-6 x max|logit|.

Run: pip install torch transformers safetensors h5py numpy
     python3 tools/reference/make_hf_fixtures.py
     GT_HF_EXPORT_TO=/tmp/hfexp build-hf/tests/test_hf_gemma
     python3 tools/reference/make_hf_fixtures.py --check-export /tmp/hfexp/*
"""
import os
import shutil
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "..", "tests", "fixtures", "hf")
B, T = 2, 10
TEXTS = ["Hello world", "  two  spaces\nand a newline", "<start_of_turn>user\nhi<end_of_turn>", "déjà vu 123"]


def randomize(model, seed):
    """Every parameter N(0, s): norms too (HF initialises them to zero), embeddings wider."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            std = 0.3 if "norm" in name else 1.0 if "embed" in name else 0.15
            p.copy_(torch.randn(p.shape, generator=g) * std)


def logits_of(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids, dtype=torch.long)).logits.float().numpy()


def write_ref(path, ids, logits):
    with h5py.File(path, "w") as f:
        f.create_dataset("input_ids", data=np.asarray(ids, dtype=np.int32))
        f.create_dataset("logits", data=logits.astype(np.float32))
    print(f"{path}: logits {logits.shape}, max|logit| {np.abs(logits).max():.3f}")


def build(name, seed):
    from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3Config, Gemma3ForCausalLM,
                              Gemma3ForConditionalGeneration, Gemma3TextConfig, GemmaConfig,
                              GemmaForCausalLM, SiglipVisionConfig)
    common = dict(attn_implementation="eager")
    if name == "gemma1":
        c = GemmaConfig(vocab_size=160, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=16, **common)
        return GemmaForCausalLM(c), 160
    if name == "gemma2":
        c = Gemma2Config(vocab_size=160, hidden_size=48, intermediate_size=40, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=12,
                         attn_logit_softcapping=3.0, final_logit_softcapping=8.0, sliding_window=4,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000.0}, **common)
        return Gemma2ForCausalLM(c), 160
    text = dict(vocab_size=160, hidden_size=32, intermediate_size=40, num_hidden_layers=6,
                num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
                sliding_window=4,
                layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 100000.0},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    if name == "gemma3":
        return Gemma3ForCausalLM(Gemma3TextConfig(**text, **common)), 160
    if name == "gemma3_mm":
        text.update(num_hidden_layers=3, layer_types=["sliding_attention", "sliding_attention", "full_attention"])
        vision = SiglipVisionConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, image_size=28, patch_size=14)
        c = Gemma3Config(text_config=Gemma3TextConfig(**text), vision_config=vision.to_dict(),
                         mm_tokens_per_image=4, boi_token_index=150, eoi_token_index=151,
                         image_token_index=152, **common)
        return Gemma3ForConditionalGeneration(c), 150
    raise ValueError(name)


def fixtures():
    os.makedirs(FIX, exist_ok=True)
    for seed, name in enumerate(["gemma1", "gemma2", "gemma3", "gemma3_mm"]):
        torch.manual_seed(seed)
        model, id_range = build(name, seed)
        model = model.float()
        randomize(model, 100 + seed)
        d = os.path.join(FIX, name)
        shutil.rmtree(d, ignore_errors=True)
        shard = "60KB" if name == "gemma2" else "50GB"
        model.save_pretrained(d, max_shard_size=shard)
        ids = np.random.default_rng(seed).integers(0, id_range, size=(B, T))
        write_ref(os.path.join(FIX, f"{name}_ref.h5"), ids, logits_of(model, ids))
    dtypes()


def dtypes():
    from safetensors.torch import save_file
    base = torch.tensor([0.0, -0.0, 1.0, -2.5, 3.14159265, 65504.0, 6.0e-8, 1.0e-5, float("inf"),
                         float("-inf"), float("nan"), 1.0e30, -1.0e-30, 0.333333343], dtype=torch.float64)
    tensors = {
        "f32": base.float().reshape(2, 7),
        "f16": base.half().reshape(7, 2),
        "bf16": base.bfloat16(),
        "f64": base.reshape(1, 14),
        "i64": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "scalar": torch.tensor(7.5, dtype=torch.bfloat16),
    }
    save_file(tensors, os.path.join(FIX, "dtypes.safetensors"), metadata={"format": "pt", "note": "dtypes"})
    with h5py.File(os.path.join(FIX, "dtypes_ref.h5"), "w") as f:
        for k, v in tensors.items():
            if v.is_floating_point():
                f.create_dataset(k, data=v.float().reshape(-1).numpy())
    # byte-exact writer references: the same fp32 values as F32 and as BF16 (rounding ties)
    bits = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0x3F838000, 0xFF800000,
                     0x00000001, 0x80000000, 0x3EAAAAAB, 0xC0490FDB], dtype=np.uint32)
    vals = torch.from_numpy(bits.view(np.float32).copy())
    ref = {"b.weight": vals[:4].reshape(2, 2), "a": vals[4:].reshape(3, 2), "z.scalar": torch.tensor(1.5)}
    save_file(ref, os.path.join(FIX, "writer_f32.safetensors"), metadata={"format": "pt"})
    save_file({k: v.bfloat16() for k, v in ref.items()}, os.path.join(FIX, "writer_bf16.safetensors"),
              metadata={"format": "pt"})
    print("dtypes.safetensors, writer_*.safetensors written")


def check_export(dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    for d in dirs:
        d = d.rstrip("/")
        name = os.path.basename(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        V = model.config.vocab_size
        ids = np.random.default_rng(7).integers(0, V, size=(B, T))
        out = os.path.join(FIX, f"export_{name}_ref.h5")
        write_ref(out, ids, logits_of(model, ids))
        if any(os.path.exists(os.path.join(d, f)) for f in ("tokenizer.json", "tokenizer.model")):
            tok = AutoTokenizer.from_pretrained(d)
            with h5py.File(out, "a") as f:
                g = f.create_group("tokenizer")
                for k, text in enumerate(TEXTS):
                    g.create_dataset(str(k), data=np.asarray(tok(text)["input_ids"], dtype=np.int32))
                    g.attrs[f"text_{k}"] = text
            print(f"{d}: tokenizer {type(tok).__name__}, {[tok(t)['input_ids'] for t in TEXTS[:1]]}")


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    if len(sys.argv) > 1 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2:])
    else:
        fixtures()
