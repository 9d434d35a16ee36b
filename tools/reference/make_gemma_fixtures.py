#!/usr/bin/env python3
"""Golden fixtures for the Gemma 1/2/3 decoders, computed by KerasHub (JAX backend, fp32).

For each generation: a tiny random-weight backbone built from KerasHub's own classes, a batch of
token ids with right padding, labels and sample weights. Written to tests/fixtures/gemma{1,2,3}.h5:

  /config            attributes: the backbone config (our names)
  /inputs/token_ids  int32 [B, T]          /inputs/padding_mask  int32 [B, T]
  /inputs/labels     int32 [B, T]          /inputs/sample_weight float32 [B, T]
  /weights/<name>    float32, our layout: KerasHub variable path, linear kernels as (out, in)
  /expected/logits   float32 [B, T, V]
  /expected/loss     float32 scalar: KerasHub's sum(w * ce) / (B * T)
  /expected/weighted_ce_sum float32 scalar: sum(w * ce)
  /expected/grads/<name> float32, d loss / d weight in our layout

Run: pip install keras-hub jax h5py; KERAS_BACKEND=jax python3 tools/reference/make_gemma_fixtures.py
Deterministic for a given seed; CI does not run it (the fixtures are committed).
"""
import os
import sys

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

CONFIGS = {
    # Gemma 1: multi-query attention, GeGLU, tied head. KerasHub's intermediate_dim is 2F.
    "gemma1": dict(cls="GemmaBackbone", generation=1, vocabulary_size=61, num_layers=2,
                   num_query_heads=4, num_key_value_heads=1, hidden_dim=32, intermediate_dim=2 * 24,
                   head_dim=8),
    # Gemma 2: GQA, post norms, soft-caps small enough to bend the logits, sliding window 3 < T
    # on even layers, and query_head_dim_normalize=False with D/N != H (KerasHub still uses H).
    "gemma2": dict(cls="GemmaBackbone", generation=2, vocabulary_size=67, num_layers=3,
                   num_query_heads=4, num_key_value_heads=2, hidden_dim=48, intermediate_dim=2 * 20,
                   head_dim=8, query_head_dim_normalize=False, use_post_ffw_norm=True,
                   use_post_attention_norm=True, attention_logit_soft_cap=5.0,
                   final_logit_soft_cap=8.0, use_sliding_window_attention=True,
                   sliding_window_size=3),
    # Gemma 3: QK-norm, 5 local : 1 global (7 layers: 0-4 local, 5 global, 6 local), local and
    # global RoPE bases, global RoPE scaling 8, window 3 < T.
    "gemma3": dict(cls="Gemma3Backbone", generation=3, vocabulary_size=71, image_size=None,
                   num_layers=7, num_query_heads=4, num_key_value_heads=2, hidden_dim=32,
                   intermediate_dim=24, head_dim=8, use_query_key_norm=True,
                   use_post_ffw_norm=True, use_post_attention_norm=True,
                   use_sliding_window_attention=True, sliding_window_size=3,
                   global_rope_scaling_factor=8.0),
}
B, T = 2, 9


def to_ours(path, value):
    """KerasHub variable (path, array) -> our layout."""
    if path.endswith(("query/kernel", "key/kernel", "value/kernel")):
        n, d, h = value.shape
        return value.transpose(0, 2, 1).reshape(n * h, d)
    if path.endswith("attention_output/kernel"):
        n, h, d = value.shape
        return value.reshape(n * h, d).T
    if path.endswith(("ffw_gating/kernel", "ffw_gating_2/kernel", "ffw_linear/kernel")):
        return value.T
    return value


def named_variables(backbone, num_layers, cfg):
    """(our name, keras variable) for every weight, in a fixed order."""
    out = [("token_embedding/embeddings", backbone.get_layer("token_embedding").embeddings)]
    for i in range(num_layers):
        blk = backbone.get_layer(f"decoder_block_{i}")
        p = f"decoder_block_{i}/"
        out.append((p + "pre_attention_norm/scale", blk.pre_attention_norm.scale))
        att = blk.attention
        out.append((p + "attention/query/kernel", att.query_dense.kernel))
        out.append((p + "attention/key/kernel", att.key_dense.kernel))
        out.append((p + "attention/value/kernel", att.value_dense.kernel))
        out.append((p + "attention/attention_output/kernel", att.output_dense.kernel))
        if cfg.get("use_query_key_norm"):
            out.append((p + "attention/query_norm/scale", att.query_norm.scale))
            out.append((p + "attention/key_norm/scale", att.key_norm.scale))
        if cfg.get("use_post_attention_norm"):
            out.append((p + "post_attention_norm/scale", blk.post_attention_norm.scale))
        out.append((p + "pre_ffw_norm/scale", blk.pre_ffw_norm.scale))
        if cfg.get("use_post_ffw_norm"):
            out.append((p + "post_ffw_norm/scale", blk.post_ffw_norm.scale))
        out.append((p + "ffw_gating/kernel", blk.gating_ffw.kernel))
        out.append((p + "ffw_gating_2/kernel", blk.gating_ffw_2.kernel))
        out.append((p + "ffw_linear/kernel", blk.ffw_linear.kernel))
    out.append(("final_normalization/scale", backbone.get_layer("final_normalization").scale))
    return out


def make(name, spec, seed):
    spec = dict(spec)
    cls = getattr(keras_hub.models, spec.pop("cls"))
    generation = spec.pop("generation")
    backbone = cls(**spec, dtype="float32")
    rng = np.random.default_rng(seed)
    named = named_variables(backbone, spec["num_layers"], spec)
    assert len(named) == len(backbone.weights), (len(named), len(backbone.weights))
    for path, var in named:
        std = 0.3 if path.endswith("scale") else 0.5
        var.assign(rng.normal(0, std, var.shape).astype("float32"))

    V = spec["vocabulary_size"]
    token_ids = rng.integers(0, V, (B, T)).astype("int32")
    padding_mask = np.ones((B, T), "int32")
    padding_mask[1, T - 3:] = 0          # right padding, as the preprocessor makes it
    token_ids[1, T - 3:] = 0
    labels = rng.integers(0, V, (B, T)).astype("int32")
    weights = (rng.random((B, T)) < 0.7).astype("float32") * padding_mask
    weights[0, 0] = 0.0

    trainable = [v for _, v in named]
    var_index = {id(v): i for i, v in enumerate(backbone.trainable_variables)}

    def loss_fn(values):
        tv = [v.value for v in backbone.trainable_variables]
        for (_, v), val in zip(named, values):
            tv[var_index[id(v)]] = val
        ntv = [v.value for v in backbone.non_trainable_variables]
        hidden, _ = backbone.stateless_call(
            tv, ntv, {"token_ids": token_ids, "padding_mask": padding_mask})
        emb = values[0]
        logits = jnp.einsum("btd,vd->btv", hidden, emb)
        cap = spec.get("final_logit_soft_cap")
        if cap:
            logits = cap * jnp.tanh(logits / cap)
        ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[..., None], -1)[..., 0]
        wsum = jnp.sum(weights * ce)
        return wsum / (B * T), (logits, wsum)

    values = [v.value for v in trainable]
    (loss, (logits, wsum)), grads = jax.value_and_grad(loss_fn, has_aux=True)(values)

    # Cross-check the hand-written head and loss against KerasHub's task + Keras' loss.
    lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None) \
        if generation == 3 else keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    kl = lm({"token_ids": token_ids, "padding_mask": padding_mask})
    np.testing.assert_allclose(np.asarray(kl), np.asarray(logits), rtol=1e-5, atol=1e-5)
    kloss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, kl, sample_weight=weights)
    np.testing.assert_allclose(float(kloss), float(loss), rtol=1e-6)

    path = os.path.join(OUT, f"{name}.h5")
    with h5py.File(path, "w") as f:
        c = f.create_group("config")
        c.attrs["generation"] = generation
        for k, v in spec.items():
            if v is None:
                continue
            if k == "intermediate_dim" and generation < 3:
                v = v // 2  # our intermediate_dim is per branch
            c.attrs[k] = int(v) if isinstance(v, bool) else v
        g = f.create_group("inputs")
        g["token_ids"] = token_ids
        g["padding_mask"] = padding_mask
        g["labels"] = labels
        g["sample_weight"] = weights
        w = f.create_group("weights")
        for (p, var), val in zip(named, values):
            w[p] = to_ours(p, np.asarray(val)).astype("float32")
        e = f.create_group("expected")
        e["logits"] = np.asarray(logits, "float32")
        e["loss"] = np.float32(loss)
        e["weighted_ce_sum"] = np.float32(wsum)
        gg = e.create_group("grads")
        for (p, _), gv in zip(named, grads):
            gg[p] = to_ours(p, np.asarray(gv)).astype("float32")
    print(f"{path}: loss {float(loss):.6f}, max|logit| {float(np.abs(logits).max()):.3f}, "
          f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    names = sys.argv[1:] or list(CONFIGS)
    for i, n in enumerate(names):
        make(n, CONFIGS[n], seed=1000 + i)
