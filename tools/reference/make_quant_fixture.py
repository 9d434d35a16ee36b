#!/usr/bin/env python3
"""Golden Q8_0 blocks for autograd/quant.c (tests/test_quant.c), made by the gguf Python package.

A [6, 64] float32 matrix (12 blocks of 32) is quantised with gguf.quants.quantize(x, Q8_0), the
reference llama.cpp's converter uses, and dequantised back with gguf.quants.dequantize. Rows:
  0-2  random normals at three scales (1e-3, 1, 300)
  3    a block whose max is 127 (scale exactly 1) holding halves 2.5, -2.5, 0.5, -0.5, 126.5: the
       rounding rule (halves away from zero) decides them; then a block with one huge value
  4    an all-zero block (scale 0) and a block of one repeated negative value
  5    values near the fp16 scale's limits: tiny (subnormal scale) and large (1e4)

Written to tests/fixtures/quant_q8_0.h5:
  /x        float32 [6, 64]   the input
  /blocks   int32   [12, 34]  the Q8_0 bytes, one block a row (scale fp16 little-endian, 32 int8)
  /dequant  float32 [6, 64]   the dequantised values

Run: python3 tools/reference/make_quant_fixture.py
"""
import os

import h5py
import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "quant_q8_0.h5")


def main():
    rng = np.random.default_rng(15)
    x = np.zeros((6, 64), np.float32)
    for r, s in enumerate([1e-3, 1.0, 300.0]):
        x[r] = rng.standard_normal(64) * s
    x[3, :32] = rng.integers(-126, 127, 32)
    x[3, :6] = [127, 2.5, -2.5, 0.5, -0.5, 126.5]
    x[3, 32:] = rng.standard_normal(32)
    x[3, 40] = 5e4
    x[4, 32:] = -0.75
    x[5, :32] = rng.standard_normal(32) * 1e-6
    x[5, 32:] = rng.standard_normal(32) * 1e4
    q = quantize(x, GGMLQuantizationType.Q8_0)  # [6, 68] bytes
    d = dequantize(q, GGMLQuantizationType.Q8_0)
    with h5py.File(OUT, "w") as f:
        f["x"] = x
        f["blocks"] = q.reshape(12, 34).astype(np.int32)
        f["dequant"] = d.astype(np.float32)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
