#!/usr/bin/env python3
"""Checks gemmatrain's SentencePiece model writer against the real `sentencepiece` library.

1. `gemmatrain tokenize --tokenizer SOURCE --write-spm OUT` writes the Gemma 3
   vocabulary as a ModelProto (our hand-written protobuf writer); SOURCE is tokenizer.json, or
   with --source the GGUF model (whose vocabulary llama.cpp stored with its own spellings).
2. `sentencepiece` loads it; vocabulary size and BOS/EOS/PAD/UNK ids must match.
3. Every reference vector (tests/fixtures/vectors.jsonl) must encode to its ids with
   sentencepiece. The vectors were made with special-token text matched as special tokens,
   which sentencepiece never does for CONTROL pieces, so the text is split around control
   pieces first (leftmost-longest, as gemmatrain's --match-special does) and the control ids put
   in between. The ids must decode back to the text (where no control id is involved).
4. Plain encoding (nothing special matched) of the vector texts and of the prompt/response
   texts of a JSONL file must give the same ids from sentencepiece, from gemmatrain on the .spm
   and from gemmatrain on tokenizer.json (merge ranks vs piece scores).

Needs: pip install sentencepiece, and the real Gemma 3 tokenizer.json (e.g. from Hugging Face
google/gemma-3-270m; not in the repository): --tokenizer PATH, by default $GT_GEMMA3_TOKENIZER_JSON.
Not part of CI; run by hand after changing the tokenizer:
    make && python3 tools/reference/check_spm.py --tokenizer PATH [--bin build/gemmatrain]
Exit status 0 when everything agrees.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import sentencepiece as spm


def run_tokenize(binary, tok, texts):
    """ids for each text from `gemmatrain tokenize` (no special matching)."""
    inp = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    out = subprocess.run([binary, "tokenize", "--tokenizer", tok], input=inp.encode("utf-8"),
                         capture_output=True, check=True).stdout.decode("utf-8")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(texts), f"{len(rows)} output lines for {len(texts)} texts"
    return [r["ids"] for r in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/gemmatrain")
    env_tok = os.environ.get("GT_GEMMA3_TOKENIZER_JSON")
    ap.add_argument("--tokenizer", default=env_tok, required=not env_tok,
                    help="the real Gemma 3 tokenizer.json (default: $GT_GEMMA3_TOKENIZER_JSON)")
    ap.add_argument("--vectors", default="tests/fixtures/vectors.jsonl")
    ap.add_argument("--texts", default="datasets/debian-packages/train.jsonl",
                    help="JSONL with prompt/response strings for the plain-encoding comparison")
    ap.add_argument("--max-lines", type=int, default=20000)
    ap.add_argument("--keep-spm", help="also copy the written model here")
    ap.add_argument("--source", help="write the .spm from this file instead (e.g. the GGUF in out/models)")
    args = ap.parse_args()

    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "gemma3.spm")
        source = args.source or args.tokenizer
        subprocess.run([args.bin, "tokenize", "--tokenizer", source, "--write-spm", model], check=True)
        if args.keep_spm:
            with open(model, "rb") as src, open(args.keep_spm, "wb") as dst:
                dst.write(src.read())
        sp = spm.SentencePieceProcessor(model_file=model)
        n = sp.get_piece_size()
        with open(args.tokenizer, encoding="utf-8") as f:
            hf = json.load(f)
        hf_size = 1 + max(max(hf["model"]["vocab"].values()), max(a["id"] for a in hf["added_tokens"]))
        ids = {name: sp.piece_to_id(name) for name in ("<bos>", "<eos>", "<pad>", "<unk>")}
        print(f"check_spm: {model}: {n} pieces (tokenizer.json: {hf_size}); sentencepiece bos={sp.bos_id()} "
              f"eos={sp.eos_id()} pad={sp.pad_id()} unk={sp.unk_id()}")
        # a GGUF vocabulary may stop short of tokenizer.json's last added tokens (Gemma 3's GGUF:
        # 262144 pieces, without <image_soft_token>): only the special ids are compared then
        if (n != hf_size and not args.source) or (sp.bos_id(), sp.eos_id(), sp.pad_id(), sp.unk_id()) != (
                ids["<bos>"], ids["<eos>"], ids["<pad>"], ids["<unk>"]):
            print("check_spm: FAIL: vocabulary size or special ids differ")
            failures += 1

        special = {sp.id_to_piece(i): i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)}
        split = re.compile("|".join(re.escape(p) for p in sorted(special, key=len, reverse=True)))

        def encode_matching_special(text):
            out, pos = [], 0
            for m in split.finditer(text):
                out += sp.encode(text[pos:m.start()]) + [special[m.group()]]
                pos = m.end()
            return out + sp.encode(text[pos:])

        with open(args.vectors, encoding="utf-8") as f:
            vectors = [json.loads(line) for line in f]
        bad = 0
        for i, v in enumerate(vectors):
            got = encode_matching_special(v["text"])
            if got != v["ids"]:
                bad += 1
                print(f"check_spm: vector {i}: sentencepiece {got[:12]}... vs reference {v['ids'][:12]}...")
            elif not any(t in special.values() for t in got) and sp.decode(got) != v["text"]:
                bad += 1
                print(f"check_spm: vector {i}: sentencepiece decodes to {sp.decode(got)[:60]!r}")
        print(f"check_spm: reference vectors through sentencepiece on our .spm: {len(vectors) - bad}/{len(vectors)} equal")
        failures += bad

        texts = [v["text"] for v in vectors]
        # whitespace runs: user-defined pieces that SentencePiece matches in the escaped text
        texts += ["  hello", "hello  world", "def f():\n    return 1\n", "a   b    c", "    ", "trail  ",
                  "mixed \t  tabs", "if x:\n        y = 2\n\n\n   z", "<h1>  Title </h1>", " " * 40 + "x"]
        if args.texts and os.path.exists(args.texts):
            with open(args.texts, encoding="utf-8") as f:
                for k, line in enumerate(f):
                    if k >= args.max_lines:
                        break
                    o = json.loads(line)
                    texts += [o[key] for key in ("prompt", "response") if isinstance(o.get(key), str)]
        want = [sp.encode(t) for t in texts]
        sources = [("gemmatrain on the .spm", model), ("gemmatrain on tokenizer.json", args.tokenizer)]
        if args.source:
            sources.append((f"gemmatrain on {os.path.basename(args.source)}", args.source))
        for label, tok in sources:
            got = run_tokenize(args.bin, tok, texts)
            diff = [i for i in range(len(texts)) if got[i] != want[i]]
            for i in diff[:5]:
                print(f"check_spm: {label}: text {i} {texts[i][:50]!r}: {got[i][:10]} vs sentencepiece {want[i][:10]}")
            print(f"check_spm: plain encoding, {label} vs sentencepiece: {len(texts) - len(diff)}/{len(texts)} equal")
            failures += len(diff)

    print("check_spm: OK" if not failures else f"check_spm: FAILED ({failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
