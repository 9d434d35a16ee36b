#!/usr/bin/env python3
"""Golden fixture for Gemma 4's vision encoder, computed by KerasHub 0.32 (JAX backend, fp32).

A tiny random keras_hub.models.Gemma4VisionEncoder (24 x 24 images, 4 x 4 patches = a 6 x 6 grid,
width 16, 2 query heads sharing 1 key/value head of 8, FFW 24, 2 blocks, pool 3 -> 4 tokens,
output_dim 10, position tables of 8, clipped linears) with every weight random (RMS scales near
1) and layer 0's ffw_gating clipped tightly enough to bend. Batch of 4 images, positions x =
column, y = row (the converter's grid); images 0-2 fill the 6 x 6 grid, image 3 is a 6 x 3 grid
followed by 18 padding patches (position -1, pixels 0, as Gemma4ImageConverter pads). Written to tests/fixtures/vision4.h5:

  /config                attributes: the encoder config (KerasHub names); param_count;
                         count_gemma4_2b, count_gemma4_4b: count_params of the E2B/E4B vision
                         towers as KerasHub's converter builds them from HF's Gemma4VisionConfig
                         defaults (image 896, clipped linears, output_dim = text width 1536/2560)
  /inputs/pixels         float32 [4, 36, 48]: patches in [0, 1] (KerasHub's pixel_values)
  /inputs/positions      int32 [4, 36, 2]: (x, y) of each patch
  /weights/<name>        float32, our names (models/vision4.c): attention kernels as [D, N*H]
                         (query/key/value) and [N*H, D] (output); clips [4]
  /expected/output       float32 [4, 4, 10]
  /expected/seed         float32 [4, 4, 10]: R of the scalar loss sum(output * R)
  /expected/grads/<name> float32: d loss / d weight for every trainable weight (our layouts)

Run: KERAS_BACKEND=jax python3 tools/reference/make_vision4_fixture.py
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from keras_hub.src.models.gemma4.gemma4_vision_encoder import Gemma4VisionEncoder  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CFG = dict(image_size=24, patch_size=4, num_heads=2, hidden_dim=16, num_layers=2,
           intermediate_dim=24, head_dim=8, output_dim=10, num_key_value_heads=1, pool_size=3,
           position_embedding_size=8, rope_max_wavelength=100.0, layer_norm_epsilon=1e-6,
           use_clipped_linears=True)


def qkv():  # [N, D, H] -> [D, N*H]
    return lambda a: np.transpose(a, (1, 0, 2)).reshape(a.shape[1], -1)


def named(enc):
    """(our name, keras variable or clip list, layout fn) in models/vision4.c's order."""
    ie = enc.get_layer("image_encoder")
    out = [("patch.proj", ie.patch_embedder.input_proj.kernel, None),
           ("patch.pos", ie.patch_embedder.position_embedding_table, None)]

    def dense(p, d, fn=None):
        clip = [d.input_min, d.input_max, d.output_min, d.output_max]
        return [(p, d.dense.kernel, fn), (p + ".clip", clip, None)]

    for i, b in enumerate(ie.encoder_blocks):
        p, a = f"block_{i}", b.attention
        out += [(p + ".pre_attn_norm", b.pre_attention_norm.scale, None)]
        out += dense(p + ".q", a.query_dense, qkv()) + [(p + ".q_norm", a.query_norm.scale, None)]
        out += dense(p + ".k", a.key_dense, qkv()) + [(p + ".k_norm", a.key_norm.scale, None)]
        out += dense(p + ".v", a.value_dense, qkv())
        out += dense(p + ".o", a.output_dense, lambda x: x.reshape(-1, x.shape[-1]))
        out += [(p + ".post_attn_norm", b.post_attention_norm.scale, None),
                (p + ".pre_ffw_norm", b.pre_ffw_norm.scale, None)]
        out += dense(p + ".gate", b.gating_ffw) + dense(p + ".up", b.gating_ffw_2)
        out += dense(p + ".down", b.ffw_linear) + [(p + ".post_ffw_norm", b.post_ffw_norm.scale, None)]
    vo = enc.get_layer("vision_output_encoder")
    out += [("projection", vo.vision_input_projection.kernel, None)]
    return out


def preset_count(width):
    e = Gemma4VisionEncoder(image_size=896, patch_size=16, num_heads=12, hidden_dim=768,
                            num_layers=16, intermediate_dim=3072, head_dim=64, output_dim=width,
                            num_key_value_heads=12, pool_size=3, position_embedding_size=10240,
                            use_clipped_linears=True)
    return e.count_params()


def main():
    rng = np.random.default_rng(12)
    enc = Gemma4VisionEncoder(dtype="float32", **CFG)
    names = named(enc)
    assert sum(1 if not isinstance(v, list) else 4 for _, v, _ in names) == len(enc.weights)
    for name, v, _ in names:
        if isinstance(v, list):
            tight = name == "block_0.gate.clip"
            bounds = [-1.5, 1.2, -0.8, 0.9] if tight else [-65504.0, 65504.0, -65504.0, 65504.0]
            for var, b in zip(v, bounds):
                var.assign(np.float32(b))
        elif name.endswith("norm"):
            v.assign(rng.uniform(0.6, 1.4, v.shape).astype("float32"))
        elif name == "patch.pos":
            v.assign((rng.standard_normal(v.shape) * 0.5).astype("float32"))
        else:
            fan_in = v.shape[-2] if len(v.shape) == 2 else v.shape[1]
            if name.endswith(".o"):
                fan_in = v.shape[0] * v.shape[1]
            v.assign((rng.standard_normal(v.shape) / np.sqrt(fan_in)).astype("float32"))
    B, P, g = 4, 36, 6
    pix = rng.uniform(0, 1, (B, 1, P, 48)).astype("float32")
    pos = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="xy"), -1).reshape(P, 2)
    pos = np.broadcast_to(pos, (B, 1, P, 2)).astype("int32").copy()
    pos[3, 0, 18:] = -1  # image 3: a 6 x 3 grid padded to 36 patches, as the converter pads
    pix[3, 0, 18:] = 0
    inp = {"pixel_values": pix, "pixel_position_ids": pos}
    out = np.asarray(enc(inp))[:, 0]
    seed = rng.standard_normal(out.shape).astype("float32")
    tv = [v.value for v in enc.trainable_variables]
    ntv = [v.value for v in enc.non_trainable_variables]

    def loss(tv):
        o, _ = enc.stateless_call(tv, ntv, inp)
        return jnp.sum(o[:, 0] * seed)

    grads = jax.grad(loss)(tv)
    gid = {id(v): np.asarray(g) for v, g in zip(enc.trainable_variables, grads)}
    path = os.path.join(ROOT, "tests", "fixtures", "vision4.h5")
    with h5py.File(path, "w") as f:
        c = f.create_group("config")
        for k, val in CFG.items():
            c.attrs[k] = val
        c.attrs["param_count"] = enc.count_params()
        for preset, width in (("gemma4_2b", 1536), ("gemma4_4b", 2560)):
            c.attrs["count_" + preset] = preset_count(width)
        f["inputs/pixels"] = pix[:, 0]
        f["inputs/positions"] = pos[:, 0]
        for name, v, fn in names:
            fn = fn or (lambda a: a)
            if isinstance(v, list):
                f["weights/" + name] = np.array([float(x.numpy()) for x in v], dtype="float32")
                continue
            f["weights/" + name] = fn(np.asarray(v.numpy())).astype("float32")
            if v.trainable:
                f["expected/grads/" + name] = fn(gid[id(v)]).astype("float32")
        f["expected/output"] = out.astype("float32")
        f["expected/seed"] = seed
    print(f"wrote {path}: output max {np.abs(out).max():.3f}, params {enc.count_params()}")


if __name__ == "__main__":
    main()
