#!/usr/bin/env python3
"""Checks gemmatrain's Gemma 4 GGUF export in llama.cpp itself (pip install llama-cpp-python numpy).

For the two converter-style Gemma 4 fixtures, tests/fixtures/gguf/gemma4_tiny.gguf (dense: PLE,
kv-shared layers with a double-wide MLP, k = v global layers, partial RoPE, final soft-cap) and
tests/fixtures/gguf/gemma4_moe.gguf (6 experts, top 2), and each storage type f32, f16, q8_0:
`gemmatrain convert FIX OUT --format gguf --gguf-type T`, then gemmatrain's logits on OUT over a
prompt (`generate --score --logits`) are compared with llama.cpp's on the same tokens (f32 KV
cache). Prints max|ours - llama.cpp| / max|logit| per case; exits 1 when one exceeds --tol.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/gemmatrain")
    ap.add_argument("--tol", type=float, default=5e-3)
    a = ap.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for fix, prompt in CASES:
            for t in ("f32", "f16", "q8_0"):
                path = os.path.join(tmp, f"{os.path.basename(fix)[:-5]}-{t}.gguf")
                run([a.bin, "convert", fix, path, "--format", "gguf", "--gguf-type", t])
                out = json.loads(run([a.bin, "generate", "--model", path, "--score", "--logits", prompt]))
                toks, ours = out["tokens"], np.array(out["logits"], dtype=np.float64)
                llm = Llama(model_path=path, n_ctx=64, n_threads=2, logits_all=True, verbose=False, type_k=0, type_v=0)
                llm.reset()
                llm.eval(toks)
                theirs = np.array(llm.scores[: len(toks)], dtype=np.float64)
                e = np.abs(ours - theirs).max() / np.abs(ours).max()
                worst = max(worst, e)
                print(f"{os.path.basename(fix)} {t}: {len(toks)} tokens, ours vs llama.cpp {e:.2e} x max|logit|")
    raise SystemExit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
