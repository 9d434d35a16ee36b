#!/usr/bin/env python3
"""Cut the real Gemma 3 tokenizer.json down to its first N ids (default 8192) for fast tests.

Keeps the pieces with id < 1024 (the specials and the 256 byte-fallback pieces), every
single-character piece of printable ASCII and "\u2581" (the space marker), then the
lowest-id (most frequent) remaining pieces up to N; ids are renumbered in the original order, and
the merges whose two parts and result all survive are kept, as are the added tokens among the
pieces. The result is a valid Hugging Face BPE tokenizer.json with byte fallback: text still
round-trips, in somewhat more pieces. Used by the tests that train the tiny model
(configs/tiny.yaml), where a 262144-row LM head would dominate the run time, and as the
full-scale tokenizer.json of the tokenizer and preprocessing tests (tests/fixtures/vectors-8k.jsonl).

usage: tools/reference/make_small_tokenizer.py SRC [DST] [N]
  SRC  the real Gemma 3 tokenizer.json (262145 ids; e.g. from Hugging Face google/gemma-3-270m, not
       in the repository)
  DST  default tests/fixtures/gemma3-tokenizer-8k.json; afterwards regenerate its reference
       encodings with tools/reference/make_tokenizer_8k_vectors.py
"""
import json
import sys

if len(sys.argv) < 2:
    sys.exit(__doc__.strip())
src = sys.argv[1]
dst = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/gemma3-tokenizer-8k.json"
n = int(sys.argv[3]) if len(sys.argv) > 3 else 8192

t = json.load(open(src, encoding="utf-8"))
full = t["model"]["vocab"]
keep = {p for p, i in full.items() if i < 1024}
keep |= {p for p in full if len(p) == 1 and (32 < ord(p) < 127 or p == "\u2581")}
for p, i in sorted(full.items(), key=lambda kv: kv[1]):
    if len(keep) >= n:
        break
    keep.add(p)
order = sorted(keep, key=lambda p: full[p])
vocab = {p: i for i, p in enumerate(order)}
merges = []
for m in t["model"]["merges"]:
    a, b = m if isinstance(m, list) else m.split(" ", 1)
    if a in vocab and b in vocab and a + b in vocab:
        merges.append(m)
t["model"]["vocab"] = vocab
t["model"]["merges"] = merges
added = []
for a in t["added_tokens"]:
    if a["content"] in vocab:
        a["id"] = vocab[a["content"]]
        added.append(a)
t["added_tokens"] = added
with open(dst, "w", encoding="utf-8") as f:
    json.dump(t, f, ensure_ascii=False, separators=(",", ":"))
print(f"{dst}: {len(vocab)} pieces, {len(merges)} merges, {len(t['added_tokens'])} added tokens")
