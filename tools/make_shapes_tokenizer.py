#!/usr/bin/env python3
"""Write datasets/shapes/tokenizer.json: the committed 8192-piece cut of the Gemma 3 tokenizer
(tests/fixtures/gemma3-tokenizer-8k.json, which keeps <img>) plus Gemma 3's two image markers,
<start_of_image> and <end_of_image>, as special pieces 8192 and 8193. A tiny multimodal model
(configs/shapes-lora.yaml, vocab_size 8194) then trains on datasets/shapes in seconds.
Deterministic: rerunning it rewrites the same file.

usage: tools/make_shapes_tokenizer.py [SRC] [DST]
"""
import json
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gemma3-tokenizer-8k.json"
dst = sys.argv[2] if len(sys.argv) > 2 else "datasets/shapes/tokenizer.json"
t = json.load(open(src, encoding="utf-8"))
vocab = t["model"]["vocab"]
for piece in ("<start_of_image>", "<end_of_image>"):
    if piece in vocab:
        continue
    vocab[piece] = len(vocab)
    t["added_tokens"].append({"id": vocab[piece], "content": piece, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True})
with open(dst, "w", encoding="utf-8") as f:
    json.dump(t, f, ensure_ascii=False, separators=(",", ":"))
print(f"{dst}: {len(vocab)} pieces")
