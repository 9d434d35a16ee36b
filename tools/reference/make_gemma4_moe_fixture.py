#!/usr/bin/env python3
"""Golden fixture for Gemma 4's Mixture-of-Experts feed-forward, computed by KerasHub (JAX, fp32).

A tiny random-weight keras_hub.models.Gemma4Backbone with enable_moe_block=True (the 26B-A4B
layout): every block runs the dense GeGLU MLP and a top-k expert bank in parallel (router on the
raw residual stream, experts on their own pre-norm, each branch with its own post-norm, the sum
through the shared post-FFW norm). 6 experts of width 12, top 2 per token, so routing is sparse;
the rest is a small dense Gemma 4 (pattern 2, window 3, k = v global layers with their own head
dim, partial RoPE, soft-caps). Written to tests/fixtures/gemma4_moe.h5 in the layout of
make_gemma4_fixture.py:

  /config            backbone config attributes (KerasHub names) + generation, kerashub_param_count
  /inputs/...        token_ids, padding_mask, labels int32 [B, T]; sample_weight float32 [B, T]
  /weights/<name>    float32, our layout (linear kernels (out, in); experts [E*I, D] / [E*D, I])
  /expected/logits, loss, weighted_ce_sum, grads/<name>   as make_gemma4_fixture.py
  /expected/router/<layer>  int32 [B*T, k]: each token's chosen experts, best first (eager run)

The backbone is also saved with save_to_preset to tests/fixtures/presets/gemma4_moe/ for the
preset importer's test. Then LoRA (rank 2) goes on all seven targets (attention and the dense
MLP; the experts are not Keras LoRA targets) with random A and B: presets/gemma4_moe.lora.h5
(save_lora_weights, whose layer indices count the MoE sublayers) and /expected/logits_lora. KerasHub and transformers train with no auxiliary (load-balancing) loss:
neither gemma4_moe.py nor modeling_gemma4.py has one, so the loss here is the plain LM loss.

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma4_moe_fixture.py  (keras-hub 0.32)

--check-export DIR: load a preset that gemmatrain exported from tests/fixtures/presets/gemma4_moe
(`gemmatrain convert` of a copy with assets/tokenizer/vocabulary.spm from the Gemma 1 fixture)
with keras_hub.models.Gemma4CausalLM.from_preset, run the fixture's inputs and write /logits to
tests/fixtures/presets/ours_gemma4_moe_keras.h5.
"""
import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from keras_hub.src.models.gemma4 import gemma4_moe  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")

SPEC = dict(vocabulary_size=61, image_size=None, num_layers=4, num_query_heads=4,
            num_key_value_heads=2, hidden_dim=32, intermediate_dim=24, head_dim=8,
            global_head_dim=16, num_global_key_value_heads=1, sliding_window_size=3,
            sliding_window_pattern=2, attention_logit_soft_cap=5.0, final_logit_soft_cap=8.0,
            global_rope_partial_rotary_factor=0.25, enable_moe_block=True, num_experts=6,
            expert_intermediate_dim=12, num_experts_per_token=2)
B, T = 2, 9


def to_ours(path, value):
    """KerasHub variable (path, array) -> our layout."""
    if path.endswith(("query/kernel", "key/kernel", "value/kernel")):
        n, d, h = value.shape
        return value.transpose(0, 2, 1).reshape(n * h, d)
    if path.endswith("attention_output/kernel"):
        n, h, d = value.shape
        return value.reshape(n * h, d).T
    if path.endswith(("gate_proj", "up_proj", "down_proj")):  # (E, in, out) -> [E*out, in]
        e, i, o = value.shape
        return value.transpose(0, 2, 1).reshape(e * o, i)
    if path.endswith("/kernel"):  # Dense (in, out)
        return value.T
    return value


def named_variables(bb):
    """(our name, keras variable) for every weight, in our table order."""
    out = [("token_embedding/embeddings", bb.get_layer("token_embedding").embeddings)]
    for i in range(bb.num_layers):
        blk = bb.get_layer(f"decoder_block_{i}")
        att = blk.attention
        p = f"decoder_block_{i}/"
        out.append((p + "pre_attention_norm/scale", blk.pre_attention_norm.scale))
        out.append((p + "attention/query/kernel", att.query_dense.kernel))
        out.append((p + "attention/key/kernel", att.key_dense.kernel))
        if att.value_dense is not None:
            out.append((p + "attention/value/kernel", att.value_dense.kernel))
        out.append((p + "attention/attention_output/kernel", att.output_dense.kernel))
        out.append((p + "attention/query_norm/scale", att.query_norm.scale))
        out.append((p + "attention/key_norm/scale", att.key_norm.scale))
        out.append((p + "post_attention_norm/scale", blk.post_attention_norm.scale))
        out.append((p + "pre_ffw_norm/scale", blk.pre_ffw_norm.scale))
        out.append((p + "post_ffw_norm/scale", blk.post_ffw_norm.scale))
        out.append((p + "ffw_gating/kernel", blk.gating_ffw.kernel))
        out.append((p + "ffw_gating_2/kernel", blk.gating_ffw_2.kernel))
        out.append((p + "ffw_linear/kernel", blk.ffw_linear.kernel))
        out.append((p + "post_ffw_norm_dense/scale", blk.post_ffw_norm_dense.scale))
        out.append((p + "pre_ffw_norm_moe/scale", blk.pre_ffw_norm_moe.scale))
        out.append((p + "post_ffw_norm_moe_path/scale", blk.post_ffw_norm_moe_path.scale))
        r, e = blk.moe_router, blk.moe_expert_bank
        out.append((p + "moe_router/per_dim_scale", r.per_dim_scale))
        out.append((p + "moe_router/proj/kernel", r.proj.kernel))
        out.append((p + "moe_expert_bank/gate_proj", e.gate_proj))
        out.append((p + "moe_expert_bank/up_proj", e.up_proj))
        out.append((p + "moe_expert_bank/down_proj", e.down_proj))
        out.append((p + "moe_expert_bank/per_expert_scale", e.per_expert_scale))
        out.append((p + "layer_scalar", blk.layer_scalar))
    out.append(("final_normalization/scale", bb.get_layer("final_normalization").scale))
    return out


def record_routing(lm, inputs):
    """Each block's top-k expert choices in an eager call, and the smallest gap between the k-th
    and the (k+1)-th router probability (how far the fixture is from a tie)."""
    got, gaps = [], []
    orig = gemma4_moe.Gemma4Router.call
    k = SPEC["num_experts_per_token"]

    def spy(self, x):
        d = orig(self, x)
        xf = np.asarray(x, "float64").reshape(-1, x.shape[-1])
        n = xf / np.sqrt((xf ** 2).mean(-1, keepdims=True) + 1e-6)
        z = (n * xf.shape[-1] ** -0.5 * np.asarray(self.per_dim_scale.value)) @ np.asarray(self.proj.kernel.value)
        p = np.sort(z, -1)[:, ::-1]
        gaps.append(float((p[:, k - 1] - p[:, k]).min()))
        dw = np.asarray(d)
        got.append(np.argsort(-dw, axis=-1, kind="stable")[:, :k].astype("int32"))
        return d

    gemma4_moe.Gemma4Router.call = spy
    try:
        lm(inputs)
    finally:
        gemma4_moe.Gemma4Router.call = orig
    return got, min(gaps)


def main(seed=4017):
    bb = keras_hub.models.Gemma4Backbone(**SPEC, dtype="float32")
    rng = np.random.default_rng(seed)
    named = named_variables(bb)
    assert len(named) == len(bb.weights), (len(named), len(bb.weights))
    for path, var in named:
        if path.endswith("layer_scalar"):
            val = rng.uniform(0.5, 1.5, var.shape)
        elif path.endswith(("scale", "per_dim_scale", "per_expert_scale")):
            val = 1.0 + rng.normal(0, 0.3, var.shape)
        elif path.endswith("proj/kernel"):  # router: spread the logits so top-k has clear gaps
            val = rng.normal(0, 2.0, var.shape)
        else:
            val = rng.normal(0, 0.5, var.shape)
        var.assign(val.astype("float32"))

    V = SPEC["vocabulary_size"]
    token_ids = rng.integers(0, V, (B, T)).astype("int32")
    padding_mask = np.ones((B, T), "int32")
    padding_mask[1, T - 3:] = 0
    token_ids[1, T - 3:] = 0
    position_ids = np.tile(np.arange(T, dtype="int32"), (B, 1))
    labels = rng.integers(0, V, (B, T)).astype("int32")
    weights = (rng.random((B, T)) < 0.7).astype("float32") * padding_mask
    weights[0, 0] = 0.0
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask, "position_ids": position_ids}

    trainable = [(p, v) for p, v in named if v.trainable]
    var_index = {id(v): i for i, v in enumerate(bb.trainable_variables)}
    assert len(trainable) == len(bb.trainable_variables)
    ntv = [v.value for v in bb.non_trainable_variables]
    cap = SPEC["final_logit_soft_cap"]

    def loss_fn(values):
        tv = [v.value for v in bb.trainable_variables]
        for (_, v), val in zip(trainable, values):
            tv[var_index[id(v)]] = val
        hidden, _ = bb.stateless_call(tv, ntv, inputs)
        logits = jnp.einsum("btd,vd->btv", hidden, values[0])
        logits = cap * jnp.tanh(logits / cap)
        ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[..., None], -1)[..., 0]
        wsum = jnp.sum(weights * ce)
        return wsum / (B * T), (logits, wsum)

    values = [v.value for _, v in trainable]
    (loss, (logits, wsum)), grads = jax.value_and_grad(loss_fn, has_aux=True)(values)

    lm = keras_hub.models.Gemma4CausalLM(backbone=bb, preprocessor=None)
    kl = lm(inputs)
    np.testing.assert_allclose(np.asarray(kl), np.asarray(logits), rtol=1e-4, atol=1e-4)
    kloss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, kl, sample_weight=weights)
    np.testing.assert_allclose(float(kloss), float(loss), rtol=1e-5)
    routes, gap = record_routing(lm, inputs)
    assert gap > 1e-3, f"router near a tie (gap {gap:.2e}): pick another seed"

    grad_of = {p: g for (p, _), g in zip(trainable, grads)}
    path = os.path.join(OUT, "gemma4_moe.h5")
    with h5py.File(path, "w") as f:
        c = f.create_group("config")
        c.attrs["generation"] = 4
        c.attrs["kerashub_param_count"] = int(bb.count_params())
        for k, v in SPEC.items():
            if v is not None:
                c.attrs[k] = int(v) if isinstance(v, bool) else v
        g = f.create_group("inputs")
        g["token_ids"] = token_ids
        g["padding_mask"] = padding_mask
        g["labels"] = labels
        g["sample_weight"] = weights
        w = f.create_group("weights")
        for p, var in named:
            w[p] = to_ours(p, np.asarray(var.value)).astype("float32")
        e = f.create_group("expected")
        e["logits"] = np.asarray(logits, "float32")
        e["loss"] = np.float32(loss)
        e["weighted_ce_sum"] = np.float32(wsum)
        gg = e.create_group("grads")
        for p, gv in grad_of.items():
            gg[p] = to_ours(p, np.asarray(gv)).astype("float32")
        r = e.create_group("router")
        for i, idx in enumerate(routes):
            r[str(i)] = idx
    preset = os.path.join(OUT, "presets", "gemma4_moe")
    shutil.rmtree(preset, ignore_errors=True)
    bb.save_to_preset(preset)
    print(f"{path}: loss {float(loss):.6f}, max|logit| {float(np.abs(logits).max()):.3f}, "
          f"{bb.count_params()} params, smallest router gap {gap:.3g}")
    bb.enable_lora(2, target_layer_names=TARGETS)
    for layer in bb._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            layer.lora_kernel_a.assign(rng.normal(0, 0.3, layer.lora_kernel_a.shape).astype("float32"))
            layer.lora_kernel_b.assign(rng.normal(0, 0.3, layer.lora_kernel_b.shape).astype("float32"))
    lora_logits = np.asarray(lm(inputs), "float32")
    bb.save_lora_weights(os.path.join(OUT, "presets", "gemma4_moe.lora.h5"))
    with h5py.File(path, "a") as f:
        f["expected/logits_lora"] = lora_logits
    print(f"LoRA: {len(bb._lora_enabled_layers)} adapters, max|logit| {np.abs(lora_logits).max():.3f}")


TARGETS = ["query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear"]


def check_export(d):
    lm = keras_hub.models.Gemma4CausalLM.from_preset(d)
    with h5py.File(os.path.join(OUT, "gemma4_moe.h5")) as f:
        token_ids, padding_mask = f["inputs/token_ids"][()], f["inputs/padding_mask"][()]
        want = f["expected/logits"][()]
    position_ids = np.tile(np.arange(token_ids.shape[1], dtype="int32"), (token_ids.shape[0], 1))
    logits = np.asarray(lm({"token_ids": token_ids, "padding_mask": padding_mask,
                            "position_ids": position_ids}), "float32")
    out = os.path.join(OUT, "presets", "ours_gemma4_moe_keras.h5")
    with h5py.File(out, "w") as f:
        f["logits"] = logits
    print(f"{d}: keras_hub's logits vs the fixture {np.abs(logits - want).max() / np.abs(want).max():.2e} x max; "
          f"wrote {out}")


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2])
    else:
        main()
