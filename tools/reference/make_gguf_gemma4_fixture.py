#!/usr/bin/env python3
"""Gemma 4 GGUF fixture: a tiny random transformers Gemma4ForCausalLM written as a llama.cpp GGUF
(architecture gemma4) the way llama.cpp's converter (convert_hf_to_gguf.py, class Gemma4Model)
writes one, and transformers' logits as the reference.

The model (fp32, eager attention) has every dense Gemma 4 feature: 9 layers of pattern 3
(layers 2, 5 and 8 global), global head dim 16 with one kv head and k = v (no v_proj),
proportional RoPE 0.25 on base 1e6 (local layers base 1e4, window 3), the last 3 layers
kv-shared (6, 7 <- 4; 8 <- 5: the shared part must start after a local, global pair, which
llama.cpp assumes) with a double-wide MLP, per-layer embeddings (P = 4), layer scalars, final soft-cap 8. Vocabulary: the
1024 pieces of tests/fixtures/spm/gemma4_chat_vocab.spm (written as the GGUF's SentencePiece
vocabulary, tokenizer.ggml.model llama).

GGUF, as the converter does for Gemma 4: tensor names from gguf.TensorNameMap(MODEL_ARCH.GEMMA4)
of the HF names (norms stored as they are: Gemma 4 has no 1 + w), layer_scalar as
blk.N.layer_output_scale.weight [1], the extra rope_freqs.weight (1 on the rotated frequency
pairs of global layers, 1e30 on the rest); metadata: context/embedding length, block count,
feed_forward_length per layer (doubled on kv-shared layers), head_count, head_count_kv per layer
(swa: num_key_value_heads, full: num_global_key_value_heads), key/value_length = global head dim,
key/value_length_swa = head dim, rope.dimension_count = global head dim, rope.dimension_count_swa
= head dim, rope.freq_base (full) and rope.freq_base_swa, layer_norm_rms_epsilon, sliding_window,
sliding_window_pattern (a bool per layer, true = local), shared_kv_layers,
embedding_length_per_layer_input, final_logit_softcapping.

Cross-check: llama.cpp itself (llama-cpp-python's bundled libllama, which knows gemma4) runs the
written file on the same tokens (f32 kv cache); its logits must agree with transformers' within
5e-3 x max|logit| (measured 1.2e-3: ggml's CPU GELU goes through an fp16 table; a wrong name,
norm convention or key gives errors of order 1). This shows the file follows llama.cpp's
conventions, not just ours.

Output: tests/fixtures/gguf/gemma4_tiny.gguf and tests/fixtures/gguf/gemma4_tiny_ref.h5
(/input_ids int32 [B, T], /logits float32 [B, T, V] from transformers).

Run: python3 tools/reference/make_gguf_gemma4_fixture.py  (transformers 5.x, torch, gguf,
sentencepiece, h5py, llama-cpp-python for the cross-check)
"""
import os
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "gguf")
GGUF = os.path.join(OUT, "gemma4_tiny.gguf")
REF = os.path.join(OUT, "gemma4_tiny_ref.h5")
SPM = os.path.join(FIX, "spm", "gemma4_chat_vocab.spm")
L, PAT, D, F, N, K, H, HG, P, W = 9, 3, 32, 24, 4, 2, 8, 16, 4, 3
SHARED, PARTIAL = 3, 0.25


def build():
    import torch
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=SPM)
    V = sp.get_piece_size()
    types = ["full_attention" if i % PAT == PAT - 1 else "sliding_attention" for i in range(L)]
    cfg = Gemma4TextConfig(
        vocab_size=V, hidden_size=D, intermediate_size=F, num_hidden_layers=L, num_attention_heads=N,
        num_key_value_heads=K, head_dim=H, global_head_dim=HG, num_global_key_value_heads=1,
        attention_k_eq_v=True, sliding_window=W, layer_types=types, final_logit_softcapping=8.0,
        hidden_size_per_layer_input=P, vocab_size_per_layer_input=V, num_kv_shared_layers=SHARED,
        use_double_wide_mlp=True, max_position_embeddings=4096,
        rope_parameters={
            "full_attention": {"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": PARTIAL},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
        tie_word_embeddings=True, attn_implementation="eager")
    torch.manual_seed(0)
    model = Gemma4ForCausalLM(cfg).float().eval()
    rng = np.random.default_rng(4404)
    state = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        if k.endswith("layer_scalar"):
            val = rng.uniform(0.5, 1.5, v.shape)
        elif "norm" in k:
            val = 1.0 + rng.normal(0, 0.3, v.shape)
        else:
            val = rng.normal(0, 0.5, v.shape)
        state[k] = torch.from_numpy(val.astype("float32"))
    model.load_state_dict(state, strict=False)
    ids = rng.integers(4, V, size=(2, 9)).astype(np.int32)
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids).long()).logits.numpy().astype(np.float32)
    return cfg, {k: v.numpy() for k, v in state.items()}, ids, logits, sp


def write_gguf(cfg, state, sp):
    import gguf
    arch = gguf.MODEL_ARCH.GEMMA4
    tmap = gguf.get_tensor_name_map(arch, L)
    w = gguf.GGUFWriter(GGUF, gguf.MODEL_ARCH_NAMES[arch])
    w.add_name("gemmatrain-gemma4-tiny-fixture")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(D)
    w.add_block_count(L)
    swa = [t == "sliding_attention" for t in cfg.layer_types]
    w.add_feed_forward_length([F if i < L - SHARED else 2 * F for i in range(L)])
    w.add_head_count(N)
    w.add_head_count_kv([K if s else 1 for s in swa])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_key_length(HG)
    w.add_value_length(HG)
    w.add_key_length_swa(H)
    w.add_value_length_swa(H)
    w.add_rope_dimension_count(HG)
    w.add_rope_dimension_count_swa(H)
    w.add_rope_freq_base(1e6)
    w.add_rope_freq_base_swa(1e4)
    w.add_final_logit_softcapping(8.0)
    w.add_sliding_window(W)
    w.add_sliding_window_pattern(swa)
    w.add_shared_kv_layers(SHARED)
    w.add_embedding_length_per_layer_input(P)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    # the vocabulary as SentencePiece pieces (llama.cpp's "llama" tokenizer model)
    V = sp.get_piece_size()
    toks, scores, ttypes = [], [], []
    for i in range(V):
        toks.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        t = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif toks[-1].startswith(b"<") and toks[-1].endswith(b">"):
            t = gguf.TokenType.USER_DEFINED
        ttypes.append(t)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(ttypes)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_pad_token_id(0)
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)
    for name, t in state.items():
        hf = name + ".weight" if name.endswith("layer_scalar") else name
        base, suffix = hf.rsplit(".", 1)
        new = tmap.get_name(base)
        if new is None:
            sys.exit(f"no GGUF name for {name}")
        w.add_tensor(f"{new}.{suffix}", np.ascontiguousarray(t.astype(np.float32)))
    n_rot = int(HG * PARTIAL / 2)
    w.add_tensor("rope_freqs.weight", np.array([1.0] * n_rot + [1e30] * (HG // 2 - n_rot), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


LLAMA_CHECK = r"""
import sys, numpy as np, h5py, llama_cpp
h = h5py.File(sys.argv[2]); ids = np.asarray(h["input_ids"]); ref = np.asarray(h["logits"])
m = llama_cpp.Llama(model_path=sys.argv[1], logits_all=True, n_ctx=64, verbose=False, type_k=0, type_v=0)  # f32 kv cache
worst = 0.0
for b in range(ids.shape[0]):
    m.reset(); m.eval([int(t) for t in ids[b]])
    got = np.asarray(m.scores[: ids.shape[1]], np.float32)
    worst = max(worst, float(np.abs(got - ref[b]).max() / np.abs(ref[b]).max()))
print(f"llama.cpp vs transformers: max|diff| / max|logit| = {worst:.2e}")
sys.exit(0 if worst < 5e-3 else 1)
"""


def main():
    os.makedirs(OUT, exist_ok=True)
    cfg, state, ids, logits, sp = build()
    write_gguf(cfg, state, sp)
    with h5py.File(REF, "w") as f:
        f["input_ids"] = ids
        f["logits"] = logits
    print(f"{GGUF}: {os.path.getsize(GGUF)} bytes; max|logit| {np.abs(logits).max():.3f}")
    # llama.cpp in its own process (its ggml and torch need not share one)
    rc = subprocess.call([sys.executable, "-c", LLAMA_CHECK, GGUF, REF])
    sys.exit(rc)


if __name__ == "__main__":
    main()
