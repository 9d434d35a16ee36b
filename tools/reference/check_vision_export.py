#!/usr/bin/env python3
"""KerasHub reads our Gemma 3 export with its vision encoder (issue 16).

Runs build/tests/test_gemma3_mm with GT_VISION_EXPORT_DIR so that it writes, with
gt_keras_preset_save, the tiny multimodal model (tests/fixtures/presets/gemma3_mm) with LoRA
adapters on its encoder merged into the kernels; loads that directory with keras_hub's
Gemma3Backbone.from_preset (JAX, fp32) and runs Gemma3CausalLM on tests/fixtures/gemma3_mm.h5's
batch (0, 1 and 2 images with padding). The logits go to tests/fixtures/gemma3_mm_export.h5
(/expected/logits [B, T, V]); test_gemma3_mm checks ours against them.
Run from the repository root after `make build/tests/test_gemma3_mm`.
"""
import os
import subprocess
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
import h5py  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

FIX = "tests/fixtures/gemma3_mm.h5"
OUT = "tests/fixtures/gemma3_mm_export.h5"


def inputs_from_fixture(f, image_size):
    ids = f["inputs/token_ids"][()]
    pad = f["inputs/padding_mask"][()]
    vmask = f["inputs/vision_mask"][()]
    real = f["inputs/images"][()]
    B, T = ids.shape
    tok = int(vmask.sum()) // len(real)  # soft tokens per image
    images = np.zeros((B, 2, image_size, image_size, 3), "float32")
    indices = np.zeros((B, 2 * tok), "int32")
    k = 0
    for b in range(B):
        pos = np.nonzero(vmask[b])[0]
        for j in range(len(pos) // tok):
            images[b, j] = real[k]
            indices[b, j * tok:(j + 1) * tok] = pos[j * tok:(j + 1) * tok]
            k += 1
    return {"token_ids": ids, "padding_mask": pad, "images": images, "vision_indices": indices,
            "vision_mask": vmask}


def main():
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, GT_VISION_EXPORT_DIR=d, CK_FORK="no")
        subprocess.run(["build/tests/test_gemma3_mm"], env=env, check=True, stdout=subprocess.DEVNULL)
        backbone = keras_hub.models.Gemma3Backbone.from_preset(d)
        lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
        with h5py.File(FIX, "r") as f:
            inputs = inputs_from_fixture(f, backbone.vision_encoder.image_size)
        logits = np.asarray(lm(inputs), "float32")
    with h5py.File(OUT, "w") as f:
        f["expected/logits"] = logits
    print(f"{OUT}: logits {logits.shape}, max|logit| {np.abs(logits).max():.3f}")


if __name__ == "__main__":
    main()
