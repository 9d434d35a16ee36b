#!/usr/bin/env python3
"""KerasHub preset and LoRA-file fixtures, written by keras_hub itself (JAX backend, fp32).

Mode 1 (no arguments): for Gemma 1, 2 and 3 (the tiny shapes of make_gemma_fixtures.py; Gemma 3
with 6 layers), a
random-weight backbone (seeded), a tiny SentencePiece BPE vocabulary, a CausalLM with its
preprocessor, saved with `save_to_preset` to tests/fixtures/presets/<gen>/, and
  tests/fixtures/presets/<gen>.lora.h5   backbone.save_lora_weights after enable_lora(2) with
                                         random nonzero A and B (Gemma 2: all seven targets;
                                         Gemma 1 and 3: Keras' default query and value)
  tests/fixtures/presets/gemma1_bf16.weights.h5  the Gemma 1 weights from a bfloat16 backbone
  tests/fixtures/presets/<gen>.ref.h5    /token_ids, /padding_mask [B, T] int32
                                         /logits, /logits_lora [B, T, V] float32 (task call)
                                         /text_ids int32 (the tokenizer on attribute `text`)
                                         attributes lora_targets, lora_indices
Every LoRA index Keras uses is also checked against the formula of models/io/keras_lora.h, for
these configs and for variants without post norms or QK-norm.

Mode 2: --check-export DIR OUT.h5 [--ref REF.h5]: load a preset directory written by gemmatrain
with keras_hub.models.CausalLM.from_preset, run it on REF's token ids (default: gemma2.ref.h5),
and write /logits, plus /logits_lora when DIR/adapter.lora.h5 exists (enable_lora on the layers
the file names, then load_lora_weights), and attribute class_name. The committed
tests/fixtures/presets/ours_gemma2_keras.h5 comes from (see tests/test_keras_preset.c):
    make && printf 'model:\\n  weights: tests/fixtures/presets/gemma2\\nlora:\\n  weights: tests/fixtures/presets/gemma2.lora.h5\\n' > /tmp/exp.yaml
    build/gemmatrain export /tmp/exp.yaml --out /tmp/ours_gemma2
    build/gemmatrain export /tmp/exp.yaml --out /tmp/ours_gemma2_merged --merge-lora
    KERAS_BACKEND=jax python3 tools/reference/make_preset_fixtures.py --check-export /tmp/ours_gemma2 \\
        tests/fixtures/presets/ours_gemma2_keras.h5 --merged /tmp/ours_gemma2_merged

Mode 3: --check-export on any exported preset (e.g. the real Gemma 3 270M converted by
`gemmatrain convert`) with --prompt-ids 2,818,5279 to compare logits by hand.

Run: pip install keras-hub jax h5py sentencepiece; KERAS_BACKEND=jax python3 tools/reference/make_preset_fixtures.py
Deterministic for the seeds below; CI does not run it (the fixtures are committed).
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as spm_pb  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_gemma_fixtures as base  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "presets")
TARGETS = ["query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear"]
TEXT = "the cat in the hat\nthere"
B, T = 2, 9


def make_spm(vocab_size):
    """A SentencePiece BPE ModelProto: Gemma's special ids, letters, a few merges, <unusedN>."""
    m = spm_pb.ModelProto()
    NORMAL, UNKNOWN, CONTROL, USER = 1, 2, 3, 4
    pieces = [("<pad>", CONTROL), ("<eos>", CONTROL), ("<bos>", CONTROL), ("<unk>", UNKNOWN),
              ("<start_of_turn>", CONTROL), ("<end_of_turn>", CONTROL), ("\n", USER), ("\u2581", NORMAL)]
    pieces += [(c, NORMAL) for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [(w, NORMAL) for w in ["th", "\u2581t", "\u2581th", "he", "\u2581the", "in", "an", "er", "at"]]
    i = 0
    while len(pieces) < vocab_size:
        pieces.append((f"<unused{i}>", USER))
        i += 1
    assert len(pieces) == vocab_size
    for k, (p, t) in enumerate(pieces):
        sp = m.pieces.add()
        sp.piece, sp.type = p, t
        sp.score = -float(k) if t == NORMAL else 0.0
    ts = m.trainer_spec
    ts.model_type = spm_pb.TrainerSpec.BPE
    ts.vocab_size = vocab_size
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 3, 2, 1, 0
    ts.byte_fallback = False
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    return m.SerializeToString()


def lora_index(cfg, layer, target):
    """models/io/keras_lora.h's formula (kept in sync with gt_keras_lora_index)."""
    pf = int(bool(cfg.get("use_post_ffw_norm")))
    pa = int(bool(cfg.get("use_post_attention_norm")))
    qk = 2 if cfg.get("use_query_key_norm") else 0
    s = 1 + layer * (11 + pf + pa + qk)
    attn = s + 3 + pf + 2
    return {"ffw_linear": s + 1, "ffw_gating_2": s + 2, "ffw_gating": s + 3,
            "attention_output": attn + 1, "value": attn + 2 + qk, "key": attn + 3 + qk,
            "query": attn + 4 + qk}[target]


def check_indices(backbone, cfg):
    layers = [lyr for lyr in backbone._flatten_layers(include_self=False) if lyr.weights]
    for i in range(cfg["num_layers"]):
        for t in TARGETS:
            idx = lora_index(cfg, i, t)
            got = layers[idx]
            assert got.name == t and f"decoder_block_{i}/" in got.weights[0].path, \
                (cfg, i, t, idx, got.name, got.weights[0].path)
    assert len(layers) == 1 + cfg["num_layers"] * (11 + int(bool(cfg.get("use_post_ffw_norm"))) +
                                                   int(bool(cfg.get("use_post_attention_norm"))) +
                                                   (2 if cfg.get("use_query_key_norm") else 0)) + 1


def build(name, spec):
    spec = dict(spec)
    cls = getattr(keras_hub.models, spec.pop("cls"))
    gen = spec.pop("generation")
    return gen, spec, cls(**spec, dtype="float32")


def check_variants():
    """Index formula on configs without post norms / QK-norm (no fixture written)."""
    for name, extra in [("gemma3", dict(use_post_ffw_norm=False, use_post_attention_norm=False)),
                        ("gemma3", dict(use_query_key_norm=False)),
                        ("gemma3", dict(use_post_ffw_norm=True, use_post_attention_norm=False)),
                        ("gemma2", dict(use_post_attention_norm=False))]:
        spec = dict(base.CONFIGS[name], **extra)
        _, cfg, bb = build(name, spec)
        check_indices(bb, cfg)
    print("LoRA index formula matches Keras' _flatten_layers for all variants")


# Gemma 3 with 6 layers (0-4 local, 5 global) instead of 7: each layer costs ~60 KB of HDF5
# group overhead in the preset.
PRESET_CONFIGS = dict(base.CONFIGS, gemma3=dict(base.CONFIGS["gemma3"], num_layers=6))


def make(name, seed, targets):
    gen, spec, backbone = build(name, PRESET_CONFIGS[name])
    check_indices(backbone, spec)
    rng = np.random.default_rng(seed)
    for w in backbone.weights:
        std = 0.3 if w.path.endswith("scale") else 0.5
        w.assign(rng.normal(0, std, w.shape).astype("float32"))
    V = spec["vocabulary_size"]
    proto = make_spm(V)
    if gen == 3:
        tok = keras_hub.models.Gemma3Tokenizer(proto=proto, has_vision_tokens=False)
        pre = keras_hub.models.Gemma3CausalLMPreprocessor(tokenizer=tok, sequence_length=16)
        lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=pre)
    else:
        tok = keras_hub.models.GemmaTokenizer(proto=proto)
        pre = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer=tok, sequence_length=16)
        lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=pre)
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    lm.save_to_preset(d)
    if name == "gemma1":
        # the same weights in a bfloat16 backbone: Keras stores them as 2-byte opaque data
        bf = type(backbone)(**spec, dtype="bfloat16")
        src = {w.path: w for w in backbone.weights}
        for w in bf.weights:
            w.assign(src[w.path].value.astype("bfloat16"))
        bf.save_weights(os.path.join(OUT, "gemma1_bf16.weights.h5"))

    token_ids = rng.integers(0, V, (B, T)).astype("int32")
    padding_mask = np.ones((B, T), "int32")
    padding_mask[1, T - 3:] = 0
    token_ids[1, T - 3:] = 0
    x = {"token_ids": token_ids, "padding_mask": padding_mask}
    logits = np.asarray(lm(x), "float32")

    backbone.enable_lora(2, target_layer_names=targets)
    for layer in backbone._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            layer.lora_kernel_a.assign(rng.normal(0, 0.3, layer.lora_kernel_a.shape).astype("float32"))
            layer.lora_kernel_b.assign(rng.normal(0, 0.3, layer.lora_kernel_b.shape).astype("float32"))
    logits_lora = np.asarray(lm(x), "float32")
    assert np.abs(logits_lora - logits).max() > 1e-2
    lora_path = os.path.join(OUT, f"{name}.lora.h5")
    backbone.save_lora_weights(lora_path)

    text_ids = np.asarray(tok(TEXT), "int32")
    with h5py.File(os.path.join(OUT, f"{name}.ref.h5"), "w") as f:
        f["token_ids"] = token_ids
        f["padding_mask"] = padding_mask
        f["logits"] = logits
        f["logits_lora"] = logits_lora
        f["text_ids"] = text_ids
        f.attrs["text"] = TEXT
        f.attrs["lora_targets"] = ",".join(targets)
        f.attrs["lora_indices"] = np.asarray(sorted(backbone._lora_enabled_layers), "int64")
    size = sum(os.path.getsize(os.path.join(r, fn)) for r, _, fs in os.walk(d) for fn in fs)
    print(f"{name}: preset {size} bytes, max|logit| {np.abs(logits).max():.3f}, "
          f"text ids {text_ids.tolist()}, LoRA layers {sorted(backbone._lora_enabled_layers)}")


def check_export(d, out, ref, merged, prompt_ids):
    lm = keras_hub.models.CausalLM.from_preset(d)
    if prompt_ids:
        token_ids = np.asarray([prompt_ids], "int32")
        padding_mask = np.ones_like(token_ids)
    else:
        with h5py.File(ref) as f:
            token_ids, padding_mask = f["token_ids"][()], f["padding_mask"][()]
    x = {"token_ids": token_ids, "padding_mask": padding_mask}
    logits = np.asarray(lm(x), "float32")
    res = {"logits": logits}
    lora = os.path.join(d, "adapter.lora.h5")
    if os.path.exists(lora):
        bb = lm.backbone
        layers = [lyr for lyr in bb._flatten_layers(include_self=False) if lyr.weights]
        with h5py.File(lora) as f:
            idx = sorted(int(k) for k in f["lora"].keys() if k != "vars")
            rank = int(f["lora/vars/rank"][()])
        names = sorted({layers[i].name for i in idx})
        bb.enable_lora(rank, target_layer_names=names)
        assert sorted(bb._lora_enabled_layers) == idx, (bb._lora_enabled_layers, idx)
        bb.load_lora_weights(lora)
        res["logits_lora"] = np.asarray(lm(x), "float32")
    if merged:
        res["logits_merged"] = np.asarray(keras_hub.models.CausalLM.from_preset(merged)(x), "float32")
    with h5py.File(out, "w") as f:
        f["token_ids"] = token_ids
        f["padding_mask"] = padding_mask
        for k, v in res.items():
            f[k] = v
        f.attrs["class_name"] = type(lm).__name__
    print(f"{d}: loaded as {type(lm).__name__}; wrote {sorted(res)} to {out}")
    # the preprocessor and tokenizer of the preset work end to end too
    lm.compile(sampler="greedy")
    print(f"  generate('the cat', greedy): {lm.generate('the cat', max_length=12)!r}")
    for k, v in res.items():
        print(f"  {k}: max|logit| {np.abs(v).max():.4f}, last-position argmax {v[0, -1].argmax()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-export", nargs=2, metavar=("DIR", "OUT"))
    ap.add_argument("--ref", default=os.path.join(OUT, "gemma2.ref.h5"))
    ap.add_argument("--merged")
    ap.add_argument("--prompt-ids")
    a = ap.parse_args()
    if a.check_export:
        ids = [int(t) for t in a.prompt_ids.split(",")] if a.prompt_ids else None
        check_export(a.check_export[0], a.check_export[1], a.ref, a.merged, ids)
        return
    os.makedirs(OUT, exist_ok=True)
    keras.utils.set_random_seed(11)
    check_variants()
    make("gemma1", 2001, ["query", "value"])
    make("gemma2", 2002, TARGETS)
    make("gemma3", 2003, ["query", "value"])


if __name__ == "__main__":
    main()
