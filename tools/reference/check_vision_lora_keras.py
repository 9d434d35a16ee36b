#!/usr/bin/env python3
"""KerasHub reads our .lora.h5 of a Gemma 3 with its vision encoder (issue 16).

Runs build/tests/test_vision_lora_keras with GT_VISION_LORA_FILE so that it writes, with
gt_keras_lora_save_mm, adapters for the tiny multimodal preset tests/fixtures/presets/gemma3_mm
(rank 2: the decoder's query and value, every encoder block's query/key/value/out projections);
loads the preset with keras_hub's Gemma3Backbone.from_preset (JAX, fp32), enables LoRA on those
layers (enable_lora(2, target_layer_names=[...])), load_lora_weights(file), and runs
Gemma3CausalLM on one row of 16 tokens with one image (4 soft tokens at positions 5-8).
Writes tests/fixtures/gemma3_mm_lora_keras.h5: /inputs/{token_ids, vision_mask} [1, 16] int32,
/inputs/images [1, S, S, 3], /expected/logits [1, 16, V]; test_vision_lora_keras checks ours.
Run from the repository root after `make build/tests/test_vision_lora_keras`.
"""
import os
import subprocess
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
import h5py  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

PRESET = "tests/fixtures/presets/gemma3_mm"
OUT = "tests/fixtures/gemma3_mm_lora_keras.h5"
TARGETS = ["query", "value", "query_proj", "key_proj", "value_proj", "out_proj"]


def main():
    backbone = keras_hub.models.Gemma3Backbone.from_preset(PRESET)
    backbone.enable_lora(2, target_layer_names=TARGETS)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "adapter.lora.h5")
        env = dict(os.environ, GT_VISION_LORA_FILE=path, CK_FORK="no")
        subprocess.run(["build/tests/test_vision_lora_keras"], env=env, check=True, stdout=subprocess.DEVNULL)
        backbone.load_lora_weights(path)
    lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    rng = np.random.default_rng(5)
    T, S = 16, backbone.vision_encoder.image_size
    ids = rng.integers(3, 60, (1, T)).astype("int32")
    vmask = np.zeros((1, T), "int32")
    vmask[0, 5:9] = 1
    images = rng.uniform(-1, 1, (1, 1, S, S, 3)).astype("float32")
    inputs = {"token_ids": ids, "padding_mask": np.ones((1, T), "int32"), "images": images,
              "vision_indices": np.arange(5, 9, dtype="int32")[None], "vision_mask": vmask}
    logits = np.asarray(lm(inputs), "float32")
    with h5py.File(OUT, "w") as f:
        f["inputs/token_ids"] = ids
        f["inputs/vision_mask"] = vmask
        f["inputs/images"] = images[0]
        f["expected/logits"] = logits
    print(f"{OUT}: logits {logits.shape}, max|logit| {np.abs(logits).max():.3f}")


if __name__ == "__main__":
    main()
