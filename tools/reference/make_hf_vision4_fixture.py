#!/usr/bin/env python3
"""Hugging Face Gemma 4 vision tower fixture, computed by transformers (torch, fp32).

A tiny random Gemma4VisionModel (patch 4, pool 3, width 16, 2 heads sharing 1 kv head of 8, 2
layers, GeGLU 24, position tables of 8, clipped linears: one tight) plus Gemma4MultimodalEmbedder
into a text width of 32, every weight random (the RMS scales too). Written to
tests/fixtures/hf/gemma4_vision/:
  model.safetensors  the weights under Gemma4ForConditionalGeneration's names
                     (model.vision_tower.*, model.embed_vision.embedding_projection.weight)
  config.json        {"vision_config": {...}, "text_config": {"hidden_size": 32}}
  expected.h5        /inputs/pixels [4, 36, 48] in [0, 1], /inputs/positions int32 [4, 36, 2]
                     (images 0-2 a full 6 x 6 grid, image 3 a 6 x 3 grid padded with (-1, -1)),
                     /expected/output [14, 32]: get_image_features' soft tokens, padding cells
                     dropped as HF does (4 + 4 + 4 + 2 rows)
Run: python3 tools/reference/make_hf_vision4_fixture.py

--check-export DIR: DIR/vision and DIR/audio are towers gemmatrain wrote
(GT_HF_TOWERS_EXPORT_DIR=DIR build/tests/test_hf_towers4): transformers builds
Gemma4VisionModel / Gemma4AudioModel and their embedders from each config.json, loads the
safetensors strictly (every key present, none left over) and reproduces the fixtures' outputs;
exit status 1 when either differs by more than 1e-5 x max.
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
from safetensors.torch import save_file
from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig, Gemma4VisionConfig
from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder, Gemma4VisionModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf", "gemma4_vision")
VISION = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, head_dim=8, pooling_kernel_size=3, patch_size=4,
              position_embedding_size=8, use_clipped_linears=True)
TEXT_WIDTH = 32


def randomise(tower, rng):
    clips = [(n, b) for n, b in tower.named_buffers() if n.endswith(("_min", "_max"))]
    for name, p in list(tower.named_parameters()) + clips:
        if name.endswith(("_min", "_max")):
            tight = name.startswith("encoder.layers.0.mlp.gate_proj.output")
            p.fill_((-0.8 if name.endswith("min") else 0.9) if tight
                    else (-65504.0 if name.endswith("min") else 65504.0))
        elif "norm" in name and name.endswith("weight"):
            p.copy_(torch.tensor(rng.uniform(0.6, 1.4, tuple(p.shape)), dtype=torch.float32))
        elif p.dtype == torch.float32 and p.ndim >= 1:
            fan_in = p.shape[-1] if p.ndim == 2 else 2
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) / np.sqrt(fan_in),
                                 dtype=torch.float32))


def main():
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    cfg = Gemma4VisionConfig(**VISION)
    tower = Gemma4VisionModel(cfg).eval()
    emb = Gemma4MultimodalEmbedder(cfg, Gemma4TextConfig(hidden_size=TEXT_WIDTH)).eval()
    with torch.no_grad():
        randomise(tower, rng)
        emb.embedding_projection.weight.copy_(torch.tensor(
            rng.standard_normal((TEXT_WIDTH, 16)) / 4.0, dtype=torch.float32))
    B, P, g = 4, 36, 6
    pix = rng.uniform(0, 1, (B, P, 48)).astype("float32")
    pos = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="xy"), -1).reshape(P, 2)
    pos = np.broadcast_to(pos, (B, P, 2)).astype("int32").copy()
    pos[3, :18] = np.stack(np.meshgrid(np.arange(6), np.arange(3), indexing="xy"), -1).reshape(18, 2)
    pos[3, 18:] = -1
    pix[3, 18:] = 0
    with torch.no_grad():
        h = tower(pixel_values=torch.tensor(pix),
                  pixel_position_ids=torch.tensor(pos, dtype=torch.long)).last_hidden_state
        out = emb(h).numpy()
    state = {"model.vision_tower." + k: v.contiguous() for k, v in tower.state_dict().items()}
    state["model.embed_vision.embedding_projection.weight"] = emb.embedding_projection.weight.contiguous()
    os.makedirs(OUT, exist_ok=True)
    save_file(state, os.path.join(OUT, "model.safetensors"))
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump({"architectures": ["Gemma4ForConditionalGeneration"],
                   "vision_config": cfg.to_diff_dict() | VISION,
                   "text_config": {"hidden_size": TEXT_WIDTH}}, f, indent=1, sort_keys=True)
    with h5py.File(os.path.join(OUT, "expected.h5"), "w") as f:
        f["inputs/pixels"] = pix
        f["inputs/positions"] = pos
        f["expected/output"] = out
    print("output", out.shape, "max", np.abs(out).max(), "tensors", len(state))


def load_tower(d, cfg_cls, model_cls, key, prefix, emb_prefix):
    from safetensors.torch import load_file
    conf = json.load(open(os.path.join(d, "config.json")))
    cfg = cfg_cls(**{k: v for k, v in conf[key].items() if k != "model_type"})
    tower = model_cls(cfg).eval()
    emb = Gemma4MultimodalEmbedder(cfg, Gemma4TextConfig(**conf["text_config"])).eval()
    state = load_file(os.path.join(d, "model.safetensors"))
    tower.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                          strict=True)
    emb.load_state_dict({k[len(emb_prefix):]: v for k, v in state.items()
                         if k.startswith(emb_prefix)}, strict=False)
    left = [k for k in state if not k.startswith((prefix, emb_prefix))]
    assert not left, left
    return tower, emb


def check(d):
    from transformers.models.gemma4.configuration_gemma4 import Gemma4AudioConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel
    ok = True
    tower, emb = load_tower(os.path.join(d, "vision"), Gemma4VisionConfig, Gemma4VisionModel,
                            "vision_config", "model.vision_tower.", "model.embed_vision.")
    with h5py.File(os.path.join(OUT, "expected.h5")) as f, torch.no_grad():
        h = tower(pixel_values=torch.tensor(f["inputs/pixels"][()]),
                  pixel_position_ids=torch.tensor(f["inputs/positions"][()], dtype=torch.long))
        got, want = emb(h.last_hidden_state).numpy(), f["expected/output"][()]
    diff = np.abs(got - want).max() / np.abs(want).max()
    print(f"transformers on our vision tower: {diff:.3g} x max")
    ok &= diff <= 1e-5
    tower, emb = load_tower(os.path.join(d, "audio"), Gemma4AudioConfig, Gemma4AudioModel,
                            "audio_config", "model.audio_tower.", "model.embed_audio.")
    ref = os.path.join(ROOT, "tests", "fixtures", "hf", "gemma4_audio", "expected.h5")
    with h5py.File(ref) as f, torch.no_grad():
        h = tower(torch.tensor(f["inputs/mel"][()]),
                  attention_mask=torch.tensor(f["inputs/mask"][()], dtype=torch.bool))
        got, want = emb(h.last_hidden_state).numpy(), f["expected/output"][()]
    diff = np.abs(got - want).max() / np.abs(want).max()
    print(f"transformers on our audio tower: {diff:.3g} x max")
    ok &= diff <= 1e-5
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        check(sys.argv[2])
    else:
        main()
