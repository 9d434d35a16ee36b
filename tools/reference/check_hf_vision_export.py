#!/usr/bin/env python3
"""transformers reads our Gemma 3 Hugging Face export with its vision encoder (issue 16).

Runs build/tests/test_gemma3_hf_export with GT_HF_EXPORT_DIR so that it writes, with
gt_hf_gemma_save and .vision, transformers' tiny Gemma3ForConditionalGeneration
(tests/fixtures/hf/gemma3_mm) with LoRA adapters on its encoder merged into the kernels; loads
that directory with transformers' Gemma3ForConditionalGeneration (fp32, eager attention) and runs
the rows of tests/fixtures/hf/gemma3_mm_images_ref.h5 (1 and 2 images, token_type_ids on the
image tokens). The logits go to tests/fixtures/hf/gemma3_mm_export_ref.h5 (/logits [B, T, V]);
test_gemma3_hf_export checks ours, adapters applied, against them.
Run from the repository root after `make build/tests/test_gemma3_hf_export` (torch; not in a
process that imported jax).
"""
import os
import subprocess
import tempfile

import h5py
import numpy as np
import torch

REF = "tests/fixtures/hf/gemma3_mm_images_ref.h5"
OUT = "tests/fixtures/hf/gemma3_mm_export_ref.h5"


def main():
    from transformers import Gemma3ForConditionalGeneration
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, GT_HF_EXPORT_DIR=d, CK_FORK="no")
        subprocess.run(["build/tests/test_gemma3_hf_export"], env=env, check=True, stdout=subprocess.DEVNULL)
        model = Gemma3ForConditionalGeneration.from_pretrained(d, attn_implementation="eager").float().eval()
        image_token = model.config.image_token_index
        with h5py.File(REF, "r") as f:
            ids = torch.from_numpy(f["input_ids"][()].astype("int64"))
            pv = torch.from_numpy(f["pixel_values"][()]).permute(0, 3, 1, 2).contiguous()
            before = f["logits"][()]
        with torch.no_grad():
            out = model(input_ids=ids, pixel_values=pv, token_type_ids=(ids == image_token).long(),
                        attention_mask=torch.ones_like(ids))
        logits = out.logits.float().numpy()
    with h5py.File(OUT, "w") as f:
        f["logits"] = logits
    moved = np.abs(logits - before).max() / np.abs(before).max()
    print(f"{OUT}: logits {logits.shape}, max|logit| {np.abs(logits).max():.3f}, "
          f"{moved:.3g} x max from the unadapted model's")


if __name__ == "__main__":
    main()
