#!/usr/bin/env python3
"""Golden fixture for the Gemma 3 vision encoder: a tiny random KerasHub Gemma3VisionEncoder
(JAX backend, fp32, highest matmul precision).

image_size 16, patch 4 (a 4 x 4 grid), 2 layers, hidden 8, 2 heads, intermediate 12,
output_dim 6, pool 2 (4 tokens per image), layer_norm_epsilon 1e-6; every variable drawn from
a normal distribution (LayerNorm gammas and the RMSNorm scale too, so that no 1 or 0 hides a
mistake). Three images in [-1, 1]. Written to tests/fixtures/vision.h5:

  /config (attrs)                image_size, patch_size, num_layers, hidden_dim, num_heads,
                                 intermediate_dim, output_dim, pool_size, layer_norm_epsilon
  /weights/<keras path>          in our layout: dense kernels (out, in); the patch kernel
                                 (hidden, p*p*3) from Keras' (p, p, 3, hidden)
  /inputs/images                 [3, 16, 16, 3]
  /expected/output               [3, 4, 6]
  /expected/seed                 [3, 4, 6] R of the scalar loss sum(output * R)
  /expected/grads/<keras path>   d loss / d weight, in our layout

Run: KERAS_BACKEND=jax python3 tools/reference/make_vision_fixture.py
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

jax.config.update("jax_default_matmul_precision", "highest")

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "vision.h5")
CFG = dict(image_size=16, patch_size=4, num_layers=2, hidden_dim=8, num_heads=2,
           intermediate_dim=12, output_dim=6, pool_size=2, layer_norm_epsilon=1e-6)


def our_layout(path, value):
    if path.endswith("embedding_conv/kernel"):  # (p, p, 3, D) -> (D, p*p*3)
        return value.reshape(-1, value.shape[-1]).T
    if path.endswith("/kernel"):  # Dense (in, out) -> (out, in)
        return value.T
    return value


def main():
    keras.utils.set_random_seed(3)
    enc = keras_hub.models.Gemma3VisionEncoder(**CFG, dtype="float32")
    rng = np.random.default_rng(11)
    variables = enc.trainable_variables
    for var in variables:
        std = 0.3 if var.path.endswith(("gamma", "beta", "scale", "bias")) else 0.5
        val = rng.normal(0, std, var.shape)
        if var.path.endswith("gamma"):
            val += 1.0
        var.assign(val.astype("float32"))
    images = rng.uniform(-1, 1, (3, 16, 16, 3)).astype("float32")
    out = np.asarray(enc(images[None]))  # (batch 1, 3 images) -> (3, tokens, output_dim)
    seed = rng.normal(0, 1, out.shape).astype("float32")

    def loss(tv):
        y, _ = enc.stateless_call(tv, [v.value for v in enc.non_trainable_variables],
                                  jnp.asarray(images[None]))
        return jnp.sum(y * seed)

    grads = jax.grad(loss)([v.value for v in variables])
    with h5py.File(OUT, "w") as f:
        g = f.create_group("config")
        for k, v in CFG.items():
            g.attrs[k] = v
        for var, gr in zip(variables, grads):
            key = var.path  # image_encoder/... or vision_output_encoder/...
            assert key.split("/")[0] in ("image_encoder", "vision_output_encoder"), key
            f[f"weights/{key}"] = our_layout(key, np.asarray(var.value)).astype("float32")
            f[f"expected/grads/{key}"] = our_layout(key, np.asarray(gr)).astype("float32")
            print(key, var.shape)
        f["inputs/images"] = images
        f["expected/output"] = out.astype("float32")
        f["expected/seed"] = seed
    print("output", out.shape, "max", np.abs(out).max(), "wrote", OUT)


if __name__ == "__main__":
    main()
