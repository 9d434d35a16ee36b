#!/usr/bin/env python3
"""Golden fixture for Gemma 3 with images: a tiny random KerasHub Gemma3Backbone with a tiny
Gemma3VisionEncoder (JAX backend, fp32), on a batch mixing 0, 1 and 2 images with padding.

The decoder is make_gemma_fixtures.py's gemma3 config (7 layers, sliding window 3: the window
cuts the 4-token image spans on local layers, layer 5 is global) with image_size 16; the encoder
is make_vision_fixture.py's (patch 4, pool 2: 4 soft tokens per image) with output_dim = 32.
Rows (T = 14): row 0 text only with right padding; row 1 one image at 3..6, padded; row 2 two
images at 2..5 and 8..11. Written to tests/fixtures/gemma3_mm.h5:

  /config, /weights/<name>            the decoder as in make_gemma_fixtures.py
  /vision_config, /vision_weights/<keras path>   the encoder as in make_vision_fixture.py
  /inputs/token_ids, padding_mask, vision_mask, labels (int32 [B, T]), sample_weight
  /inputs/images          [3, 16, 16, 3] the real images in order (row 1's, row 2's two)
  /inputs/vision_pos      [12] int32 flat positions b*T + t of their soft tokens, in order
  /expected/logits [B, T, V], /expected/loss (sum(w ce) / (B T))
  /expected/grads/<name>, /expected/vision_grads/<keras path>   d loss / d weight, our layout
and the same backbone as a KerasHub preset (config.json, metadata.json, model.weights.h5) in
tests/fixtures/presets/gemma3_mm/.

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma3_mm_fixture.py
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import make_gemma_fixtures as dec  # noqa: E402
import make_vision_fixture as vis  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
OUT = os.path.join(dec.OUT, "gemma3_mm.h5")
B, T, TOK = 3, 14, 4
SPANS = [[], [3], [2, 8]]  # image start positions per row


def build():
    keras.utils.set_random_seed(7)
    spec = dict(dec.CONFIGS["gemma3"])
    spec.pop("cls"), spec.pop("generation")
    vcfg = dict(vis.CFG, output_dim=spec["hidden_dim"])
    spec["image_size"] = vcfg["image_size"]
    enc = keras_hub.models.Gemma3VisionEncoder(**vcfg, dtype="float32")
    backbone = keras_hub.models.Gemma3Backbone(**spec, vision_encoder=enc, dtype="float32")
    rng = np.random.default_rng(2024)
    named = dec.named_variables(backbone, spec["num_layers"], spec)
    for path, var in named:
        std = 0.3 if path.endswith("scale") else 0.5
        var.assign(rng.normal(0, std, var.shape).astype("float32"))
    vnamed = [(v.path, v) for v in enc.trainable_variables]
    for path, var in vnamed:
        assert path.split("/")[0] in ("image_encoder", "vision_output_encoder"), path
        std = 0.3 if path.endswith(("gamma", "beta", "scale", "bias")) else 0.5
        val = rng.normal(0, std, var.shape) + (1.0 if path.endswith("gamma") else 0.0)
        var.assign(val.astype("float32"))
    assert len(named) + len(vnamed) == len(backbone.trainable_variables)
    return spec, vcfg, backbone, named, vnamed, rng


def make_inputs(spec, rng):
    V, S = spec["vocabulary_size"], spec["image_size"]
    token_ids = rng.integers(1, V, (B, T)).astype("int32")
    padding_mask = np.ones((B, T), "int32")
    padding_mask[0, T - 4:] = 0
    padding_mask[1, T - 2:] = 0
    token_ids[padding_mask == 0] = 0
    vision_mask = np.zeros((B, T), "int32")
    vision_indices = np.zeros((B, 2 * TOK), "int32")
    images = rng.uniform(-1, 1, (B, 2, S, S, 3)).astype("float32")
    real, pos = [], []
    for b, starts in enumerate(SPANS):
        for k, s0 in enumerate(starts):
            vision_mask[b, s0:s0 + TOK] = 1
            vision_indices[b, k * TOK:(k + 1) * TOK] = np.arange(s0, s0 + TOK)
            real.append(images[b, k])
            pos.extend(b * T + np.arange(s0, s0 + TOK))
    labels = rng.integers(0, V, (B, T)).astype("int32")
    weights = (rng.random((B, T)) < 0.8).astype("float32") * padding_mask
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask, "images": images,
              "vision_indices": vision_indices, "vision_mask": vision_mask}
    return inputs, labels, weights, np.stack(real), np.array(pos, "int32")


def main():
    spec, vcfg, backbone, named, vnamed, rng = build()
    inputs, labels, weights, real, pos = make_inputs(spec, rng)
    allv = named + vnamed
    index = {id(v): i for i, v in enumerate(backbone.trainable_variables)}

    def loss_fn(values):
        tv = [v.value for v in backbone.trainable_variables]
        for (_, v), val in zip(allv, values):
            tv[index[id(v)]] = val
        ntv = [v.value for v in backbone.non_trainable_variables]
        hidden, _ = backbone.stateless_call(tv, ntv, inputs)
        logits = jnp.einsum("btd,vd->btv", hidden, values[0])
        ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[..., None], -1)[..., 0]
        return jnp.sum(weights * ce) / (B * T), logits

    values = [v.value for _, v in allv]
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(values)
    kl = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)(inputs)
    np.testing.assert_allclose(np.asarray(kl), np.asarray(logits), rtol=1e-5, atol=1e-5)
    with h5py.File(OUT, "w") as f:
        c = f.create_group("config")
        c.attrs["generation"] = 3
        for k, v in spec.items():
            if v is not None:
                c.attrs[k] = int(v) if isinstance(v, bool) else v
        vc = f.create_group("vision_config")
        for k, v in vcfg.items():
            vc.attrs[k] = v
        for k in ("token_ids", "padding_mask", "vision_mask"):
            f[f"inputs/{k}"] = inputs[k]
        f["inputs/labels"] = labels
        f["inputs/sample_weight"] = weights
        f["inputs/images"] = real
        f["inputs/vision_pos"] = pos
        f["expected/logits"] = np.asarray(logits, "float32")
        f["expected/loss"] = np.float32(loss)
        for (p, _), val, g in zip(named, values, grads):
            f[f"weights/{p}"] = dec.to_ours(p, np.asarray(val)).astype("float32")
            f[f"expected/grads/{p}"] = dec.to_ours(p, np.asarray(g)).astype("float32")
        for (p, _), val, g in zip(vnamed, values[len(named):], grads[len(named):]):
            f[f"vision_weights/{p}"] = vis.our_layout(p, np.asarray(val)).astype("float32")
            f[f"expected/vision_grads/{p}"] = vis.our_layout(p, np.asarray(g)).astype("float32")
    backbone.save_to_preset(os.path.join(dec.OUT, "presets", "gemma3_mm"))
    print(f"{OUT}: loss {float(loss):.6f}, max|logit| {float(np.abs(logits).max()):.3f}, "
          f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
