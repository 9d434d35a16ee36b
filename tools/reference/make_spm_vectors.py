#!/usr/bin/env python3
"""Reference encodings of SentencePiece models with normalizers, WORD and UNIGRAM models.

Writes tests/fixtures/spm/vectors.tsv, read by tests/test_spm.c (CI needs no python). Also
(with --train) trains tests/fixtures/spm/bpe_nfkc.spm: a 500-piece BPE model with the nmt_nfkc
normalizer, trained by sentencepiece's own trainer on the prompts and responses of
tests/fixtures/debian-train-200.jsonl.

Each line: MODEL <TAB> hex of the UTF-8 text <TAB> ids (space-separated) <TAB> R, where R is 1
when sentencepiece's decode of the ids gives the text back (then gemmatrain's must too).
MODEL is a file name under tests/fixtures/spm/.

With --check BIN (e.g. build/gemmatrain) it writes nothing: each model goes through
`BIN tokenize --write-spm` (gt_tok_save_spm: charsmap, model type, normalizer written back) and
sentencepiece must give the committed ids from the written copy too; exit status 1 if not.

Needs: pip install sentencepiece (made with 0.2.x). Run from the repository root:
    python3 tools/reference/make_spm_vectors.py [--train] [--check build/gemmatrain]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import sentencepiece as spm

HERE = "tests/fixtures/spm"
MODELS = ["gemma_test_vocab.spm", "gemma3_test_vocab.spm", "gemma4_test_vocab.spm",
          "gemma_export_vocab.spm", "bpe_nfkc.spm", "word_user.spm", "unigram_user.spm"]

# Hand-made cases: NFKC (fullwidth letters and digits, ligatures, circled digits, compatibility
# spaces, combining sequences), whitespace runs, leading/trailing spaces, unknown characters,
# piece texts of every kind.
CASES = [
    "", " ", "   ", "\t", "\n", "the", " the", "the ", "  the  ", "the quick brown fox",
    "the  quick   brown    fox", "the\tquick\nbrown\r\nfox", "\u3000the\u3000fox\u3000",
    "the\u00a0fox", "the\u2003fox\u2009is", "ＴＨＥ ｑｕｉｃｋ ｂｒｏｗｎ", "ｔｈｅ　ｆｏｘ",
    "０１２３４５６７８９", "①②③ ⑩ ⑳", "ﬁ ﬂ ﬀ ﬃ ﬄ", "the ﬁsh ﬂies", "Ⅻ ⅷ ㈱ ㎏ ㍻",
    "e\u0301 a\u0300 o\u0308", "caf\u00e9 cafe\u0301", "A\u030a Å Å", "ﾊﾟﾝ ｶﾞ ｱｲｳ",
    "½ ¼ ³ ² x²", "™ © ®", "…", "“quoted” ‘single’", "‐ ‑ ‒ – —", "µ Ω K Å",
    "the earth is round", "the quick brown fox is round", "The Quick Brown Fox",
    "THE EARTH", "xyz", "the xyz fox", "日本語 the", "😀 the 🦊", "the\u200bfox",
    "the\ufefffox", "\u00adsoft\u00adhyphen", "tab\there", "a\x00b", "ctrl\x01\x02\x1f",
    "<bos>the", "the<eos>", "<start_of_turn>user the<end_of_turn>", "<|image|>",
    "the<|image|>fox", "<|video|> <|audio|> <|video> <video|>", "<img>", "<unk> <pad>",
    "\u2581the", "the\u2581\u2581fox", "▁", "ⅰⅱⅲ", "㋀ ㏠", "ǆ ǈ ǌ", "ſt ﬅ", "ㄱ ᄀ ﾡ",
    "𝐀𝐁𝐂 𝕏", "Ａ1 ｂ2 Ｃ3", "the  ", "  ", " \u3000 ", "fi\ufb01", "Thisk zz", "i.e. Th",
    "the<tag>package", "the <tag> package", "<tag>", "<tag><tag> <ctl>", "What does <ctl>",
    "the\u2581\u2581 package  ", "ｔｈｅ<tag>ｐａｃｋａｇｅ", "package\u2581",
]


def texts_from(path, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            out.append(r["prompt"])
            out.append(r["response"])
            if len(out) >= limit:
                break
    return out


def train(root):
    src = os.path.join(root, "tests/fixtures/debian-train-200.jsonl")
    sentences = texts_from(src, 10000)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=os.path.join(root, HERE, "bpe_nfkc"),
        model_type="bpe", vocab_size=500, normalization_rule_name="nmt_nfkc",
        character_coverage=1.0, byte_fallback=False, user_defined_symbols=["<tag>", "\u2581\u2581"],
        control_symbols=["<ctl>"], num_threads=1, minloglevel=2)
    os.remove(os.path.join(root, HERE, "bpe_nfkc.vocab"))
    os.replace(os.path.join(root, HERE, "bpe_nfkc.model"), os.path.join(root, HERE, "bpe_nfkc.spm"))
    # WORD with nmt_nfkc and UNIGRAM with identity normalization (whitespace kept), both with a
    # user-defined and a control piece: how each model treats them in the text.
    for name, kw in (("word_user", dict(model_type="word", vocab_size=300,
                                        normalization_rule_name="nmt_nfkc")),
                     ("unigram_user", dict(model_type="unigram", vocab_size=300,
                                           normalization_rule_name="identity",
                                           remove_extra_whitespaces=False))):
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_prefix=os.path.join(root, HERE, name),
            user_defined_symbols=["<tag>"], control_symbols=["<ctl>"], num_threads=1, minloglevel=2,
            **kw)
        os.remove(os.path.join(root, HERE, name + ".vocab"))
        os.replace(os.path.join(root, HERE, name + ".model"), os.path.join(root, HERE, name + ".spm"))


def check(root, binary):
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(root, HERE, "vectors.tsv"), encoding="utf-8")]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for m in MODELS:
            out = os.path.join(tmp, m)
            subprocess.run([binary, "tokenize", "--tokenizer", os.path.join(root, HERE, m), "--write-spm", out],
                           check=True)
            sp = spm.SentencePieceProcessor(model_file=out)
            mine = [r for r in rows if r[0] == m]
            ok = sum(sp.encode(bytes.fromhex(r[1]).decode("utf-8")) == [int(x) for x in r[2].split()] for r in mine)
            print("%s written by %s: %d of %d texts equal in sentencepiece" % (m, binary, ok, len(mine)))
            bad += len(mine) - ok
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true", help="retrain the three trained models first")
    ap.add_argument("--check", metavar="BIN", help="check models written by BIN instead of writing vectors")
    a = ap.parse_args()
    root = os.getcwd()
    if a.check:
        sys.exit(check(root, a.check))
    if a.train:
        train(root)
    texts = CASES + texts_from(os.path.join(root, "tests/fixtures/debian-eval-50.jsonl"), 40)
    texts += ["  " + t.upper() + "\u3000" for t in texts_from(os.path.join(root, "tests/fixtures/debian-eval-50.jsonl"), 6)]
    with open(os.path.join(root, HERE, "vectors.tsv"), "w", encoding="utf-8") as f:
        for m in MODELS:
            sp = spm.SentencePieceProcessor(model_file=os.path.join(root, HERE, m))
            for t in texts:
                ids = sp.encode(t)
                rt = 1 if sp.decode(ids) == t else 0
                f.write("%s\t%s\t%s\t%d\n" % (m, t.encode("utf-8").hex(), " ".join(map(str, ids)), rt))
    print("%d texts x %d models" % (len(texts), len(MODELS)), file=sys.stderr)


if __name__ == "__main__":
    main()
