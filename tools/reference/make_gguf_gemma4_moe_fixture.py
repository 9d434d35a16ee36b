#!/usr/bin/env python3
"""Gemma 4 MoE GGUF fixture: the tiny transformers MoE model of tests/fixtures/hf/gemma4_moe
(make_hf_gemma4_moe_fixture.py: 4 layers, 6 experts of width 12, top 2, k = v global layers,
partial RoPE 0.25, final soft-cap 8) written as a llama.cpp GGUF (architecture gemma4) the way
llama.cpp's converter (conversion/gemma.py, class Gemma4Model) writes one, and transformers'
logits on unpadded tokens as the reference.

Tensors, as the converter names them: gguf.TensorNameMap(MODEL_ARCH.GEMMA4) of the HF names, so
experts.gate_up_proj [E, 2F, D] -> blk.N.ffn_gate_up_exps.weight (gate rows first per expert),
experts.down_proj [E, D, F] -> blk.N.ffn_down_exps.weight, router.proj -> blk.N.ffn_gate_inp.weight,
pre_feedforward_layernorm_2 / post_feedforward_layernorm_1 / _2 -> pre_ffw_norm_2 / post_ffw_norm_1
/ post_ffw_norm_2; the converter's own renames router.scale -> blk.N.ffn_gate_inp.scale and
router.per_expert_scale -> blk.N.ffn_down_exps.scale; layer_scalar -> layer_output_scale.weight;
norms as they are (no 1 + w); the extra rope_freqs.weight. Metadata as make_gguf_gemma4_fixture.py
plus expert_count, expert_used_count, expert_feed_forward_length. Vocabulary: 61 made-up pieces
(<pad>, <eos>, <bos>, <unk>, then "t4".."t60"), enough for llama.cpp to load the file.

Cross-check: llama.cpp (llama-cpp-python's bundled libllama) runs the file on the same tokens (f32
kv cache); its logits must agree with transformers' within 5e-3 x max|logit|.

Output: tests/fixtures/gguf/gemma4_moe.gguf, tests/fixtures/gguf/gemma4_moe_ref.h5 (/input_ids
int32 [B, T], /logits float32 [B, T, V]).
Run: python3 tools/reference/make_gguf_gemma4_moe_fixture.py  (transformers 5.x, torch, gguf, h5py,
safetensors, llama-cpp-python for the cross-check)
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
HF = os.path.join(FIX, "hf", "gemma4_moe")
OUT = os.path.join(FIX, "gguf")
GGUF = os.path.join(OUT, "gemma4_moe.gguf")
REF = os.path.join(OUT, "gemma4_moe_ref.h5")


def reference(V):
    import torch
    from transformers import Gemma4ForCausalLM
    model = Gemma4ForCausalLM.from_pretrained(HF, torch_dtype=torch.float32, attn_implementation="eager").eval()
    ids = np.random.default_rng(4171).integers(4, V, size=(2, 9)).astype(np.int32)
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids).long()).logits.numpy().astype(np.float32)
    return ids, logits


def vocabulary(w, V):
    import gguf
    toks = [b"<pad>", b"<eos>", b"<bos>", b"<unk>"] + [f"t{i}".encode() for i in range(4, V)]
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.UNKNOWN] + [gguf.TokenType.NORMAL] * (V - 4)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * 4 + [-float(i) for i in range(4, V)])
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_pad_token_id(0)
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)


def write_gguf(cfg, state):
    import gguf
    L, D, V = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]
    H = cfg["head_dim"]
    HG = int(cfg["per_layer_config"][str(cfg["layer_types"].index("full_attention"))]["head_dim"])
    arch = gguf.MODEL_ARCH.GEMMA4
    tmap = gguf.get_tensor_name_map(arch, L)
    w = gguf.GGUFWriter(GGUF, gguf.MODEL_ARCH_NAMES[arch])
    w.add_name("gemmatrain-gemma4-moe-fixture")
    w.add_context_length(4096)
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    swa = [t == "sliding_attention" for t in cfg["layer_types"]]
    w.add_head_count_kv([cfg["num_key_value_heads"] if s else 1 for s in swa])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_key_length(HG)
    w.add_value_length(HG)
    w.add_key_length_swa(H)
    w.add_value_length_swa(H)
    w.add_rope_dimension_count(HG)
    w.add_rope_dimension_count_swa(H)
    w.add_rope_freq_base(1e6)
    w.add_rope_freq_base_swa(1e4)
    w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    w.add_sliding_window(cfg["sliding_window"])
    w.add_sliding_window_pattern(swa)
    w.add_shared_kv_layers(0)
    w.add_embedding_length_per_layer_input(0)
    w.add_expert_count(cfg["num_experts"])
    w.add_expert_used_count(cfg["top_k_experts"])
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocabulary(w, V)
    for name, t in state.items():
        bid = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        if name.endswith("router.scale"):
            new = f"blk.{bid}.ffn_gate_inp.scale"
        elif name.endswith("router.per_expert_scale"):
            new = f"blk.{bid}.ffn_down_exps.scale"
        else:
            hf = name if name.endswith(".weight") else name + ".weight"
            base = tmap.get_name(hf[: -len(".weight")])
            if base is None:
                sys.exit(f"no GGUF name for {name}")
            new = base + ".weight"
        t = t.reshape(1) if t.ndim == 0 else t
        w.add_tensor(new, np.ascontiguousarray(t.astype(np.float32)))
    partial = cfg["rope_parameters"]["full_attention"]["partial_rotary_factor"]
    n_rot = int(HG * partial / 2)
    w.add_tensor("rope_freqs.weight", np.array([1.0] * n_rot + [1e30] * (HG // 2 - n_rot), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


LLAMA_CHECK = r"""
import sys, numpy as np, h5py, llama_cpp
h = h5py.File(sys.argv[2]); ids = np.asarray(h["input_ids"]); ref = np.asarray(h["logits"])
m = llama_cpp.Llama(model_path=sys.argv[1], logits_all=True, n_ctx=64, verbose=False, type_k=0, type_v=0)
worst = 0.0
for b in range(ids.shape[0]):
    m.reset(); m.eval([int(t) for t in ids[b]])
    got = np.asarray(m.scores[: ids.shape[1]], np.float32)
    worst = max(worst, float(np.abs(got - ref[b]).max() / np.abs(ref[b]).max()))
print(f"llama.cpp vs reference ({sys.argv[2]}): max|diff| / max|logit| = {worst:.2e}")
sys.exit(0 if worst < float(sys.argv[3]) else 1)
"""


def main():
    from safetensors.numpy import load_file
    with open(os.path.join(HF, "config.json")) as f:
        cfg = json.load(f)
    state = load_file(os.path.join(HF, "model.safetensors"))
    state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    ids, logits = reference(cfg["vocab_size"])
    os.makedirs(OUT, exist_ok=True)
    write_gguf(cfg, state)
    with h5py.File(REF, "w") as f:
        f["input_ids"] = ids
        f["logits"] = logits
    print(f"{GGUF}: {os.path.getsize(GGUF)} bytes; max|logit| {np.abs(logits).max():.3f}")
    sys.exit(subprocess.call([sys.executable, "-c", LLAMA_CHECK, GGUF, REF, "5e-3"]))


if __name__ == "__main__":
    main()
