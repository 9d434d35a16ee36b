#!/usr/bin/env python3
"""Golden fixture for the Gemma 4 audio encoder, computed by KerasHub 0.32 (JAX backend, fp32).

A tiny random keras_hub.models.Gemma4AudioEncoder (16 mels, width 16, 2 heads, 2 conformer
blocks, chunk 4, context_left 5, kernel 3, SSCP channels (4, 3), output_proj_dims 12, output_dim
10, logit cap 5 so the soft-cap bends) with every weight random, the frozen RMS scales too, and
some clip bounds tight enough to clip (layer 0's ffw_1 output and lconv linear_start input).
Batch of 2 clips of T = 38 frames; the second has 13 valid frames, so after the two stride-2
convs (38 -> 19 -> 10 steps) it has 4 valid steps and its steps 7..9 see no valid key.
Written to tests/fixtures/audio_encoder.h5:

  /config               attributes: the encoder config (KerasHub names; the channel pair as
                        sscp_conv_channels_0/1);
                        param_count (count_params), trainable_count;
                        count_gemma4_2b, count_gemma4_4b: count_params of the E2B/E4B audio
                        tower (KerasHub/HF defaults, output_dim = text width 1536 / 2560)
  /inputs/mel           float32 [B, T, 16];  /inputs/mask int32 [B, T] (1 = valid frame)
  /weights/<name>       float32, our names (models/audio.c), KerasHub layouts; clips [4]
  /expected/output      float32 [B, 10, 10]
  /expected/seed        float32 [B, 10, 10]: R of the scalar loss sum(output * R)
  /expected/grads/<name> float32: d loss / d weight for every trainable weight

Run: KERAS_BACKEND=jax python3 tools/reference/make_audio_encoder_fixture.py
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from keras_hub.src.models.gemma4.gemma4_audio_encoder import Gemma4AudioEncoder  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CFG = dict(input_feat_size=16, hidden_size=16, num_heads=2, num_layers=2, chunk_size=4,
           context_left=5, context_right=0, logit_cap=5.0, conv_kernel_size=3,
           sscp_conv_channels=(4, 3), output_proj_dims=12, output_dim=10)


def named(enc):
    """(our name, keras variable) for every weight, in models/audio.c's order."""
    out = []
    s = enc.subsample_conv_projection
    out += [("sscp.conv_0", s.conv_0.conv.kernel), ("sscp.norm_0", s.conv_0.norm.gamma),
            ("sscp.conv_1", s.conv_1.conv.kernel), ("sscp.norm_1", s.conv_1.norm.gamma),
            ("sscp.input_proj", s.input_proj.kernel)]

    def dense(p, d):
        clip = [d.input_min, d.input_max, d.output_min, d.output_max]
        return [(p, d.dense.kernel), (p + ".clip", clip)]

    for i, b in enumerate(enc.conformer_blocks):
        for e, f in (("ffw_start", b.ffw_start), ("ffw_end", b.ffw_end)):
            p = f"conformer_{i}.{e}"
            out += [(p + ".pre_norm", f.pre_norm.scale)] + dense(p + ".ffw_1", f.ffw_1)
            out += dense(p + ".ffw_2", f.ffw_2) + [(p + ".post_norm", f.post_norm.scale)]
            if e == "ffw_end":
                break
            a, p = b.attention, f"conformer_{i}.attn"
            out += [(p + ".pre_norm", a.pre_attn_norm.scale),
                    (p + ".per_dim_scale", a.attn.per_dim_scale)]
            out += dense(p + ".q", a.attn.q_proj) + dense(p + ".k", a.attn.k_proj)
            out += dense(p + ".v", a.attn.v_proj) + [(p + ".pos_proj", a.attn.rpe.pos_proj)]
            out += dense(p + ".out_proj", a.out_proj) + [(p + ".post_norm", a.post_norm.scale)]
            lc, p = b.lconv, f"conformer_{i}.lconv"
            out += [(p + ".pre_norm", lc.pre_norm.scale)] + dense(p + ".linear_start", lc.linear_start)
            out += [(p + ".depthwise", lc.depthwise_conv.kernel), (p + ".conv_norm", lc.conv_norm.scale)]
            out += dense(p + ".linear_end", lc.linear_end)
        out += [(f"conformer_{i}.norm", b.norm.scale)]
    out += [("output_proj.kernel", enc.output_proj.kernel), ("output_proj.bias", enc.output_proj.bias),
            ("audio_output_projection", enc.audio_output_projection.kernel)]
    return out


def count(enc):
    return sum(int(np.prod(v.shape)) for v in enc.weights)


def main():
    rng = np.random.default_rng(11)
    enc = Gemma4AudioEncoder(dtype="float32", **CFG)
    enc.build(None)
    names = named(enc)
    assert sum(1 if not isinstance(v, list) else 4 for _, v in names) == len(enc.weights)
    for name, v in names:
        if isinstance(v, list):
            tight = name in ("conformer_0.ffw_start.ffw_1.clip", "conformer_0.lconv.linear_start.clip")
            lo_in, hi_in = (-1.5, 1.2) if tight else (-65504.0, 65504.0)
            bounds = [lo_in, hi_in, -0.8 if tight else -65504.0, 0.9 if tight else 65504.0]
            for var, b in zip(v, bounds):
                var.assign(np.float32(b))
        elif name.endswith(("norm", "norm_0", "norm_1")) or ".pre_norm" in name or ".post_norm" in name:
            v.assign(rng.uniform(0.6, 1.4, v.shape).astype("float32"))
        else:
            v.assign((rng.standard_normal(v.shape) * (0.5 if "per_dim" in name or "bias" in name
                                                        else 1.0 / np.sqrt(v.shape[0]))).astype("float32"))
    B, T = 2, 38
    mel = rng.standard_normal((B, T, CFG["input_feat_size"])).astype("float32")
    mask = np.ones((B, T), dtype="int32")
    mask[1, 13:] = 0
    out = np.asarray(enc(mel, mask.astype(bool)))
    seed = rng.standard_normal(out.shape).astype("float32")

    tv = [v.value for v in enc.trainable_variables]
    ntv = [v.value for v in enc.non_trainable_variables]

    def loss(tv):
        o, _ = enc.stateless_call(tv, ntv, mel, mask.astype(bool))
        return jnp.sum(o * seed)

    grads = jax.grad(loss)(tv)
    gid = {id(v): g for v, g in zip(enc.trainable_variables, grads)}
    counts = {}
    for preset, width in (("gemma4_2b", 1536), ("gemma4_4b", 2560)):
        e = Gemma4AudioEncoder(output_dim=width)
        e.build(None)
        counts[preset] = count(e)
    path = os.path.join(ROOT, "tests", "fixtures", "audio_encoder.h5")
    with h5py.File(path, "w") as f:
        cfg = f.create_group("config")
        for k, v in enc.get_config().items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                cfg.attrs[k] = v
        cfg.attrs["sscp_conv_channels_0"], cfg.attrs["sscp_conv_channels_1"] = CFG["sscp_conv_channels"]
        cfg.attrs["param_count"] = count(enc)
        cfg.attrs["trainable_count"] = sum(int(np.prod(v.shape)) for v in enc.trainable_weights)
        for k, v in counts.items():
            cfg.attrs["count_" + k] = v
        f["inputs/mel"] = mel
        f["inputs/mask"] = mask
        for name, v in names:
            if isinstance(v, list):
                f["weights/" + name] = np.array([float(x.numpy()) for x in v], dtype="float32")
                continue
            w = np.asarray(v.numpy(), dtype="float32")
            if name.endswith(".depthwise"):
                w = w.reshape(w.shape[0], w.shape[1])
            f["weights/" + name] = w
            if v.trainable:
                g = np.asarray(gid[id(v)], dtype="float32")
                f["expected/grads/" + name] = g.reshape(w.shape)
        f["expected/output"] = out
        f["expected/seed"] = seed
    print("output", out.shape, "max |out|", np.abs(out).max(), "counts", counts,
          "tiny", count(enc))


if __name__ == "__main__":
    main()
