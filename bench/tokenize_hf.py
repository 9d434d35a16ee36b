#!/usr/bin/env python3
"""Baseline for bench/tokenize.c: Hugging Face `tokenizers` (Rust) on the same tokenizer file and
the same texts (prompt and response of each JSONL line), one thread.

usage: tokenize_hf.py TOKENIZER_JSON [JSONL [REPEATS]]   (needs: pip install tokenizers)
TOKENIZER_JSON: a Hugging Face tokenizer.json (the real Gemma 3 one, or the committed 8192-piece cut
tests/fixtures/gemma3-tokenizer-8k.json); JSONL defaults to datasets/debian-packages/train.jsonl
(paths relative to the repository root).
Single-threaded on purpose: RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false are set before
the import, so encode_batch runs on one core like the C encoder. Prints one RESULT line.
"""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Tokenizer  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip())
    tok_path = sys.argv[1]
    data_path = sys.argv[2] if len(sys.argv) > 2 else "datasets/debian-packages/train.jsonl"
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5

    load_s = float("inf")
    for _ in range(3):  # best of 3: the machine is shared
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(tok_path)
        load_s = min(load_s, time.perf_counter() - t0)

    texts = []
    with open(data_path, encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            for k in ("prompt", "response"):
                if isinstance(o.get(k), str):
                    texts.append(o[k])
    nbytes = sum(len(t.encode("utf-8")) for t in texts)

    best = float("inf")
    tokens = 0
    for _ in range(repeats):
        t1 = time.perf_counter()
        enc = tok.encode_batch(texts, add_special_tokens=False)
        dt = time.perf_counter() - t1
        best = min(best, dt)
        tokens = sum(len(e.ids) for e in enc)
    mbs = nbytes / 1e6 / best
    print(f"HF tokenizers: load {load_s:.3f} s (best of 3), encode {mbs:.2f} MB/s ({len(texts)} texts, {nbytes} bytes, "
          f"{tokens} tokens, best of {repeats}, 1 thread)")
    print(f"RESULT load_s={load_s:.4f} mb_s={mbs:.3f} bytes={nbytes} tokens={tokens} texts={len(texts)}")


if __name__ == "__main__":
    main()
