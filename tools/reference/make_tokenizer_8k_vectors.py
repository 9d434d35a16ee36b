#!/usr/bin/env python3
"""Reference encodings for the committed 8192-piece cut of the Gemma 3 tokenizer.

Runs Hugging Face `tokenizers` (pip install tokenizers) on tests/fixtures/gemma3-tokenizer-8k.json
(tools/reference/make_small_tokenizer.py's output) over
  - the 180 texts of tests/fixtures/vectors.jsonl (the real tokenizer's reference vectors), then
  - the prompt and then the response of every line of tests/fixtures/debian-train-200.jsonl and
    tests/fixtures/debian-eval-50.jsonl (in file order),
and writes one {"text": ..., "ids": [...]} line per text (add_special_tokens=False: no <bos>;
special-token text is matched, as `tokenizers` always does) to tests/fixtures/vectors-8k.jsonl, in
the compact form `gemmatrain tokenize` prints (so the CLI reproduces the file byte for byte).
tests/test_tokenizer.c checks that our tokenizer.json loader gives every line's ids and decodes
them back to the text.

usage: tools/reference/make_tokenizer_8k_vectors.py [TOKENIZER_JSON [OUT]]
       (run from the repository root; defaults as above)
"""
import json
import sys

from tokenizers import Tokenizer

tok_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gemma3-tokenizer-8k.json"
out_path = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/vectors-8k.jsonl"

texts = [json.loads(line)["text"] for line in open("tests/fixtures/vectors.jsonl", encoding="utf-8")]
for name in ("tests/fixtures/debian-train-200.jsonl", "tests/fixtures/debian-eval-50.jsonl"):
    for line in open(name, encoding="utf-8"):
        if line.strip():
            o = json.loads(line)
            texts += [o["prompt"], o["response"]]

tok = Tokenizer.from_file(tok_path)
with open(out_path, "w", encoding="utf-8", newline="\n") as f:
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == t, t
        f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False, separators=(",", ":")) + "\n")
print(f"{out_path}: {len(texts)} texts, {tok.get_vocab_size()} pieces")
