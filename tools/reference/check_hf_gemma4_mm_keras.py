#!/usr/bin/env python3
"""KerasHub check of a preset gemmatrain converted from the HF Gemma 4 fixture directory.

tests/test_hf_gemma4_mm.c (with GT_HF_GEMMA4_MM_EXPORT_DIR=DIR) writes DIR/conv_preset:
tests/fixtures/hf/gemma4_mm (decoder + vision + audio towers, written by transformers) ->
gemmatrain's HF directory -> `gemmatrain convert` -> a KerasHub preset. This script loads that
preset with keras_hub.models.Gemma4CausalLM.from_preset (JAX backend; no torch in this process)
and runs the fixture's text + image + audio prompt through it (Gemma4Backbone's inputs: the
image and audio soft-token masks and indices from the ids 52 / 55 of the fixture's config.json),
comparing the logits with transformers' in tests/fixtures/hf/gemma4_mm/expected.h5: exit status
1 beyond 1e-4 x max.

Run: KERAS_BACKEND=jax python3 tools/reference/check_hf_gemma4_mm_keras.py DIR/conv_preset
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
IMAGE_TOKEN, AUDIO_TOKEN = 52, 55


def main(preset):
    with h5py.File(os.path.join(ROOT, "tests", "fixtures", "hf", "gemma4_mm", "expected.h5")) as f:
        ids = f["inputs/token_ids"][()]
        want = f["expected/logits"][()]
        pix, pos = f["inputs/pixels"][()], f["inputs/positions"][()]
        mel, mel_mask = f["inputs/mel"][()], f["inputs/mel_mask"][()]
    T = ids.shape[1]
    vm = (ids == IMAGE_TOKEN).astype("int32")
    am = (ids == AUDIO_TOKEN).astype("int32")
    inp = {"token_ids": ids, "padding_mask": np.ones_like(ids),
           "position_ids": np.arange(T, dtype="int32")[None],
           "pixel_values": pix[:, None], "pixel_position_ids": pos[:, None],
           "vision_indices": np.nonzero(vm[0])[0][None].astype("int32"), "vision_mask": vm,
           "audio_mel": mel[:, None], "audio_mel_mask": mel_mask[:, None],
           "audio_indices": np.nonzero(am[0])[0][None].astype("int32"), "audio_mask": am}
    lm = keras_hub.models.Gemma4CausalLM.from_preset(preset, preprocessor=None)
    got = np.asarray(lm(inp))
    diff = np.abs(got - want).max() / np.abs(want).max()
    print(f"KerasHub on gemmatrain's preset vs transformers on the HF fixture: {diff:.3g} x max")
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
