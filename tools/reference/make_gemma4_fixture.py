#!/usr/bin/env python3
"""Golden fixture for the Gemma 4 text decoder, computed by KerasHub (JAX backend, fp32).

A tiny random-weight keras_hub.models.Gemma4Backbone (text only) that exercises every dense
Gemma 4 feature at once:
  - 3-layer pattern (layers 2 and 5 global, the rest local), sliding window 3 < T;
  - global layers with their own head dim (16 vs 8), one kv head and k = v (no value kernel),
    partial RoPE (factor 0.25 -> 4 of 16 dims rotate) on base 1e6 with linear scaling 2;
  - q/k norms, scale-free v norm, attention scale 1, attention and final soft-caps;
  - the last 3 layers share k/v (layer 5 <- 2, layers 6, 7 <- 4) with a double-wide MLP;
  - per-layer embeddings (PLE, P = 4) and a random non-trainable layer_scalar per block.
Written to tests/fixtures/gemma4.h5 in the layout of make_gemma_fixtures.py:

  /config            attributes: the backbone config (KerasHub names) + generation,
                     kerashub_param_count (backbone.count_params())
  /inputs/token_ids, padding_mask, labels int32 [B, T]; sample_weight float32 [B, T]
  /weights/<name>    float32, our layout: KerasHub variable path, linear kernels as (out, in)
  /expected/logits   float32 [B, T, V]; /expected/loss (sum(w * ce) / (B * T)); weighted_ce_sum
  /expected/grads/<name> float32: d loss / d weight for every trainable weight (not layer_scalar)

The same backbone is saved with Backbone.save_to_preset to tests/fixtures/presets/gemma4/
(config.json, model.weights.h5, metadata.json) for the KerasHub preset importer's test, and
the weights of a bfloat16 copy to tests/fixtures/presets/gemma4_bf16.weights.h5. Then
LoRA (rank 2) is enabled on all seven targets with random A and B: tests/fixtures/presets/
gemma4.lora.h5 (backbone.save_lora_weights) and /expected/logits_lora in gemma4.h5 (task call).
The Keras layer index of every adapter is checked against models/io/keras_lora.c's Gemma 4 formula,
also for a variant without per-layer embeddings.

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma4_fixture.py  (keras-hub 0.32, jax, h5py)

--check-export DIR OUT.h5: load a preset directory that gemmatrain exported from
tests/fixtures/presets/gemma4 (with a tokenizer: see tests/test_gemma4_parity.c) with
keras_hub.models.Gemma4CausalLM.from_preset, run it on the fixture's inputs and write /logits and the
attribute class_name to OUT.h5 (committed as tests/fixtures/presets/ours_gemma4_keras.h5).
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

jax.config.update("jax_default_matmul_precision", "highest")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")

SPEC = dict(vocabulary_size=61, image_size=None, num_layers=8, num_query_heads=4,
            num_key_value_heads=2, hidden_dim=32, intermediate_dim=24, head_dim=8,
            global_head_dim=16, num_global_key_value_heads=1, sliding_window_size=3,
            sliding_window_pattern=3, attention_logit_soft_cap=5.0, final_logit_soft_cap=8.0,
            global_rope_partial_rotary_factor=0.25, global_rope_scaling_factor=2.0,
            num_kv_shared_layers=3, use_double_wide_mlp=True, hidden_size_per_layer_input=4,
            vocab_size_per_layer_input=61)
B, T = 2, 9


def to_ours(path, value):
    """KerasHub variable (path, array) -> our layout."""
    if path.endswith(("query/kernel", "key/kernel", "value/kernel")):
        n, d, h = value.shape
        return value.transpose(0, 2, 1).reshape(n * h, d)
    if path.endswith("attention_output/kernel"):
        n, h, d = value.shape
        return value.reshape(n * h, d).T
    if path.endswith("/kernel"):  # ffw_*, per_layer_* Dense / EinsumDense (in, out)
        return value.T
    return value


def named_variables(bb):
    """(our name, keras variable) for every weight, in our table order."""
    out = [("token_embedding/embeddings", bb.get_layer("token_embedding").embeddings)]
    if bb.hidden_size_per_layer_input > 0:
        out.append(("per_layer_token_embedding/embeddings", bb.per_layer_token_embedding.embeddings))
        out.append(("per_layer_model_projection/kernel", bb.per_layer_model_projection.kernel))
        out.append(("per_layer_projection_norm/scale", bb.per_layer_projection_norm.scale))
    for i in range(bb.num_layers):
        blk = bb.get_layer(f"decoder_block_{i}")
        att = blk.attention
        p = f"decoder_block_{i}/"
        out.append((p + "pre_attention_norm/scale", blk.pre_attention_norm.scale))
        out.append((p + "attention/query/kernel", att.query_dense.kernel))
        if att.key_dense is not None:
            out.append((p + "attention/key/kernel", att.key_dense.kernel))
        if att.value_dense is not None:
            out.append((p + "attention/value/kernel", att.value_dense.kernel))
        out.append((p + "attention/attention_output/kernel", att.output_dense.kernel))
        out.append((p + "attention/query_norm/scale", att.query_norm.scale))
        if att.key_norm is not None:
            out.append((p + "attention/key_norm/scale", att.key_norm.scale))
        out.append((p + "post_attention_norm/scale", blk.post_attention_norm.scale))
        out.append((p + "pre_ffw_norm/scale", blk.pre_ffw_norm.scale))
        out.append((p + "post_ffw_norm/scale", blk.post_ffw_norm.scale))
        out.append((p + "ffw_gating/kernel", blk.gating_ffw.kernel))
        out.append((p + "ffw_gating_2/kernel", blk.gating_ffw_2.kernel))
        out.append((p + "ffw_linear/kernel", blk.ffw_linear.kernel))
        if bb.hidden_size_per_layer_input > 0:
            out.append((p + "per_layer_input_gate/kernel", blk.per_layer_input_gate.kernel))
            out.append((p + "per_layer_up_proj/kernel", blk.per_layer_up_proj.kernel))
            out.append((p + "post_per_layer_input_norm/scale", blk.post_per_layer_input_norm.scale))
        out.append((p + "layer_scalar", blk.layer_scalar))
    out.append(("final_normalization/scale", bb.get_layer("final_normalization").scale))
    return out


def main(seed=4004):
    bb = keras_hub.models.Gemma4Backbone(**SPEC, dtype="float32")
    rng = np.random.default_rng(seed)
    named = named_variables(bb)
    assert len(named) == len(bb.weights), (len(named), len(bb.weights))
    for path, var in named:
        if path.endswith("layer_scalar"):
            val = rng.uniform(0.5, 1.5, var.shape)
        elif path.endswith("scale"):  # Gemma 4 norms multiply by the scale itself (init ones)
            val = 1.0 + rng.normal(0, 0.3, var.shape)
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

    # Cross-check the hand-written head and loss against KerasHub's task and Keras' loss.
    lm = keras_hub.models.Gemma4CausalLM(backbone=bb, preprocessor=None)
    kl = lm(inputs)
    # eager (lm) and jitted (grad) XLA paths differ at fp32 rounding level (~5e-6 x max|logit|)
    np.testing.assert_allclose(np.asarray(kl), np.asarray(logits), rtol=1e-4, atol=1e-4)
    kloss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, kl, sample_weight=weights)
    np.testing.assert_allclose(float(kloss), float(loss), rtol=1e-5)

    grad_of = {p: g for (p, _), g in zip(trainable, grads)}
    path = os.path.join(OUT, "gemma4.h5")
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
    preset = os.path.join(OUT, "presets", "gemma4")
    shutil.rmtree(preset, ignore_errors=True)
    bb.save_to_preset(preset)
    # the same weights in a bfloat16 backbone (Keras stores 2-byte opaque data, scalars included)
    bf = keras_hub.models.Gemma4Backbone(**SPEC, dtype="bfloat16")
    src = {w.path: w for w in bb.weights}
    for w in bf.weights:
        w.assign(src[w.path].value.astype("bfloat16"))
    bf.save_weights(os.path.join(OUT, "presets", "gemma4_bf16.weights.h5"))
    print(f"{path}: loss {float(loss):.6f}, max|logit| {float(np.abs(logits).max()):.3f}, "
          f"{bb.count_params()} params")
    make_lora(bb, lm, inputs, rng)


TARGETS = ["query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear"]


def lora_index4(bb, layer, target):
    """models/io/keras_lora.c index4 (kept in sync): Keras layer index of an adapter, or -1."""
    ple = 3 if bb.hidden_size_per_layer_input > 0 else 0

    def kinds(i):
        att = bb.get_layer(f"decoder_block_{i}").attention
        return att.key_dense is not None, att.value_dense is not None

    s = 1 + ple
    for j in range(layer):
        own, value = kinds(j)
        s += 12 + ple + 2 * own + value
    f = s + ple
    own, value = kinds(layer)
    q = f + 9 + 2 * own + value
    return {"ffw_linear": f + 1, "ffw_gating_2": f + 2, "ffw_gating": f + 3, "attention_output": f + 7,
            "value": f + 10 if value else -1, "key": q - 1 if own else -1, "query": q}[target]


def check_lora_indices(bb):
    layers = [lyr for lyr in bb._flatten_layers(include_self=False) if lyr.weights]
    n = 0
    for i in range(bb.num_layers):
        for t in TARGETS:
            idx = lora_index4(bb, i, t)
            if idx < 0:
                continue
            got = layers[idx]
            assert got.name == t and f"decoder_block_{i}/" in got.weights[0].path, (i, t, idx, got.name)
            n += 1
    return n


def make_lora(bb, lm, inputs, rng):
    check_lora_indices(keras_hub.models.Gemma4Backbone(**dict(SPEC, hidden_size_per_layer_input=0),
                                                       dtype="float32"))
    n = check_lora_indices(bb)
    bb.enable_lora(2, target_layer_names=TARGETS)
    assert len(bb._lora_enabled_layers) == n, (len(bb._lora_enabled_layers), n)
    for layer in bb._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            layer.lora_kernel_a.assign(rng.normal(0, 0.3, layer.lora_kernel_a.shape).astype("float32"))
            layer.lora_kernel_b.assign(rng.normal(0, 0.3, layer.lora_kernel_b.shape).astype("float32"))
    logits = np.asarray(lm(inputs), "float32")
    bb.save_lora_weights(os.path.join(OUT, "presets", "gemma4.lora.h5"))
    with h5py.File(os.path.join(OUT, "gemma4.h5"), "a") as f:
        f["expected/logits_lora"] = logits
    print(f"LoRA: {n} adapters, indices match; max|logit| with LoRA {np.abs(logits).max():.3f}")


def check_export(d, out):
    # Gemma4CausalLM explicitly: in this script's import order keras_hub 0.32's generic
    # CausalLM.from_preset picks Gemma4AssistantCausalLM for any Gemma4Backbone preset (KerasHub's
    # own save_to_preset output included) and fails.
    lm = keras_hub.models.Gemma4CausalLM.from_preset(d)
    with h5py.File(os.path.join(OUT, "gemma4.h5")) as f:
        token_ids, padding_mask = f["inputs/token_ids"][()], f["inputs/padding_mask"][()]
        want = f["expected/logits"][()]
    position_ids = np.tile(np.arange(token_ids.shape[1], dtype="int32"), (token_ids.shape[0], 1))
    logits = np.asarray(lm({"token_ids": token_ids, "padding_mask": padding_mask,
                            "position_ids": position_ids}), "float32")
    err = float(np.abs(logits - want).max() / np.abs(want).max())
    with h5py.File(out, "w") as f:
        f["logits"] = logits
        f.attrs["class_name"] = type(lm).__name__
    print(f"{d}: loaded as {type(lm).__name__} ({type(lm.preprocessor).__name__}), logits vs the "
          f"fixture {err:.2e} x max; wrote {out}")


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 4 and sys.argv[1] == "--check-export":
        check_export(sys.argv[2], sys.argv[3])
    else:
        main()
