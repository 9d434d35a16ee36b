#!/usr/bin/env python3
"""A Gemma 4 KerasHub preset with both encoders, saved by keras_hub 0.32 (JAX, fp32).

Mode 1 (no arguments): a tiny Gemma4Backbone (2 text layers of width 32, vocabulary 61) with
the tiny vision encoder of make_vision4_fixture.py (clipped linears, GQA) and the tiny audio
encoder of make_audio_encoder_fixture.py, random weights (seeded; two clip bounds tight so that
they matter), saved with backbone.save_to_preset to tests/fixtures/presets/gemma4_towers/
(config.json, model.weights.h5, metadata.json). Expected encoder outputs go to
tests/fixtures/presets/gemma4_towers.ref.h5:

  /vision/files          the two test images (tests/fixtures/images/) the converter reads
  /vision/pixels         float32 [2, 36, 48]  Gemma4ImageConverter(patch 4, pool 3, 4 tokens)
  /vision/positions      int32 [2, 36, 2]     its pixel_position_ids
  /vision/output         float32 [2, 4, 32]   the preset's vision encoder on them
  /audio/mel             float32 [2, 38, 16]; /audio/mask int32 [2, 38] (1 = frame)
  /audio/output          float32 [2, 10, 32]  the preset's audio encoder

Mode 2: --check-export DIR: DIR is a preset gemmatrain wrote (tests/test_gemma4_towers.c with
GT_TOWERS_EXPORT_DIR set writes one): Gemma4Backbone.from_preset loads it, every encoder weight
equals the committed preset's, and both encoders reproduce the outputs above (max |diff|
printed; exit status 1 when over 1e-5 x max).

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma4_towers_fixture.py [--check-export DIR]
"""
import os
import shutil
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h5py  # noqa: E402
import jax  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras_hub.src.models.gemma4.gemma4_audio_encoder import Gemma4AudioEncoder  # noqa: E402
from keras_hub.src.models.gemma4.gemma4_vision_encoder import Gemma4VisionEncoder  # noqa: E402
from make_audio_encoder_fixture import CFG as ACFG  # noqa: E402
from make_audio_encoder_fixture import named as audio_named  # noqa: E402
from make_vision4_fixture import CFG as VCFG  # noqa: E402
from make_vision4_fixture import named as vision_named  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PRESET = os.path.join(ROOT, "tests", "fixtures", "presets", "gemma4_towers")
REF = PRESET + ".ref.h5"
IMAGES = ["rgb_37x23.png", "grey_18x30.png"]
TEXT = dict(vocabulary_size=61, image_size=None, num_layers=2, num_query_heads=2,
            num_key_value_heads=1, hidden_dim=32, intermediate_dim=16, head_dim=8,
            sliding_window_size=4, sliding_window_pattern=2)


def build(seed=41):
    venc = Gemma4VisionEncoder(dtype="float32", **dict(VCFG, output_dim=TEXT["hidden_dim"]))
    aenc = Gemma4AudioEncoder(dtype="float32", **dict(ACFG, output_dim=TEXT["hidden_dim"]))
    bb = keras_hub.models.Gemma4Backbone(**TEXT, vision_encoder=venc, audio_encoder=aenc,
                                         dtype="float32")
    rng = np.random.default_rng(seed)
    enc_vars = set()
    for name, v in [(n, v) for n, v, _ in vision_named(venc)] + audio_named(aenc):
        if isinstance(v, list):  # clip bounds: two denses tight, the rest the fp16 range
            enc_vars.update(id(x) for x in v)
            if name in ("block_0.gate.clip", "conformer_0.ffw_start.ffw_1.clip"):
                for x, b in zip(v, (-1.5, 1.2, -0.8, 0.9)):
                    x.assign(np.float32(b))
            continue
        enc_vars.add(id(v))
        if name.endswith(("norm", "norm_0", "norm_1")):
            v.assign(rng.uniform(0.6, 1.4, v.shape).astype("float32"))
        else:
            fan = int(np.prod(v.shape[:-1])) if len(v.shape) > 1 else 4
            v.assign((rng.standard_normal(v.shape) / np.sqrt(fan)).astype("float32"))
    for v in bb.weights:
        if id(v) in enc_vars:
            continue
        if v.path.endswith("scale"):
            v.assign(rng.uniform(0.6, 1.4, v.shape).astype("float32"))
        else:
            v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    return bb, rng


def vision_inputs():
    conv = keras_hub.layers.Gemma4ImageConverter(patch_size=4, max_soft_tokens=4,
                                                 pooling_kernel_size=3, scale=1 / 255,
                                                 offset=0.0)
    pix, pos = [], []
    for name in IMAGES:
        img = tf.io.decode_png(open(os.path.join(ROOT, "tests", "fixtures", "images", name),
                                    "rb").read(), channels=3).numpy().astype("float32")
        out = conv(img[None])
        pix.append(np.asarray(out["pixel_values"])[0])
        pos.append(np.asarray(out["pixel_position_ids"])[0])
    return np.stack(pix).astype("float32"), np.stack(pos).astype("int32")


def run(bb, pix, pos, mel, mask):
    v = np.asarray(bb.vision_encoder({"pixel_values": pix[:, None],
                                      "pixel_position_ids": pos[:, None]}))[:, 0]
    a = np.asarray(bb.audio_encoder(mel, mask.astype(bool)))
    if isinstance(a, tuple):
        a = a[0]
    return v, np.asarray(a)


def make():
    bb, rng = build()
    pix, pos = vision_inputs()
    B, T = 2, 38
    mel = rng.standard_normal((B, T, ACFG["input_feat_size"])).astype("float32")
    mask = np.ones((B, T), "int32")
    mask[1, 13:] = 0
    v, a = run(bb, pix, pos, mel, mask)
    shutil.rmtree(PRESET, ignore_errors=True)
    bb.save_to_preset(PRESET)
    with h5py.File(REF, "w") as f:
        f["vision/files"] = np.array([n.encode() for n in IMAGES])
        f["vision/pixels"], f["vision/positions"], f["vision/output"] = pix, pos, v
        f["audio/mel"], f["audio/mask"], f["audio/output"] = mel, mask, a
    print("wrote", PRESET, REF, "vision", v.shape, "audio", a.shape,
          "params", bb.count_params())


def check(d):
    ours = keras_hub.models.Gemma4Backbone.from_preset(d)
    ref = keras_hub.models.Gemma4Backbone.from_preset(PRESET)
    for enc in ("vision_encoder", "audio_encoder"):
        wo, wr = getattr(ours, enc).weights, getattr(ref, enc).weights
        assert len(wo) == len(wr), (enc, len(wo), len(wr))
        for x, y in zip(wo, wr):
            assert x.path == y.path and np.array_equal(np.asarray(x), np.asarray(y)), x.path
        print(enc, len(wo), "weights equal the committed preset's")
    with h5py.File(REF) as f:
        pix, pos = f["vision/pixels"][()], f["vision/positions"][()]
        mel, mask = f["audio/mel"][()], f["audio/mask"][()]
        want_v, want_a = f["vision/output"][()], f["audio/output"][()]
    v, a = run(ours, pix, pos, mel, mask)
    ok = True
    for name, got, want in (("vision", v, want_v), ("audio", a, want_a)):
        d = np.abs(got - want).max() / np.abs(want).max()
        print(f"{name} encoder of our export in keras_hub: {d:.3g} x max")
        ok &= d <= 1e-5
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        check(sys.argv[2])
    else:
        make()
