#!/usr/bin/env python3
"""Checks gemmatrain's GGUF export in llama.cpp itself (pip install llama-cpp-python numpy).

1. The real Gemma 3 270M (out/models/gemma-3-270m-q4_k_m.gguf) is converted with
   `gemmatrain convert IN OUT --format gguf --gguf-type T` for T in f16, q8_0; llama.cpp loads
   each file, and its logits over a prompt and its greedy continuation are compared with
   gemmatrain's on the same file (`generate --score --logits`, `generate`).
2. A LoRA adapter: the tiny KerasHub preset tests/fixtures/presets/gemma3 with the Keras adapter
   tests/fixtures/presets/gemma3.lora.h5 is exported as a model GGUF (F32) and an adapter GGUF
   (`export --format gguf-lora`); llama.cpp applies the adapter (lora_path) and its logits are
   compared with gemmatrain's `generate --lora ... --score --logits`.
Prints the largest logit difference relative to max|logit| per case and whether the greedy
texts are equal. Not part of CI (the `gguf` package's byte-level agreement is: test_gguf_export).

usage (from the repository root, after `make`):
    python3 tools/reference/check_gguf_export.py [--bin build/gemmatrain] [--tokens 24]
Note: build llama-cpp-python with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF
-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" on CPUs with AMX; its native build crashed here in eval.
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
from llama_cpp import Llama

PROMPT = "The capital of France is"


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


def ours_logits(binary, model, prompt, extra=()):
    out = json.loads(run([binary, "generate", "--model", model, *extra, "--score", "--logits", prompt]))
    return out["tokens"], np.array(out["logits"], dtype=np.float64)


def llama_logits(path, tokens, lora=None):
    llm = Llama(model_path=path, n_ctx=256, n_threads=2, logits_all=True, verbose=False,
                **({"lora_path": lora} if lora else {}))
    llm.reset()
    llm.eval(tokens)
    return llm, np.array(llm.scores[: len(tokens)], dtype=np.float64)


def compare(name, a, b):
    e = np.abs(a - b).max() / np.abs(a).max()
    print(f"{name}: logits differ by {e:.2e} x max|logit| ({a.shape[0]} positions)")
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/gemmatrain")
    ap.add_argument("--model", default="out/models/gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--tokens", type=int, default=24)
    a = ap.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for t in ("f16", "q8_0"):
            path = os.path.join(tmp, f"270m-{t}.gguf")
            run([a.bin, "convert", a.model, path, "--format", "gguf", "--gguf-type", t])
            toks, ours = ours_logits(a.bin, path, PROMPT)
            llm, theirs = llama_logits(path, toks)
            worst = max(worst, compare(f"270M {t}", ours, theirs))
            text = llm(PROMPT, max_tokens=a.tokens, temperature=0.0, top_k=1)["choices"][0]["text"]
            mine = run([a.bin, "generate", "--model", path, "--strip-prompt", "--max-new-tokens", str(a.tokens), PROMPT])
            print(f"270M {t}: greedy equal: {mine.strip() == text.strip()}\n  llama.cpp: {text!r}\n  ours:      {mine!r}")
        cfg = os.path.join(tmp, "lora.yaml")
        with open(cfg, "w") as f:
            f.write("model:\n  weights: tests/fixtures/presets/gemma3\nlora:\n  enabled: true\n"
                    "  weights: tests/fixtures/presets/gemma3.lora.h5\n")
        base, ada = os.path.join(tmp, "tiny.gguf"), os.path.join(tmp, "tiny-lora.gguf")
        run([a.bin, "convert", "tests/fixtures/presets/gemma3", base, "--format", "gguf", "--gguf-type", "f32"])
        run([a.bin, "export", cfg, "--out", ada, "--format", "gguf-lora"])
        prompt = "the quick brown fox"
        toks, ours = ours_logits(a.bin, "tests/fixtures/presets/gemma3", prompt,
                                 ("--lora", "tests/fixtures/presets/gemma3.lora.h5"))
        _, theirs = llama_logits(base, toks, lora=ada)
        worst = max(worst, compare("tiny Gemma 3 + LoRA GGUF", ours, theirs))
        _, plain = llama_logits(base, toks)
        print(f"  (without the adapter llama.cpp differs by {np.abs(ours - plain).max() / np.abs(ours).max():.2e})")
    print(f"check_gguf_export: worst {worst:.2e}")


if __name__ == "__main__":
    main()
