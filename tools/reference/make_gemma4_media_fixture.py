#!/usr/bin/env python3
"""Golden fixture for Gemma 4 with images AND audio (KerasHub 0.32 Gemma4Backbone with a
Gemma4VisionEncoder and a Gemma4AudioEncoder, JAX backend).

The tiny decoder of make_gemma4_fixture.py (sliding window 6, vision bidirectional attention on),
the tiny vision encoder of make_vision4_fixture.py and the tiny audio encoder of
make_audio_encoder_fixture.py, both projecting into the width 32. Batch of 3 rows of T = 20:

  row 0: an image (4 tokens at 2..5) and a clip of 24 valid mel frames (6 tokens at 8..13)
  row 1: no image, a clip with 13 of 24 frames valid (ceil(13/4) = 4 tokens at 3..6), 3 pads
  row 2: an image (4 tokens at 5..8), no audio (mel mask all 0, audio_indices all 0), 2 pads

The reference is computed in float64 (jax x64, every layer dtype float64) from float32 weights
and inputs, so what the C side is measured against is KerasHub's function, not KerasHub's own
float32 rounding; the script also runs the float32 model and prints how far float32 KerasHub is
from its float64 self (the noise floor an fp32 implementation can reach).
Written to tests/fixtures/gemma4_media.h5:

  /config               attributes: decoder config (KerasHub names), image_token_id,
                        audio_token_id, vision_* and audio_* encoder configs
  /inputs/token_ids     int32 [3, 20];  /inputs/padding_mask int32 [3, 20]
  /inputs/pixels        float32 [2, 36, 48] (rows 0 and 2); /inputs/positions int32 [2, 36, 2]
  /inputs/mel           float32 [2, 24, 16] (rows 0 and 1); /inputs/mel_mask int32 [2, 24]
  /weights/<name>       decoder weights (make_gemma4_fixture.py names), vision/<name>,
                        audio/<name> (the encoders' fixture names and layouts)
  /expected/logits      float32 [3, 20, V]
  /expected/seed        float32 [3, 20, V]: R (zero on padding) of the loss sum(logits * R)
  /expected/grads/<name> float32: its gradient for every trainable weight

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma4_media_fixture.py
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h5py  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")

import jax.numpy as jnp  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from keras_hub.src.models.gemma4.gemma4_audio_encoder import Gemma4AudioEncoder  # noqa: E402
from keras_hub.src.models.gemma4.gemma4_vision_encoder import Gemma4VisionEncoder  # noqa: E402
from make_audio_encoder_fixture import CFG as ACFG  # noqa: E402
from make_audio_encoder_fixture import named as audio_named  # noqa: E402
from make_gemma4_fixture import SPEC, named_variables, to_ours  # noqa: E402
from make_vision4_fixture import CFG as VCFG  # noqa: E402
from make_vision4_fixture import named as vision_named  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
B, T, IMG_TOK, AUD_TOK, TM = 3, 20, 60, 59, 24
IMG_AT = {0: 2, 2: 5}            # row -> first image slot (4 tokens)
AUD_AT = {0: (8, 24), 1: (3, 13)}  # row -> (first audio slot, valid mel frames)
# Conditioning: with the text fixtures' N(0, 0.5) decoder weights, float32 KerasHub is 7.3e-4 x
# max away from its own float64 result at one position of this batch (gradients 3.6e-3 of a
# tensor's largest entry), with N(0, 0.25) 2.9e-4 or 3.9e-5 depending on the draw: the random
# decoder amplifies float32 rounding past the tolerances being tested. So the weights are drawn
# N(0, 0.15) and the first seed of SEEDS whose float32 logits are within COND x max of float64
# is kept (a property of KerasHub's model alone, measured before any comparison with ours).
DEC_SD = 0.15
SEEDS = range(18, 24)
COND = 2e-5


def build(dtype):
    spec = dict(SPEC, sliding_window_size=6)
    venc = Gemma4VisionEncoder(dtype=dtype, **dict(VCFG, output_dim=spec["hidden_dim"]))
    aenc = Gemma4AudioEncoder(dtype=dtype, **dict(ACFG, output_dim=spec["hidden_dim"]))
    aenc.build(None)
    bb = keras_hub.models.Gemma4Backbone(**spec, vision_encoder=venc, audio_encoder=aenc,
                                         num_audio_tokens_per_clip=6,
                                         use_vision_bidirectional_attention=True, dtype=dtype)
    return bb, spec, named_variables(bb), vision_named(venc), audio_named(aenc)


def init(text, vis, aud, rng):
    """Random float32 values (the same draws whatever the model's dtype)."""
    for path, var in text:
        if path.endswith("layer_scalar"):
            val = rng.uniform(0.5, 1.5, var.shape)
        elif path.endswith("scale"):
            val = 1.0 + rng.normal(0, 0.3, var.shape)
        else:
            val = rng.normal(0, DEC_SD, var.shape)
        var.assign(val.astype("float32"))
    for name, v, _ in vis:
        if isinstance(v, list):
            continue  # clip bounds keep their fp16-range defaults
        if name.endswith("norm"):
            v.assign(rng.uniform(0.6, 1.4, v.shape).astype("float32"))
        else:
            v.assign((rng.standard_normal(v.shape) * 0.3).astype("float32"))
    for name, v in aud:
        if isinstance(v, list):
            tight = name == "conformer_0.ffw_start.ffw_1.clip"
            for var, b in zip(v, [-1.5, 1.2, -0.8, 0.9] if tight else [-65504.0, 65504.0] * 2):
                var.assign(np.float32(b))
        elif "norm" in name:
            v.assign(rng.uniform(0.6, 1.4, v.shape).astype("float32"))
        else:
            sd = 0.5 if "per_dim" in name or "bias" in name else 1.0 / np.sqrt(v.shape[0])
            v.assign((rng.standard_normal(v.shape) * sd).astype("float32"))


def inputs_for(rng):
    V = SPEC["vocabulary_size"]
    ids = rng.integers(1, V - 2, (B, T)).astype("int32")
    vmask = np.zeros((B, T), "int32")
    amask = np.zeros((B, T), "int32")
    vidx = np.zeros((B, 4), "int32")
    aidx = np.zeros((B, 6), "int32")
    for r, s in IMG_AT.items():
        vmask[r, s:s + 4] = 1
        vidx[r] = np.arange(s, s + 4)
    mel = np.zeros((B, 1, TM, ACFG["input_feat_size"]), "float32")
    mel_mask = np.zeros((B, 1, TM), "int32")
    for r, (s, valid) in AUD_AT.items():
        n = -(-valid // 4)
        amask[r, s:s + n] = 1
        aidx[r, :n] = np.arange(s, s + n)
        mel[r, 0] = rng.standard_normal((TM, ACFG["input_feat_size"]))
        mel_mask[r, 0, :valid] = 1
    ids[vmask == 1] = IMG_TOK
    ids[amask == 1] = AUD_TOK
    pad = np.ones((B, T), "int32")
    pad[1, T - 3:] = 0
    pad[2, T - 2:] = 0
    ids[pad == 0] = 0
    pix = np.zeros((B, 1, 36, 48), "float32")
    for r in IMG_AT:
        pix[r, 0] = rng.uniform(0, 1, (36, 48))
    g = 6
    pos = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="xy"), -1).reshape(36, 2)
    pos = np.broadcast_to(pos, (B, 1, 36, 2)).astype("int32").copy()
    return {"token_ids": ids, "padding_mask": pad,
            "position_ids": np.tile(np.arange(T, dtype="int32"), (B, 1)),
            "pixel_values": pix, "pixel_position_ids": pos, "vision_indices": vidx,
            "vision_mask": vmask, "audio_mel": mel, "audio_mel_mask": mel_mask,
            "audio_indices": aidx, "audio_mask": amask}


def run(dtype, inp, wseed, seed=None, grads=True):
    """Logits, the seed R and d sum(logits * R) by our weight name, for a model of dtype."""
    bb, spec, text, vis, aud = build(dtype)
    init(text, vis, aud, np.random.default_rng(wseed))
    lm = keras_hub.models.Gemma4CausalLM(backbone=bb, preprocessor=None)
    cast = {k: (v.astype(dtype) if v.dtype == np.float32 else v) for k, v in inp.items()}
    tv = [v.value for v in lm.trainable_variables]
    ntv = [v.value for v in lm.non_trainable_variables]
    logits = np.asarray(lm.stateless_call(tv, ntv, cast)[0])
    if not grads:
        return logits
    if seed is None:
        rng = np.random.default_rng(6)
        seed = (rng.standard_normal(logits.shape) * inp["padding_mask"][..., None]).astype("float32")

    def loss(tv):
        z, _ = lm.stateless_call(tv, ntv, cast)
        return jnp.sum(z * seed.astype(dtype))

    g = {id(v): np.asarray(x) for v, x in zip(lm.trainable_variables, jax.grad(loss)(tv))}
    grads = {}
    for p, var in text:
        if var.trainable:
            grads[p] = to_ours(p, g[id(var)])
    for name, v, fn in vis:
        if not isinstance(v, list):
            grads["vision/" + name] = (fn or (lambda a: a))(g[id(v)])
    for name, v in aud:
        if not isinstance(v, list) and v.trainable:
            grads["audio/" + name] = g[id(v)].reshape(v.shape if not name.endswith(".depthwise")
                                                      else (v.shape[0], v.shape[1]))
    return logits, seed, grads, (bb, spec, text, vis, aud, wseed)


def write(path, inp, logits, seed, grads, model):
    bb, spec, text, vis, aud, _ = model
    with h5py.File(path, "w", libver="latest") as f:  # smaller object headers
        c = f.create_group("config")
        c.attrs["generation"] = 4
        c.attrs["weights_seed"] = model[5]
        c.attrs["image_token_id"] = IMG_TOK
        c.attrs["audio_token_id"] = AUD_TOK
        for k, v in spec.items():
            if v is not None:
                c.attrs[k] = int(v) if isinstance(v, bool) else v
        for k, v in VCFG.items():
            c.attrs["vision_" + k] = int(v) if isinstance(v, bool) else v
        for k, v in ACFG.items():
            if k == "sscp_conv_channels":
                c.attrs["audio_sscp_conv_channels_0"], c.attrs["audio_sscp_conv_channels_1"] = v
            else:
                c.attrs["audio_" + k] = v
        g = f.create_group("inputs")
        for k in ("token_ids", "padding_mask"):
            g[k] = inp[k]
        rows_i, rows_a = sorted(IMG_AT), sorted(AUD_AT)
        g["pixels"] = inp["pixel_values"][rows_i, 0]
        g["positions"] = inp["pixel_position_ids"][rows_i, 0]
        g["mel"] = inp["audio_mel"][rows_a, 0]
        g["mel_mask"] = inp["audio_mel_mask"][rows_a, 0]
        w = f.create_group("weights")
        for p, var in text:
            w[p] = to_ours(p, np.asarray(var.value)).astype("float32")
        for name, v, fn in vis:
            if isinstance(v, list):
                w["vision/" + name] = np.array([float(x.numpy()) for x in v], dtype="float32")
            else:
                w["vision/" + name] = (fn or (lambda a: a))(np.asarray(v.numpy())).astype("float32")
        for name, v in aud:
            if isinstance(v, list):
                w["audio/" + name] = np.array([float(x.numpy()) for x in v], dtype="float32")
            else:
                a = np.asarray(v.numpy(), dtype="float32")
                w["audio/" + name] = a.reshape(a.shape[0], a.shape[1]) if name.endswith(".depthwise") else a
        f["expected/logits"] = logits.astype("float32")
        f["expected/seed"] = seed
        for k, v in grads.items():
            f["expected/grads/" + k] = v.astype("float32")


def main():
    inp = inputs_for(np.random.default_rng(5))
    pad = inp["padding_mask"][..., None]
    for wseed in SEEDS:
        z64 = run("float64", inp, wseed, grads=False)
        e32 = np.abs((run("float32", inp, wseed, grads=False) - z64) * pad).max() / np.abs(z64).max()
        print(f"weights seed {wseed}: KerasHub f32 vs f64 logits {e32:.3g} x max", flush=True)
        if e32 <= COND:
            break
    assert e32 <= COND, "no well-conditioned draw"
    z64, seed, g64, model = run("float64", inp, wseed)
    z32, _, g32, _ = run("float32", inp, wseed, seed)
    assert np.isfinite(z64).all() and all(np.isfinite(v).all() for v in g64.values())
    mx = np.abs(z64).max()
    print(f"KerasHub f32 vs f64: logits {np.abs((z32 - z64) * pad).max() / mx:.3g} x max (max {mx:.3g})")
    worst = sorted(((np.abs(g32[k] - g64[k]).max() / np.abs(g64[k]).max(), k) for k in g64),
                   reverse=True)[:4]
    print("KerasHub f32 vs f64 grads, worst (max err / max |ref| per tensor):",
          ", ".join(f"{k} {e:.3g}" for e, k in worst))
    path = os.path.join(OUT, "gemma4_media.h5")
    write(path, inp, z64, seed, g64, model)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
