#!/usr/bin/env python3
"""PEFT adapter fixtures for tests/test_peft.c (pip install torch transformers peft h5py).

On the tiny Hugging Face models of tests/fixtures/hf (gemma3: Gemma3ForCausalLM, gemma4:
Gemma4ForCausalLM), with the real PEFT library:
  - theirs: a LoRA adapter PEFT makes (rank 2, every attention and MLP projection, random A and B:
    init_lora_weights=False), saved with save_pretrained into tests/fixtures/peft/<name>_theirs/,
    and its logits on fixed ids into <name>_theirs_ref.h5; for gemma3 also one with use_rslora and
    an alpha_pattern (gemma3_theirs_rslora);
  - ours: the directory gemmatrain writes for its own adapters (build/tests/test_peft with
    GT_WRITE_PEFT_FIXTURE, run first), loaded by PeftModel.from_pretrained onto the same model;
    the logits PEFT computes go to <name>_ours_ref.h5. test_peft checks that gemmatrain's logits
    with its adapters equal these, so PEFT reads our files as we mean them.

usage (from the repository root, after `make build/tests/test_peft`):
    python3 tools/reference/make_peft_fixtures.py
"""
import os
import shutil
import subprocess

import h5py
import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

OUT = "tests/fixtures/peft"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def base(name):
    m = AutoModelForCausalLM.from_pretrained(f"tests/fixtures/hf/{name}", torch_dtype=torch.float32,
                                             attn_implementation="eager")
    return m.eval()


def ids_for(model):
    g = np.random.default_rng(5)
    return g.integers(3, model.config.vocab_size, size=(2, 9)).astype(np.int32)


def write_ref(path, ids, logits):
    with h5py.File(path, "w") as f:
        f["input_ids"] = ids
        f["logits"] = logits.astype(np.float32)
    print("wrote", path, "max|logit|", float(np.abs(logits).max()))


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids, dtype=torch.long)).logits.float().numpy()


def theirs(name, tag, **kw):
    torch.manual_seed(3)
    m = base(name)
    cfg = LoraConfig(r=2, lora_alpha=5, target_modules=TARGETS, init_lora_weights=False, lora_dropout=0.0, **kw)
    pm = get_peft_model(m, cfg).eval()
    d = f"{OUT}/{name}_{tag}"
    shutil.rmtree(d, ignore_errors=True)
    pm.save_pretrained(d)
    ids = ids_for(m)
    write_ref(f"{d}_ref.h5", ids, logits_of(pm, ids))


def ours(name):
    d = f"{OUT}/{name}_ours"
    m = base(name)
    pm = PeftModel.from_pretrained(m, d).eval()
    ids = ids_for(m)
    write_ref(f"{d}_ref.h5", ids, logits_of(pm, ids))
    # the adapters must change the model: compare with the base
    delta = np.abs(logits_of(base(name), ids) - logits_of(pm, ids)).max()
    print(f"{name}: PEFT's logits with our adapter move by {delta:.3g} from the base model's")
    assert delta > 1e-3


def main():
    os.makedirs(OUT, exist_ok=True)
    env = dict(os.environ, GT_WRITE_PEFT_FIXTURE=OUT)
    subprocess.run(["build/tests/test_peft"], env=env, check=True)
    for name in ("gemma3", "gemma4"):
        ours(name)
        theirs(name, "theirs")
    theirs("gemma3", "theirs_rslora", use_rslora=True, alpha_pattern={"v_proj": 3.0})


if __name__ == "__main__":
    main()
