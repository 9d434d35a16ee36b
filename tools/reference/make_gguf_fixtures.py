#!/usr/bin/env python3
"""GGUF fixtures, made with the `gguf` package (llama.cpp's own Python reader/writer).

1. tests/fixtures/tiny.gguf: every metadata value type and small tensors of each supported ggml
   type (quantised by gguf.quants), plus tests/fixtures/tiny_gguf_expected.h5 with the values
   gguf.quants.dequantize gives back (the reference our dequantiser must reproduce; F64, which
   gguf cannot dequantize, as numpy rounds it) and /fp16_all: all 65536 fp16 bit patterns as
   numpy converts them.
2. With the real Gemma 3 270M GGUF ($GT_GEMMA3_270M_GGUF, else out/models/gemma-3-270m-q4_k_m.gguf,
   which `make setup` fetches with tools/get_model.sh) and the real Gemma 3 tokenizer.json
   ($GT_GEMMA3_TOKENIZER_JSON, e.g. from Hugging Face google/gemma-3-270m; not in the repository):
   tests/fixtures/gemma3_270m_ref.h5 holding
   - dequantised slices of one tensor per ggml type in the file (gguf.quants.dequantize),
   - a fixed prompt's token ids (HF `tokenizers` on that tokenizer.json),
   - the last position's full logits and 16 greedy tokens from KerasHub's Gemma3Backbone (JAX,
     fp32) loaded with the GGUF's dequantised weights: an implementation independent of ours.

Run: pip install gguf numpy h5py keras-hub jax tokenizers
     tools/get_model.sh
     GT_GEMMA3_TOKENIZER_JSON=/path/to/tokenizer.json KERAS_BACKEND=jax python3 tools/reference/make_gguf_fixtures.py
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import gguf  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "..", "tests", "fixtures")
REAL = os.environ.get("GT_GEMMA3_270M_GGUF") or os.path.join(HERE, "..", "..", "out", "models",
                                                               "gemma-3-270m-q4_k_m.gguf")
TOKENIZER = os.environ.get("GT_GEMMA3_TOKENIZER_JSON", "")
PROMPT = "The capital of France is"


def tiny():
    rng = np.random.default_rng(3)
    path = os.path.join(FIX, "tiny.gguf")
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.15625)
    w.add_uint64("t.u64", 1 << 40)
    w.add_int64("t.i64", -(1 << 40))
    w.add_float64("t.f64", 2.718281828459045)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ▁world")
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, -1.25])
    w.add_array("t.arr_str", ["<bos>", "", "▁the"])
    w.add_uint32("gemma3.block_count", 2)
    types = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0, "q4_1": gguf.GGMLQuantizationType.Q4_1,
             "q5_0": gguf.GGMLQuantizationType.Q5_0, "q5_1": gguf.GGMLQuantizationType.Q5_1,
             "q4_k": gguf.GGMLQuantizationType.Q4_K, "q5_k": gguf.GGMLQuantizationType.Q5_K,
             "q6_k": gguf.GGMLQuantizationType.Q6_K,
             # appended last so the tensors above keep their random draws
             "q2_k": gguf.GGMLQuantizationType.Q2_K, "q3_k": gguf.GGMLQuantizationType.Q3_K,
             "f64": gguf.GGMLQuantizationType.F64}
    # offsets of the fp16 scales in each random K-quant block (set to sane values below)
    d_offsets = {"q6_k": [208], "q2_k": [80, 82], "q3_k": [108]}
    expected = {}
    for name, qt in types.items():
        x = rng.normal(0, 1, (2, 512)).astype(np.float32)
        if name == "f64":
            # doubles that round, overflow to inf, fall to fp32 subnormals or zero, and a NaN
            q = rng.normal(0, 1, (2, 512)) * 10.0 ** rng.integers(-60, 60, (2, 512))
            q[0, :6] = [1e300, -1e300, 1e-40, -1e-50, np.nan, 1 + 2.0 ** -30]
            w.add_tensor(name, q, raw_dtype=qt)
            # gguf's dequantize has no F64: GGUFReader hands out the float64 values; numpy rounds
            with np.errstate(over="ignore"):
                expected[name] = q.astype(np.float32)
            continue
        try:
            q = gguf.quants.quantize(x, qt)
        except NotImplementedError:
            # gguf cannot quantise K-quants: random block bytes with sane fp16 scales instead;
            # dequantisation of any bytes is well defined, and gguf's dequantize is the reference
            block, size = gguf.GGML_QUANT_SIZES[qt]
            q = rng.integers(0, 256, (2, 512 // block * size), dtype=np.uint8)
            d_at = d_offsets.get(name, [0, 2])
            for r_ in range(2):
                for b in range(512 // block):
                    for off in d_at:
                        h = np.float16(rng.uniform(0.001, 0.05)).tobytes()
                        q[r_, b * size + off:b * size + off + 2] = np.frombuffer(h, np.uint8)
        w.add_tensor(name, q, raw_dtype=qt)
        expected[name] = gguf.quants.dequantize(q, qt).reshape(x.shape).astype(np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with h5py.File(os.path.join(FIX, "tiny_gguf_expected.h5"), "w") as f:
        for k, v in expected.items():
            f[k] = v
        # every fp16 bit pattern as numpy converts it to fp32 (NaN payloads included)
        f.create_dataset("fp16_all", data=np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32),
                         shuffle=True, compression="gzip", compression_opts=9)
    print(f"{path}: {os.path.getsize(path)} bytes, tensors {list(expected)}")


def real():
    if not os.path.exists(REAL):
        print(f"skip the real model: {REAL} not found (tools/get_model.sh, or set GT_GEMMA3_270M_GGUF)")
        return
    if not TOKENIZER or not os.path.exists(TOKENIZER):
        print("skip the real model: set GT_GEMMA3_TOKENIZER_JSON to the real Gemma 3 tokenizer.json")
        return
    r = gguf.GGUFReader(REAL)
    out = {}
    seen = set()
    for t in r.tensors:
        tn = t.tensor_type.name
        if tn in seen:
            continue
        seen.add(tn)
        deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        mid = len(deq) // 2
        out[t.name] = (deq[:512], deq[mid:mid + 512], mid)
    weights = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
               for t in r.tensors}

    import keras_hub
    from tokenizers import Tokenizer

    ids = [2] + Tokenizer.from_file(TOKENIZER).encode(PROMPT, add_special_tokens=False).ids
    bb = keras_hub.models.Gemma3Backbone(
        vocabulary_size=262144, image_size=None, num_layers=18, num_query_heads=4,
        num_key_value_heads=1, hidden_dim=640, intermediate_dim=2048, head_dim=256,
        query_head_dim_normalize=True, use_query_key_norm=True, use_post_ffw_norm=True,
        use_post_attention_norm=True, use_sliding_window_attention=True, sliding_window_size=512,
        dtype="float32")
    bb.get_layer("token_embedding").embeddings.assign(weights["token_embd.weight"])
    bb.get_layer("final_normalization").scale.assign(weights["output_norm.weight"] - 1)
    D, N, K, H = 640, 4, 1, 256
    for i in range(18):
        blk = bb.get_layer(f"decoder_block_{i}")
        g = lambda n: weights[f"blk.{i}.{n}.weight"]  # noqa: E731
        blk.pre_attention_norm.scale.assign(g("attn_norm") - 1)
        blk.post_attention_norm.scale.assign(g("post_attention_norm") - 1)
        blk.pre_ffw_norm.scale.assign(g("ffn_norm") - 1)
        blk.post_ffw_norm.scale.assign(g("post_ffw_norm") - 1)
        att = blk.attention
        att.query_norm.scale.assign(g("attn_q_norm") - 1)
        att.key_norm.scale.assign(g("attn_k_norm") - 1)
        att.query_dense.kernel.assign(g("attn_q").reshape(N, H, D).transpose(0, 2, 1))
        att.key_dense.kernel.assign(g("attn_k").reshape(K, H, D).transpose(0, 2, 1))
        att.value_dense.kernel.assign(g("attn_v").reshape(K, H, D).transpose(0, 2, 1))
        att.output_dense.kernel.assign(g("attn_output").T.reshape(N, H, D))
        blk.gating_ffw.kernel.assign(g("ffn_gate").T)
        blk.gating_ffw_2.kernel.assign(g("ffn_up").T)
        blk.ffw_linear.kernel.assign(g("ffn_down").T)
    emb = weights["token_embd.weight"]

    def logits_of(seq):
        x = np.asarray([seq], "int32")
        h = bb({"token_ids": x, "padding_mask": np.ones_like(x)})
        return np.asarray(h[0]) @ emb.T

    first = logits_of(ids)
    seq = list(ids)
    for _ in range(16):  # greedy, one full forward per token (no cache: nothing to share with ours)
        seq.append(int(np.argmax(logits_of(seq)[-1])))
    with h5py.File(os.path.join(FIX, "gemma3_270m_ref.h5"), "w") as f:
        for name, (a, b, mid) in out.items():
            g = f.create_group(f"dequant/{name}")
            g["head"] = a
            g["middle"] = b
            g.attrs["middle_offset"] = mid
        f["prompt_ids"] = np.asarray(ids, "int32")
        f["last_logits"] = first[-1].astype(np.float32)
        f["greedy_ids"] = np.asarray(seq[len(ids):], "int32")
    print(f"real: types {sorted(seen)}, prompt {ids}, greedy {seq[len(ids):]}")


if __name__ == "__main__":
    what = sys.argv[1:] or ["tiny", "real"]
    if "tiny" in what:
        tiny()
    if "real" in what:
        real()
