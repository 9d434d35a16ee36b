#!/usr/bin/env python3
"""Golden fixture for Gemma 3 prompts with images: KerasHub 0.32's Gemma3CausalLMPreprocessor
(num_vision_tokens_per_image 3, max_images_per_prompt 2, sequence_length 40, bos and eos) with
the real Gemma 3 vocabulary, on prompts holding 0, 1 and 2 <start_of_image> markers (one right
after a newline, where "\\n" + "\\n\\n" could merge).

The vocabulary comes from the real Gemma 3 270M GGUF through our own SentencePiece writer
(`gemmatrain tokenize --write-spm`; tests/test_spm.c checks it against sentencepiece), since
KerasHub's Gemma3Tokenizer reads a proto. Written to tests/fixtures/mm_preprocess.h5:

  /case_<i>/prompt, /case_<i>/response   (attributes, UTF-8)
  /case_<i>/token_ids, padding_mask, vision_mask, labels, sample_weight   int32 [40]

Run: python3 tools/reference/make_mm_preprocess_fixture.py [GGUF] (after `make`; the GGUF
defaults to out/models/gemma-3-270m-q4_k_m.gguf).
"""
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "mm_preprocess.h5")
CASES = [
    ("the quick <start_of_image>", "brown fox", 1),
    ("the <start_of_image> quick <start_of_image> brown", "fox", 2),
    ("Describe it:\n<start_of_image>", "A red square.", 1),
    ("<start_of_image><start_of_image>What differs?", "Colour.", 2),
    ("no image here", "ok", 0),
]


def main():
    gguf = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "out/models/gemma-3-270m-q4_k_m.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        spm = os.path.join(tmp, "gemma3.spm")
        subprocess.run([os.path.join(ROOT, "build/gemmatrain"), "tokenize", "--tokenizer", gguf,
                        "--write-spm", spm], check=True)
        tok = keras_hub.tokenizers.Gemma3Tokenizer(proto=spm)
    conv = keras_hub.layers.Gemma3ImageConverter(image_size=(4, 4))
    pp = keras_hub.models.Gemma3CausalLMPreprocessor(
        tokenizer=tok, image_converter=conv, sequence_length=40, max_images_per_prompt=2,
        num_vision_tokens_per_image=3)
    with h5py.File(OUT, "w") as f:
        for i, (prompt, response, n_img) in enumerate(CASES):
            x = {"prompts": [prompt], "responses": [response]}
            if n_img:
                x["images"] = [[np.ones((4, 4, 3), "float32")] * n_img]
            feats, labels, weights = pp(x)
            g = f.create_group(f"case_{i}")
            g.attrs["prompt"], g.attrs["response"] = prompt, response
            g["token_ids"] = np.asarray(feats["token_ids"][0], "int32")
            g["padding_mask"] = np.asarray(feats["padding_mask"][0], "int32")
            vm = feats.get("vision_mask")
            g["vision_mask"] = np.asarray(vm[0] if vm is not None else np.zeros(40), "int32")
            g["labels"] = np.asarray(labels[0], "int32")
            g["sample_weight"] = np.asarray(weights[0], "int32")
            print(i, list(np.asarray(feats["token_ids"][0])[:24]))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
