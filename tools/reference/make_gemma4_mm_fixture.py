#!/usr/bin/env python3
"""Golden fixture for Gemma 4 with images (KerasHub 0.32 Gemma4Backbone + Gemma4VisionEncoder,
JAX backend, fp32).

The tiny text decoder of make_gemma4_fixture.py (every dense Gemma 4 feature: PLE, kv sharing,
global head dim, partial RoPE, soft-caps) with a sliding window of 6 (>= an image's 4 tokens,
< T), use_vision_bidirectional_attention on, and the tiny vision encoder of
make_vision4_fixture.py projecting into its width 32. Batch of 2 rows of T = 14: row 0 holds one
image (4 placeholder tokens at 3..6), row 1 none (vision_indices padded with 0, as the
preprocessor does). Weights random (norm scales near 1). Written to tests/fixtures/gemma4_mm.h5:

  /config                attributes: the backbone config (KerasHub names), image_token_id,
                         vision_* (the encoder config), kerashub_param_count
  /inputs/token_ids      int32 [2, 14] (the image placeholder id at image positions)
  /inputs/padding_mask   int32 [2, 14];  /inputs/vision_mask int32 [2, 14]
  /inputs/pixels         float32 [1, 36, 48] (row 0's image); /inputs/positions int32 [1, 36, 2]
  /weights/<name>        the decoder's weights in make_gemma4_fixture.py's layout and names, the
                         encoder's under vision/<name> in make_vision4_fixture.py's
  /expected/logits       float32 [2, 14, V] (Gemma4CausalLM's logits)
  /expected/logits_causal float32: the same backbone without vision bidirectional attention
  /expected/seed         float32 [2, 14, V]: R (zero on padding) of the scalar sum(logits * R)
  /expected/grads/<name> float32: its gradient for every trainable weight (bidirectional model;
                         decoder names as in /weights, encoder ones as vision/<name>)

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma4_mm_fixture.py
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h5py  # noqa: E402
import jax  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from keras_hub.src.models.gemma4.gemma4_vision_encoder import Gemma4VisionEncoder  # noqa: E402
from make_gemma4_fixture import SPEC, named_variables, to_ours  # noqa: E402
from make_vision4_fixture import CFG as VCFG  # noqa: E402
from make_vision4_fixture import named as vision_named  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
B, T, IMG_TOK, START = 2, 14, 60, 3


def build(bidir, rng_seed=18):
    spec = dict(SPEC, sliding_window_size=6)
    venc = Gemma4VisionEncoder(dtype="float32", **dict(VCFG, output_dim=spec["hidden_dim"]))
    bb = keras_hub.models.Gemma4Backbone(**spec, vision_encoder=venc,
                                         use_vision_bidirectional_attention=bidir, dtype="float32")
    rng = np.random.default_rng(rng_seed)
    text = named_variables(bb)
    vis = vision_named(venc)
    for path, var in text:
        if path.endswith("layer_scalar"):
            val = rng.uniform(0.5, 1.5, var.shape)
        elif path.endswith("scale"):
            val = 1.0 + rng.normal(0, 0.3, var.shape)
        else:
            val = rng.normal(0, 0.5, var.shape)
        var.assign(val.astype("float32"))
    for name, v, _ in vis:
        if isinstance(v, list):
            continue  # clip bounds keep their fp16-range defaults
        if name.endswith("norm"):
            v.assign(rng.uniform(0.6, 1.4, v.shape).astype("float32"))
        else:
            v.assign((rng.standard_normal(v.shape) * 0.3).astype("float32"))
    return bb, spec, text, vis


def inputs_for(rng):
    V = SPEC["vocabulary_size"]
    ids = rng.integers(1, V - 1, (B, T)).astype("int32")
    ids[ids == IMG_TOK] = 1
    vmask = np.zeros((B, T), "int32")
    vmask[0, START:START + 4] = 1
    ids[vmask == 1] = IMG_TOK
    pad = np.ones((B, T), "int32")
    pad[1, T - 2:] = 0
    ids[1, T - 2:] = 0
    vidx = np.zeros((B, 4), "int32")
    vidx[0] = np.arange(START, START + 4)
    pix = np.zeros((B, 1, 36, 48), "float32")
    pix[0, 0] = rng.uniform(0, 1, (36, 48))
    g = 6
    pos = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="xy"), -1).reshape(36, 2)
    pos = np.broadcast_to(pos, (B, 1, 36, 2)).astype("int32").copy()
    return {"token_ids": ids, "padding_mask": pad,
            "position_ids": np.tile(np.arange(T, dtype="int32"), (B, 1)),
            "pixel_values": pix, "pixel_position_ids": pos, "vision_indices": vidx,
            "vision_mask": vmask}


def grads_of(lm, inp, seed):
    """d sum(logits * seed) / d every trainable variable of lm, by id of the variable."""
    import jax.numpy as jnp

    tv = [v.value for v in lm.trainable_variables]
    ntv = [v.value for v in lm.non_trainable_variables]

    def loss(tv):
        z, _ = lm.stateless_call(tv, ntv, inp)
        return jnp.sum(z * seed)

    g = jax.grad(loss)(tv)
    return {id(v): np.asarray(x) for v, x in zip(lm.trainable_variables, g)}


def main():
    bb, spec, text, vis = build(True)
    inp = inputs_for(np.random.default_rng(5))
    lm = keras_hub.models.Gemma4CausalLM(backbone=bb, preprocessor=None)
    logits = np.asarray(lm(inp))
    rng = np.random.default_rng(6)
    seed = (rng.standard_normal(logits.shape) * inp["padding_mask"][..., None]).astype("float32")
    grads = grads_of(lm, inp, seed)
    bb2, _, _, _ = build(False)
    logits_causal = np.asarray(keras_hub.models.Gemma4CausalLM(backbone=bb2, preprocessor=None)(inp))
    assert np.abs(logits - logits_causal).max() > 1e-3  # the bidirectional rule matters
    path = os.path.join(OUT, "gemma4_mm.h5")
    with h5py.File(path, "w") as f:
        c = f.create_group("config")
        c.attrs["generation"] = 4
        c.attrs["kerashub_param_count"] = int(bb.count_params())
        c.attrs["image_token_id"] = IMG_TOK
        for k, v in spec.items():
            if v is not None:
                c.attrs[k] = int(v) if isinstance(v, bool) else v
        for k, v in VCFG.items():
            c.attrs["vision_" + k] = int(v) if isinstance(v, bool) else v
        g = f.create_group("inputs")
        for k in ("token_ids", "padding_mask", "vision_mask"):
            g[k] = inp[k]
        g["pixels"] = inp["pixel_values"][:1, 0]
        g["positions"] = inp["pixel_position_ids"][:1, 0]
        w = f.create_group("weights")
        for p, var in text:
            w[p] = to_ours(p, np.asarray(var.value)).astype("float32")
        for name, v, fn in vis:
            fn = fn or (lambda a: a)
            if isinstance(v, list):
                w["vision/" + name] = np.array([float(x.numpy()) for x in v], dtype="float32")
            else:
                w["vision/" + name] = fn(np.asarray(v.numpy())).astype("float32")
        f["expected/logits"] = logits.astype("float32")
        f["expected/logits_causal"] = logits_causal.astype("float32")
        f["expected/seed"] = seed
        for p, var in text:
            if var.trainable:
                f["expected/grads/" + p] = to_ours(p, grads[id(var)]).astype("float32")
        for name, v, fn in vis:
            if not isinstance(v, list):
                f["expected/grads/vision/" + name] = (fn or (lambda a: a))(grads[id(v)]).astype("float32")
    print(f"wrote {path}: max|logit| {np.abs(logits).max():.3f}, "
          f"bidir vs causal {np.abs(logits - logits_causal).max():.3g}, {bb.count_params()} params")


if __name__ == "__main__":
    main()
