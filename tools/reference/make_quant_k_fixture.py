#!/usr/bin/env python3
"""Golden decodes of the GGUF block types model.frozen_dtype q4_k keeps (Q4_K, Q6_K, Q5_0), made
by the gguf Python package, for autograd/quant.c's gt_qt_block_f32 (tests/test_quant_k.c).

The gguf package has no Q4_K / Q6_K quantiser, so the blocks are random bytes with their fp16
scale fields set to chosen finite values (random normals at three magnitudes, plus zero and a
negative scale), which exercises every bit of the packed quants, scales and mins; the decode is
gguf.quants.dequantize, the reference llama.cpp's converter uses.

Q4_K quantisation: the gguf package has no Q4_K quantiser, so the reference is ggml's own
(quantize_row_q4_K_ref in the libggml-base shared library llama-cpp-python ships, via ctypes),
on 8 blocks of 256: normals at three scales, all positive, all zero, constant, one outlier,
uniform; then 120 blocks of mixed kinds and scales (mixed_blocks).

Written to tests/fixtures/quant_k.h5, per type T in q4_k, q6_k, q5_0:
  /T/blocks   int32   [n, bytes]  one block a row (the bytes as GGUF stores them)
  /T/dequant  float32 [n, values] the decoded values
and /q4_k_quant/x float32 [128, 256], /q4_k_quant/blocks int32 [128, 144].

Run: python3 tools/reference/make_quant_k_fixture.py
"""
import ctypes
import glob
import os

import h5py
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "quant_k.h5")
# name, type, bytes per block, values per block, byte offsets of the fp16 scale fields
TYPES = [("q4_k", T.Q4_K, 144, 256, [0, 2]), ("q6_k", T.Q6_K, 210, 256, [208]), ("q5_0", T.Q5_0, 22, 32, [0])]
SCALES = [1e-3, 0.05, 2.0, 0.0, -0.5, 3e-5]


def ggml_q4_k(x):
    import llama_cpp
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libggml-base.so*"))[0])
    f = lib.quantize_row_q4_K_ref
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    f.restype = None
    x = np.ascontiguousarray(x, np.float32)
    out = np.zeros(x.size // 256 * 144, np.uint8)
    f(x.ctypes.data, out.ctypes.data, x.size)
    return out.reshape(-1, 144)


def mixed_blocks(rng, n):
    """n blocks for the vectorised quantiser: per block a kind (normal, uniform, one-signed, half
    zero sub-blocks, an outlier, a constant sub-block, few levels, alternating signs) at a random
    scale from 1e-4 to 1e2, so sub-blocks side by side differ in every branch of the fit."""
    x = np.zeros((n, 256), np.float32)
    for i in range(n):
        sc = 10.0 ** rng.uniform(-4, 2)
        k = i % 8
        if k == 0:
            v = rng.standard_normal(256)
        elif k == 1:
            v = rng.uniform(-1, 1, 256)
        elif k == 2:
            v = np.abs(rng.uniform(-0.3, 0.7, 256))
        elif k == 3:
            v = rng.uniform(0, 1, 256) * (np.arange(256) % 32 >= 16)
        elif k == 4:
            v = rng.uniform(-0.5, 0.5, 256)
            v[rng.integers(256)] = 50
        elif k == 5:
            v = rng.uniform(-0.5, 0.5, 256)
            v[96:128] = 0.25
        elif k == 6:
            v = np.floor(rng.uniform(0, 4, 256))
        else:
            v = np.where((np.arange(256) // 32) % 2 == 1, 1.0, -(np.arange(256) % 3))
        x[i] = v * sc
    return x


def main():
    rng = np.random.default_rng(15)
    with h5py.File(OUT, "w") as f:
        for name, qt, nbytes, nvals, scale_at in TYPES:
            b = rng.integers(0, 256, (len(SCALES), nbytes), dtype=np.uint8)
            for i, s in enumerate(SCALES):
                for k, off in enumerate(scale_at):
                    v = np.float16(s * (1 + 0.25 * k) * (1 + 0.1 * rng.standard_normal()) if s else 0)
                    b[i, off:off + 2] = np.frombuffer(v.tobytes(), np.uint8)
            d = dequantize(b, qt).reshape(len(SCALES), nvals)
            assert np.all(np.isfinite(d))
            f[f"{name}/blocks"] = b.astype(np.int32)
            f[f"{name}/dequant"] = d.astype(np.float32)
        x = np.zeros((8, 256), np.float32)
        x[0] = rng.standard_normal(256) * 0.02
        x[1] = rng.standard_normal(256)
        x[2] = rng.standard_normal(256) * 300
        x[3] = np.abs(rng.standard_normal(256)) + 0.5
        x[5] = -0.375
        x[6] = rng.standard_normal(256) * 0.1
        x[6, 77] = 40
        x[7] = rng.uniform(-1, 1, 256)
        x = np.concatenate([x, mixed_blocks(rng, 120)])
        b = ggml_q4_k(x)
        assert np.array_equal(dequantize(b, T.Q4_K).shape, (len(x), 256))
        f["q4_k_quant/x"] = x
        f["q4_k_quant/blocks"] = b.astype(np.int32)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
