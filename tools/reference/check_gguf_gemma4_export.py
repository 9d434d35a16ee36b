#!/usr/bin/env python3
"""Checks gemmatrain's Gemma 4 GGUF export in llama.cpp itself (pip install llama-cpp-python numpy).

For the two converter-style Gemma 4 fixtures, tests/fixtures/gguf/gemma4_tiny.gguf (dense: PLE,
kv-shared layers with a double-wide MLP, k = v global layers, partial RoPE, final soft-cap) and
tests/fixtures/gguf/gemma4_moe.gguf (6 experts, top 2), and each storage type f32, f16, q8_0:
`gemmatrain convert FIX OUT --format gguf --gguf-type T`, then gemmatrain's logits on OUT over a
prompt (`generate --score --logits`) are compared with llama.cpp's on the same tokens (f32 KV
cache). Prints max|ours - llama.cpp| / max|logit| per case; exits 1 when an f32 case exceeds --tol
(f16 and q8_0: 10 x --tol; ggml also rounds the activations there). For scale: on these random
models llama.cpp's own f32 run differs from transformers' by up to 7e-3 x max at single positions
(ours: 4.4e-5), so the f32 check catches a wrong layout or convention, not fp detail.
LoRA: 10 steps of `gemmatrain train` with adapters on all seven targets of the dense fixture,
then `export --format gguf-lora`; llama.cpp applies it (lora_path) to the f32 export, compared with
`generate --lora ADAPTER --score --logits` and with llama.cpp on our --merge-lora export (the
adapter file must compute what the merged model does; the adapter must move the logits).
Not part of CI (test_gguf_gemma4_export checks the export against the fixtures byte for byte).

usage (from the repository root, after `make`):
    python3 tools/reference/check_gguf_gemma4_export.py [--bin build/gemmatrain] [--tol 5e-3]
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
from llama_cpp import Llama

CASES = [("tests/fixtures/gguf/gemma4_tiny.gguf", "The quick brown fox jumps over the lazy dog"),
         ("tests/fixtures/gguf/gemma4_moe.gguf", "t5t9t12t30t41t7t22t60t17t33t4t50")]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


LORA_YAML = """model:
  weights: tests/fixtures/gguf/gemma4_tiny.gguf
data:
  train: tests/fixtures/debian-train-200.jsonl
  format: prompt_response
  template: auto
  sequence_length: 48
lora:
  enabled: true
  rank: 4
  targets: [query, key, value, attention_output, ffw_gating, ffw_gating_2, ffw_linear]
train:
  batch_size: 8
  steps: 10
optimizer:
  name: adamw
  learning_rate: 2.0e-2
output_dir: {out}
"""


def lora_case(binary, tmp):
    cfg, out = os.path.join(tmp, "lora.yaml"), os.path.join(tmp, "lora-run")
    with open(cfg, "w") as f:
        f.write(LORA_YAML.format(out=out))
    run([binary, "train", cfg])
    adapter, base, ada = os.path.join(out, "adapter.lora.h5"), os.path.join(tmp, "base.gguf"), os.path.join(tmp, "ada.gguf")
    merged = os.path.join(tmp, "merged.gguf")
    run([binary, "convert", CASES[0][0], base, "--format", "gguf", "--gguf-type", "f32"])
    run([binary, "export", cfg, "--out", ada, "--format", "gguf-lora", f"lora.weights={adapter}"])
    run([binary, "export", cfg, "--out", merged, "--format", "gguf", "--gguf-type", "f32", "--merge-lora",
         f"lora.weights={adapter}"])
    prompt = CASES[0][1]
    plain = np.array(json.loads(run([binary, "generate", "--model", base, "--score", "--logits", prompt]))["logits"])
    out = json.loads(run([binary, "generate", "--model", base, "--lora", adapter, "--score", "--logits", prompt]))
    toks, ours = out["tokens"], np.array(out["logits"], dtype=np.float64)
    theirs = llama_scores(base, toks, lora_path=ada)
    folded = llama_scores(merged, toks)
    e = np.abs(ours - theirs).max() / np.abs(ours).max()
    e_merged = np.abs(folded - theirs).max() / np.abs(ours).max()
    moved = np.abs(ours - plain).max() / np.abs(ours).max()
    print(f"gemma4_tiny LoRA (all seven targets): llama.cpp with the adapter vs ours {e:.2e} x max|logit|, vs "
          f"llama.cpp on our merged export {e_merged:.2e}; the adapter moves the logits by {moved:.2e} x max")
    return e_merged if moved > 0.1 else 1.0


def llama_scores(path, toks, **kw):
    llm = Llama(model_path=path, n_ctx=64, n_threads=2, logits_all=True, verbose=False, type_k=0, type_v=0, **kw)
    llm.reset()
    llm.eval(toks)
    return np.array(llm.scores[: len(toks)], dtype=np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/gemmatrain")
    ap.add_argument("--tol", type=float, default=1e-2)
    a = ap.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for fix, prompt in CASES:
            for t in ("f32", "f16", "q8_0"):
                path = os.path.join(tmp, f"{os.path.basename(fix)[:-5]}-{t}.gguf")
                run([a.bin, "convert", fix, path, "--format", "gguf", "--gguf-type", t])
                out = json.loads(run([a.bin, "generate", "--model", path, "--score", "--logits", prompt]))
                toks, ours = out["tokens"], np.array(out["logits"], dtype=np.float64)
                theirs = llama_scores(path, toks)
                e = np.abs(ours - theirs).max() / np.abs(ours).max()
                worst = max(worst, e if t == "f32" else e / 10)  # f16 / q8_0: ggml rounds activations too
                print(f"{os.path.basename(fix)} {t}: {len(toks)} tokens, ours vs llama.cpp {e:.2e} x max|logit|")
        worst = max(worst, lora_case(a.bin, tmp))
    raise SystemExit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
