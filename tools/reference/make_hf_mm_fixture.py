#!/usr/bin/env python3
"""Golden fixture for Gemma 3 with images through transformers: the tiny
Gemma3ForConditionalGeneration already committed in tests/fixtures/hf/gemma3_mm (SigLIP tower:
28 px, patch 14, one layer, width 16; mm_tokens_per_image 4; image token 152, boi 150, eoi 151;
made by make_hf_fixtures.py) run with images: two rows, the first with one image, the second
with two, each image's 4 tokens between boi and eoi, token_type_ids 1 on them (transformers'
bidirectional image mask). Written to tests/fixtures/hf/gemma3_mm_images_ref.h5:

  input_ids [2, T] int32, pixel_values [3, 28, 28, 3] float32 (HWC: ours; NCHW is fed to HF),
  image_features [3, 4, 32] (get_image_features: the projected soft tokens), logits [2, T, 160]

and a 160-piece tokenizer.json for that model (written here, not by transformers: the tiny
model has none): <pad> <eos> <bos> <unk>, the printable ASCII characters with a space as U+2581,
"\n" and "\n\n", <start_of_image> 150, <end_of_image> 151, <image_soft_token> 152, <img> 153,
<unusedN> fillers; so that `gemmatrain generate --image` can run on the directory.

Run: python3 tools/reference/make_hf_mm_fixture.py   (torch; not in a process that imported jax)
"""
import os

import h5py
import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "hf")


def row(rng, images):
    ids = list(rng.integers(3, 140, 3))
    for _ in range(images):
        ids += [150] + [152] * 4 + [151] + list(rng.integers(3, 140, 2))
    return ids


def write_tokenizer(path):
    import json
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for ch in [chr(c) for c in range(33, 127)] + ["\u2581", "\n", "\n\n"]:
        vocab[ch] = len(vocab)
    while len(vocab) < 150:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    for name in ("<start_of_image>", "<end_of_image>", "<image_soft_token>", "<img>"):
        vocab[name] = len(vocab)
    while len(vocab) < 160:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    special = {"<pad>", "<eos>", "<bos>", "<unk>", "<image_soft_token>"}
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": t in special}
             for t in ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_image>", "<end_of_image>",
                       "<image_soft_token>", "<img>", "\n\n")]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
           "pre_tokenizer": None, "post_processor": None,
           "decoder": {"type": "Sequence", "decoders": [
               {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}]},
           "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False,
                     "ignore_merges": False, "vocab": vocab, "merges": []}}
    with open(path, "w") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)


def main():
    from transformers import Gemma3ForConditionalGeneration
    model = Gemma3ForConditionalGeneration.from_pretrained(os.path.join(FIX, "gemma3_mm"),
                                                           attn_implementation="eager").float().eval()
    rng = np.random.default_rng(7)
    rows = [row(rng, 1), row(rng, 2)]
    T = max(len(r) for r in rows)
    rows = [r + list(rng.integers(3, 140, T - len(r))) for r in rows]
    ids = torch.tensor(rows, dtype=torch.long)
    pixels = rng.uniform(-1, 1, (3, 28, 28, 3)).astype("float32")
    pv = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    tt = (ids == 152).long()
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=pv)
        feats = getattr(feats, "pooler_output", feats)
        out = model(input_ids=ids, pixel_values=pv, token_type_ids=tt,
                    attention_mask=torch.ones_like(ids))
    path = os.path.join(FIX, "gemma3_mm_images_ref.h5")
    with h5py.File(path, "w") as f:
        f["input_ids"] = ids.numpy().astype("int32")
        f["pixel_values"] = pixels
        f["image_features"] = np.asarray(feats, "float32").reshape(3, 4, -1)
        f["logits"] = out.logits.float().numpy()
    print(path, tuple(out.logits.shape), float(out.logits.abs().max()))
    write_tokenizer(os.path.join(FIX, "gemma3_mm", "tokenizer.json"))


if __name__ == "__main__":
    main()
