#!/usr/bin/env python3
"""Golden fixture for LoRA fine-tuning parity with KerasHub (JAX backend, fp32).

A tiny random Gemma 3 backbone, `backbone.enable_lora(rank=4)` (LoRA on query and value, Keras'
own He-uniform A and zero B), a Gemma3CausalLM compiled with AdamW and KerasHub's default loss
(SparseCategoricalCrossentropy(from_logits=True), i.e. sum(w * ce) / (B * T)), trained with
`train_on_batch` for 10 steps on 10 different batches. Written to tests/fixtures/lora_gemma3.h5:

  /config (attrs), /weights/<name> (base model, our layout, as in make_gemma_fixtures.py)
  /lora/attrs: rank, alpha, learning_rate, weight_decay, beta_1, beta_2, epsilon
  /lora/init/decoder_block_<i>/attention/{query,value}/lora_kernel_{a,b}   Keras layout
  /lora/grads0/...     d loss / d A, B at step 0 (Keras layout)
  /lora/final/...      adapters after 10 steps (Keras layout)
  /batches/token_ids, padding_mask, labels, sample_weight   [10, B, T]
  /expected/losses     [10] the loss train_on_batch reported at each step (before its update)

Run: KERAS_BACKEND=jax python3 tools/reference/make_lora_fixture.py
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

import make_gemma_fixtures as base  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
keras.utils.set_random_seed(5)

STEPS, B, T, RANK = 10, 2, 9, 4
LR, WD, B1, B2, EPS = 1e-2, 0.01, 0.9, 0.999, 1e-7


def main():
    spec = dict(base.CONFIGS["gemma3"])
    spec.pop("cls")
    spec.pop("generation")
    backbone = keras_hub.models.Gemma3Backbone(**spec, dtype="float32")
    rng = np.random.default_rng(77)
    named = base.named_variables(backbone, spec["num_layers"], spec)
    for path, var in named:
        std = 0.3 if path.endswith("scale") else 0.5
        var.assign(rng.normal(0, std, var.shape).astype("float32"))
    base_values = [np.asarray(v.value) for _, v in named]

    backbone.enable_lora(rank=RANK)
    lora = []  # (our path, keras variable)
    for i in range(spec["num_layers"]):
        att = backbone.get_layer(f"decoder_block_{i}").attention
        for tname, layer in (("query", att.query_dense), ("value", att.value_dense)):
            p = f"decoder_block_{i}/attention/{tname}/"
            lora.append((p + "lora_kernel_a", layer.lora_kernel_a))
            lora.append((p + "lora_kernel_b", layer.lora_kernel_b))
    assert len(lora) == len(backbone.trainable_variables), (len(lora), len(backbone.trainable_variables))
    init = [np.asarray(v.value) for _, v in lora]

    V = spec["vocabulary_size"]
    ids = rng.integers(0, V, (STEPS, B, T)).astype("int32")
    mask = np.ones((STEPS, B, T), "int32")
    for s in range(STEPS):  # varying right padding
        pad = s % 4
        if pad:
            mask[s, 1, T - pad:] = 0
            ids[s, 1, T - pad:] = 0
    labels = rng.integers(0, V, (STEPS, B, T)).astype("int32")
    weights = (rng.random((STEPS, B, T)) < 0.6).astype("float32") * mask

    # Step-0 gradients of the KerasHub loss w.r.t. the adapters.
    lora_ids = {id(v): k for k, (_, v) in enumerate(lora)}
    order = [lora_ids[id(v)] for v in backbone.trainable_variables]

    def loss_fn(tv):
        ntv = [v.value for v in backbone.non_trainable_variables]
        hidden, _ = backbone.stateless_call(tv, ntv, {"token_ids": ids[0], "padding_mask": mask[0]})
        emb = backbone.get_layer("token_embedding").embeddings.value
        logits = jnp.einsum("btd,vd->btv", hidden, emb)
        ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[0][..., None], -1)[..., 0]
        return jnp.sum(weights[0] * ce) / (B * T)

    tv = [v.value for v in backbone.trainable_variables]
    loss0, g = jax.value_and_grad(loss_fn)(tv)
    grads0 = [None] * len(lora)
    for pos, k in enumerate(order):
        grads0[k] = np.asarray(g[pos])

    lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    opt = keras.optimizers.AdamW(learning_rate=LR, weight_decay=WD, beta_1=B1, beta_2=B2, epsilon=EPS)
    opt.exclude_from_weight_decay(var_names=["bias", "scale"])
    lm.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               weighted_metrics=[])
    losses = []
    for s in range(STEPS):
        out = lm.train_on_batch({"token_ids": ids[s], "padding_mask": mask[s]}, labels[s],
                                sample_weight=weights[s], return_dict=True)
        losses.append(float(out["loss"]))
    np.testing.assert_allclose(losses[0], float(loss0), rtol=1e-5)
    final = [np.asarray(v.value) for _, v in lora]

    path = os.path.join(base.OUT, "lora_gemma3.h5")
    with h5py.File(path, "w") as f:
        c = f.create_group("config")
        c.attrs["generation"] = 3
        for k, v in spec.items():
            if v is not None:
                c.attrs[k] = int(v) if isinstance(v, bool) else v
        w = f.create_group("weights")
        for (p, _), val in zip(named, base_values):
            w[p] = base.to_ours(p, val).astype("float32")
        lg = f.create_group("lora")
        for k, v in dict(rank=RANK, alpha=RANK, learning_rate=LR, weight_decay=WD, beta_1=B1,
                         beta_2=B2, epsilon=EPS).items():
            lg.attrs[k] = v
        for (p, _), a, gr, fin in zip(lora, init, grads0, final):
            lg[f"init/{p}"] = a
            lg[f"grads0/{p}"] = gr
            lg[f"final/{p}"] = fin
        bt = f.create_group("batches")
        bt["token_ids"] = ids
        bt["padding_mask"] = mask
        bt["labels"] = labels
        bt["sample_weight"] = weights
        f.create_group("expected")["losses"] = np.asarray(losses, "float32")
    print(f"{path}: losses {np.round(losses, 5).tolist()}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
