#!/usr/bin/env python3
"""Write tests/fixtures/gemma4-media-tokenizer.json: the committed 8192-piece cut of the Gemma 3
tokenizer (tests/fixtures/gemma3-tokenizer-8k.json) plus Gemma 4's media and turn markers
(<|image>, <|image|>, <image|>, <|audio>, <|audio|>, <audio|>, <|turn>, <turn|>) as special
pieces 8192..8199. A tiny random Gemma 4 with both towers (vocab_size 8200) then trains on the
speech and shapes tasks in seconds (tests/test_media4_train.c). Deterministic: rerunning it
rewrites the same file.

usage: tools/make_media4_tokenizer.py [SRC] [DST]
"""
import json
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gemma3-tokenizer-8k.json"
dst = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/gemma4-media-tokenizer.json"
t = json.load(open(src, encoding="utf-8"))
vocab = t["model"]["vocab"]
for piece in ("<|image>", "<|image|>", "<image|>", "<|audio>", "<|audio|>", "<audio|>", "<|turn>", "<turn|>"):
    if piece in vocab:
        continue
    vocab[piece] = len(vocab)
    t["added_tokens"].append({"id": vocab[piece], "content": piece, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True})
with open(dst, "w", encoding="utf-8") as f:
    json.dump(t, f, ensure_ascii=False, separators=(",", ":"))
print(f"{dst}: {len(vocab)} pieces")
