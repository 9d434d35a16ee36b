#!/usr/bin/env python3
"""Small, valid seed inputs for the fuzz targets that the test fixtures do not provide.

- seeds/gguf/tiny_gemma3.gguf: a one-layer Gemma 3 (hidden 8, 2 query heads of 4, 1 KV head,
  MLP 16) with a 300-piece tokenizer in tokenizer.ggml.*, written by the `gguf` package, so the
  fuzzer starts from a file that reaches the model mapping and the tokenizer, not only the parser.
- seeds/tokenizer_json/*.json: tokenizer.json files in the Gemma layout (BPE, byte fallback,
  added tokens, Replace normalizer, Split pre-tokenizer, Sequence decoder) and a Prepend/Strip one.
- seeds/tokenizer_spm/gemma_like.spm: the same pieces as a SentencePiece BPE ModelProto.
- seeds/checkpoint/multi_value_config.h5: the shape of a crash fuzz_checkpoint found (a /config
  of 40 strings read into one string's room); kept so that every run starts from it.
Synthetic vocabularies: nothing is copied from a real tokenizer.

Run: pip install gguf numpy sentencepiece h5py; python3 tools/fuzz/make_seeds.py
"""
import json
import os

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
SP = "\u2581"


def vocabulary():
    """300 pieces: specials, the 256 byte pieces, then letters and merged pieces."""
    pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "\n", "\n\n"]
    types = [3, 3, 3, 2, 3, 3, 4, 4]  # CONTROL, UNKNOWN, USER_DEFINED
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    merges = []
    for ch in "abcdehlortw":
        pieces.append(ch)
        types.append(1)
    pieces.append(SP)
    types.append(1)
    for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (SP, "w"), ("o", "r"),
                 (SP + "w", "or"), ("l", "d"), (SP + "wor", "ld"), (SP, "a"), ("a", "b"),
                 (SP, "hello"), ("t", "h"), (SP, "th"), ("e", "r"), ("c", "a"), ("ca", "t"),
                 ("d", "o"), (SP, "do"), ("r", "e")]:
        if a not in pieces:
            pieces.append(a)
            types.append(1)
        pieces.append(a + b)
        types.append(1)
        merges.append((a, b))
    assert len(set(pieces)) == len(pieces)
    return pieces, types, merges


def tiny_gemma3_gguf(pieces, types):
    rng = np.random.default_rng(7)
    path = os.path.join(SEEDS, "gguf", "tiny_gemma3.gguf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    D, N, K, H, F, V = 8, 2, 1, 4, 16, len(pieces)
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_context_length(64)
    w.add_embedding_length(D)
    w.add_block_count(1)
    w.add_feed_forward_length(F)
    w.add_head_count(N)
    w.add_head_count_kv(K)
    w.add_key_length(H)
    w.add_value_length(H)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_sliding_window(4)
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores([-float(i) for i in range(V)])
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_pad_token_id(0)

    def t(name, *shape, f16=False):
        x = rng.normal(0, 0.5, shape).astype(np.float16 if f16 else np.float32)
        w.add_tensor(name, x)

    t("token_embd.weight", V, D)
    t("output_norm.weight", D)
    for n, shape in [("attn_norm", (D,)), ("attn_q", (N * H, D)), ("attn_k", (K * H, D)),
                     ("attn_v", (K * H, D)), ("attn_output", (D, N * H)), ("attn_q_norm", (H,)),
                     ("attn_k_norm", (H,)), ("post_attention_norm", (D,)), ("ffn_norm", (D,)),
                     ("post_ffw_norm", (D,)), ("ffn_gate", (F, D)), ("ffn_up", (F, D)),
                     ("ffn_down", (D, F))]:
        t(f"blk.0.{n}.weight", *shape, f16=n in ("ffn_up", "ffn_down"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{path}: {os.path.getsize(path)} bytes")


def tokenizer_jsons(pieces, types, merges):
    d = os.path.join(SEEDS, "tokenizer_json")
    os.makedirs(d, exist_ok=True)
    added = [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": types[i] in (2, 3)}
             for i, p in enumerate(pieces) if types[i] in (2, 3, 4)]
    gemma = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SP},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},
                          "behavior": "MergedWithPrevious", "invert": False},
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SP}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {p: i for i, p in enumerate(pieces)},
                  "merges": [[a, b] for a, b in merges]},
    }
    with open(os.path.join(d, "gemma_like.json"), "w", encoding="utf-8") as f:
        json.dump(gemma, f, ensure_ascii=False)
    # Older layout: merges as "a b" strings, a Prepend + Replace normalizer, a Strip decoder
    small = [p for p in pieces if not p.startswith("<0x")][:40]
    legacy = {
        "added_tokens": [{"id": 0, "content": "<pad>", "special": True},
                         {"id": 3, "content": "<unk>", "special": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SP},
            {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SP}, "content": " "},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": False, "fuse_unk": True,
                  "vocab": {p: i for i, p in enumerate(small)},
                  "merges": [f"{a} {b}" for a, b in merges if a in small and b in small and a + b in small]},
    }
    with open(os.path.join(d, "legacy.json"), "w", encoding="utf-8") as f:
        json.dump(legacy, f, ensure_ascii=False, indent=1)
    print(f"{d}: gemma_like.json, legacy.json")


def spm_model(pieces, types):
    """A SentencePiece BPE ModelProto (KerasHub's vocabulary.spm layout) of the same pieces."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(pieces)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 3, 2, 1, 0
    m.trainer_spec.unk_piece, m.trainer_spec.bos_piece = "<unk>", "<bos>"
    m.trainer_spec.eos_piece, m.trainer_spec.pad_piece = "<eos>", "<pad>"
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    for i, (p, t) in enumerate(zip(pieces, types)):
        sp = m.pieces.add()
        sp.piece, sp.score, sp.type = p, -float(i), t
    d = os.path.join(SEEDS, "tokenizer_spm")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "gemma_like.spm"), "wb") as f:
        f.write(m.SerializeToString())
    print(f"{d}: gemma_like.spm")


def checkpoint_crash():
    import h5py  # only here: the other seeds do not need it

    d = os.path.join(SEEDS, "checkpoint")
    os.makedirs(d, exist_ok=True)
    with h5py.File(os.path.join(d, "multi_value_config.h5"), "w", libver="latest") as f:
        f.attrs["format"] = np.bytes_(b"gemmatrain-checkpoint")
        f.attrs["format_version"] = np.int64(1)
        f.create_dataset("config", data=np.array([b"a" * 64] * 40, dtype="S64"))
        f.create_group("state").attrs["step"] = np.array([1, 2, 3], dtype=np.int64)
    print(f"{d}: multi_value_config.h5")


if __name__ == "__main__":
    p, t, m = vocabulary()
    tiny_gemma3_gguf(p, t)
    tokenizer_jsons(p, t, m)
    spm_model(p, t)
    checkpoint_crash()
