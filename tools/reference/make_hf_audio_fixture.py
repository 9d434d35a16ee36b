#!/usr/bin/env python3
"""Hugging Face Gemma 4 audio tower fixture, computed by transformers (torch, fp32).

A tiny random Gemma4AudioModel (16 mels = SSCP channels[0], as HF's input projection assumes;
width 16, 2 heads, 2 layers, chunk 4, context_left 5, kernel 3, channels (16, 3), output_proj_dims
12, logit cap 5) plus Gemma4MultimodalEmbedder into a text width of 10, every weight random (the
RMS scales too; one tight clip). Written to tests/fixtures/hf/gemma4_audio/:
  model.safetensors  the weights under Gemma4ForConditionalGeneration's names
                     (model.audio_tower.*, model.embed_audio.embedding_projection.weight)
  config.json        {"audio_config": {...}, "text_config": {"hidden_size": 10}}
  expected.h5        /inputs/mel [2, 38, 16], /inputs/mask int32 [2, 38] (clip 1: 13 valid
                     frames), /expected/output [2, 10, 10] = embed_audio(audio_tower(mel, mask))
Run: python3 tools/reference/make_hf_audio_fixture.py
"""
import json
import os

import h5py
import numpy as np
import torch
from safetensors.torch import save_file
from transformers.models.gemma4.configuration_gemma4 import Gemma4AudioConfig, Gemma4TextConfig
from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel, Gemma4MultimodalEmbedder

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf", "gemma4_audio")
AUDIO = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, attention_chunk_size=4,
             attention_context_left=5, attention_context_right=0, attention_logit_cap=5.0,
             conv_kernel_size=3, subsampling_conv_channels=[16, 3], output_proj_dims=12)


def main():
    torch.manual_seed(5)
    rng = np.random.default_rng(5)
    cfg = Gemma4AudioConfig(**AUDIO)
    tower = Gemma4AudioModel(cfg).eval()
    emb = Gemma4MultimodalEmbedder(cfg, Gemma4TextConfig(hidden_size=10)).eval()
    with torch.no_grad():
        clips = [(n, b) for n, b in tower.named_buffers() if n.endswith(("_min", "_max"))]
        for name, p in list(tower.named_parameters()) + clips:  # not inv_timescales, softcap
            if name.endswith(("_min", "_max")):
                tight = name.startswith("layers.0.feed_forward1.ffw_layer_1.output")
                p.fill_((-0.8 if name.endswith("min") else 0.9) if tight
                        else (-65504.0 if name.endswith("min") else 65504.0))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(torch.tensor(rng.uniform(0.6, 1.4, tuple(p.shape)), dtype=torch.float32))
            elif p.dtype == torch.float32 and p.ndim >= 1:
                fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else 4
                p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) / np.sqrt(fan_in),
                                     dtype=torch.float32))
        emb.embedding_projection.weight.copy_(torch.tensor(rng.standard_normal((10, 12)) / 3.5,
                                                           dtype=torch.float32))
    B, T = 2, 38
    mel = rng.standard_normal((B, T, 16)).astype("float32")
    mask = np.ones((B, T), dtype="int32")
    mask[1, 13:] = 0
    with torch.no_grad():
        h = tower(torch.tensor(mel), attention_mask=torch.tensor(mask, dtype=torch.bool)).last_hidden_state
        out = emb(h).numpy()
    state = {"model.audio_tower." + k: v.contiguous() for k, v in tower.state_dict().items()}
    state["model.embed_audio.embedding_projection.weight"] = emb.embedding_projection.weight.contiguous()
    os.makedirs(OUT, exist_ok=True)
    save_file(state, os.path.join(OUT, "model.safetensors"))
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump({"architectures": ["Gemma4ForConditionalGeneration"],
                   "audio_config": cfg.to_diff_dict() | AUDIO,
                   "text_config": {"hidden_size": 10}}, f, indent=1, sort_keys=True)
    with h5py.File(os.path.join(OUT, "expected.h5"), "w") as f:
        f["inputs/mel"] = mel
        f["inputs/mask"] = mask
        f["expected/output"] = out
    print("output", out.shape, "max", np.abs(out).max())


if __name__ == "__main__":
    main()
