#!/usr/bin/env python3
"""Hugging Face Gemma 4 with text, vision and audio in ONE directory, computed by transformers.

A tiny random Gemma4ForConditionalGeneration (transformers 5.25, torch, eager attention):
  text   vocab 64, width 16, 3 layers (sliding, sliding, full), 2 heads / 1 kv head of 8, the
         full layer's head dim 16 with k = v, proportional RoPE 0.25, window 8, per-layer
         embeddings of 4, use_bidirectional_attention "vision", final soft-cap 10
  vision patch 4, pool 2, width 16, 2 heads / 1 kv head of 8, 2 layers, clipped linears
  audio  16 mels (= SSCP channels[0]), width 16, 2 heads, 2 layers, chunk 4, context 5
and the special ids inside the small vocabulary (boi 50, eoi 51, image 52, boa 53, eoa 54,
audio 55, video 56). Every weight random (seeded; the RMS scales too; one tight clip per tower).
save_pretrained writes tests/fixtures/hf/gemma4_mm/ (config.json, model.safetensors,
generation_config.json); expected.h5 beside it holds one prompt with an image and a clip:
  /inputs/token_ids int32 [1, T]   text, <boi> 4 x <image> <eoi>, text, <boa> 4 x <audio> <eoa>
  /inputs/pixels float32 [1, 16, 48] in [0, 1], /inputs/positions int32 [1, 16, 2] (a full 4 x 4
  grid: 4 soft tokens), /inputs/mel float32 [1, 16, 16], /inputs/mel_mask int32 [1, 16] (14
  frames valid: 4 soft tokens), /expected/logits float32 [1, T, 64]
The reference logits are transformers' in float64 (the model cast after loading the float32
weights); the script prints how far its float32 run is from them.

Run: python3 tools/reference/make_hf_gemma4_mm_fixture.py
--check-export DIR: DIR is a directory gemmatrain wrote (tests/test_hf_gemma4_mm.c with
GT_HF_GEMMA4_MM_EXPORT_DIR): transformers loads it with Gemma4ForConditionalGeneration
.from_pretrained (a missing or unexpected key is an error), and its float64 logits on the same
inputs must equal the fixture's within 1e-6 x max (exit status 1 otherwise).
"""
import os
import sys
import warnings

import h5py
import numpy as np
import torch
from transformers import Gemma4ForConditionalGeneration
from transformers.models.gemma4.configuration_gemma4 import (Gemma4AudioConfig, Gemma4Config,
                                                             Gemma4TextConfig, Gemma4VisionConfig)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf", "gemma4_mm")
IDS = dict(boi_token_id=50, eoi_token_id=51, image_token_id=52, boa_token_id=53,
           eoa_token_index=54, audio_token_id=55, video_token_id=56)


def config():
    text = Gemma4TextConfig(
        vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, global_head_dim=16,
        num_global_key_value_heads=1, attention_k_eq_v=True, sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        final_logit_softcapping=10.0, hidden_size_per_layer_input=4, vocab_size_per_layer_input=64,
        num_kv_shared_layers=0, use_bidirectional_attention="vision",
        rope_parameters={
            "full_attention": {"rope_type": "proportional", "rope_theta": 1e6,
                               "partial_rotary_factor": 0.25, "factor": 1.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
        tie_word_embeddings=True)
    vision = Gemma4VisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                pooling_kernel_size=2, patch_size=4, position_embedding_size=8,
                                use_clipped_linears=True)
    audio = Gemma4AudioConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                              attention_chunk_size=4, attention_context_left=5,
                              attention_context_right=0, attention_logit_cap=5.0, conv_kernel_size=3,
                              subsampling_conv_channels=[16, 3], output_proj_dims=12)
    cfg = Gemma4Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                       audio_config=audio.to_dict(), **IDS)
    cfg._attn_implementation = "eager"
    return cfg


def randomise(model, rng):
    tight = ("model.vision_tower.encoder.layers.0.mlp.gate_proj.output",
             "model.audio_tower.layers.0.feed_forward1.ffw_layer_1.output")
    clips = [(n, b) for n, b in model.named_buffers() if n.endswith(("_min", "_max"))]
    for name, p in list(model.named_parameters()) + clips:
        if name == "lm_head.weight":
            continue
        if name.endswith(("_min", "_max")):
            t = name.startswith(tight)
            p.fill_((-0.8 if name.endswith("min") else 0.9) if t
                    else (-65504.0 if name.endswith("min") else 65504.0))
        elif name.endswith("layer_scalar"):
            p.copy_(torch.tensor(rng.uniform(0.5, 1.5, tuple(p.shape)), dtype=torch.float32))
        elif "norm" in name and name.endswith("weight"):
            p.copy_(torch.tensor(rng.uniform(0.6, 1.4, tuple(p.shape)), dtype=torch.float32))
        elif p.dtype == torch.float32 and p.ndim >= 1:
            fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else 4
            scale = 0.15 if name.startswith("model.language_model.") else 1 / np.sqrt(fan_in)
            p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)) * scale, dtype=torch.float32))


def inputs(rng):
    img, aud = IDS["image_token_id"], IDS["audio_token_id"]
    ids = ([2, 7, 9, IDS["boi_token_id"]] + [img] * 4 + [IDS["eoi_token_id"], 11, 12, IDS["boa_token_id"]]
           + [aud] * 4 + [IDS["eoa_token_index"], 20, 21])
    ids = np.array([ids], dtype="int32")
    pix = rng.uniform(0, 1, (1, 16, 48)).astype("float32")
    g = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="xy"), -1).reshape(1, 16, 2)
    mel = rng.standard_normal((1, 16, 16)).astype("float32")
    mask = np.ones((1, 16), dtype="int32")
    mask[0, 14:] = 0
    mel[0, 14:] = 0
    return {"token_ids": ids, "pixels": pix, "positions": g.astype("int32"), "mel": mel,
            "mel_mask": mask}


def logits(model, inp, dtype):
    model = model.to(dtype)
    if dtype == torch.float64:
        # HF's audio attention computes in float32 whatever the weights (.float()): that tower
        # stays float32, its input cast down and its soft tokens cast up
        tower = model.model.audio_tower.float()

        def audio32(feats, mask, **kw):
            o = tower(feats.float(), mask, return_dict=True)
            o.pooler_output = model.model.embed_audio(inputs_embeds=o.last_hidden_state.double())
            return o
        model.model.get_audio_features = audio32
    ids = torch.tensor(inp["token_ids"], dtype=torch.long)
    tt = (ids == IDS["image_token_id"]).long()  # mm_token_type_ids: 1 at image slots
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                    pixel_values=torch.tensor(inp["pixels"], dtype=dtype),
                    image_position_ids=torch.tensor(inp["positions"], dtype=torch.long),
                    input_features=torch.tensor(inp["mel"], dtype=dtype),
                    input_features_mask=torch.tensor(inp["mel_mask"], dtype=torch.bool),
                    mm_token_type_ids=tt)
    return out.logits.double().numpy()


def main():
    torch.manual_seed(18)
    rng = np.random.default_rng(18)
    model = Gemma4ForConditionalGeneration(config()).float().eval()
    with torch.no_grad():
        randomise(model, rng)
    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    inp = inputs(rng)
    l32 = logits(model, inp, torch.float32)
    l64 = logits(model, inp, torch.float64)
    print(f"logits max {np.abs(l64).max():.3f}; float32 transformers vs float64: "
          f"{np.abs(l32 - l64).max() / np.abs(l64).max():.3g} x max")
    with h5py.File(os.path.join(OUT, "expected.h5"), "w") as f:
        for k, v in inp.items():
            f["inputs/" + k] = v
        f["expected/logits"] = l64.astype("float32")
    print(OUT, sorted(os.listdir(OUT)))


def check(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = Gemma4ForConditionalGeneration.from_pretrained(
            d, output_loading_info=True, attn_implementation="eager", dtype=torch.float32)
    bad = {k: v for k, v in info.items() if v and k != "error_msgs" or (k == "error_msgs" and v)}
    # the tied head is never stored: transformers reports nothing missing for it
    print("loading info:", {k: list(v) for k, v in info.items()})
    if bad:
        print("strict load failed:", bad)
        sys.exit(1)
    with h5py.File(os.path.join(OUT, "expected.h5")) as f:
        inp = {k: f["inputs/" + k][()] for k in f["inputs"]}
        want = f["expected/logits"][()]
    got = logits(model.eval(), inp, torch.float64)
    diff = np.abs(got - want).max() / np.abs(want).max()
    print(f"transformers on our directory: {diff:.3g} x max")
    sys.exit(0 if diff <= 1e-6 else 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        check(sys.argv[2])
    else:
        main()
