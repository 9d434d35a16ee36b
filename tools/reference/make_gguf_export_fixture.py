#!/usr/bin/env python3
"""Reference tensor bytes for gemmatrain's GGUF writer (tests/test_gguf_export.c).

Writes tests/fixtures/gguf_export/ref.gguf with the gguf package's GGUFWriter: the same values
(x[i] = 3 sin(0.37 i) for a [4, 96] matrix, with a zero block and a row of huge values) stored as
F32, F16, BF16 and Q8_0 by gguf.quants.quantize (the ggml reference quantisers). The test writes
them with models/io/gguf_writer.c and compares every tensor's bytes.

usage: pip install gguf numpy; python3 tools/reference/make_gguf_export_fixture.py
"""
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from gguf.quants import quantize

x = (3 * np.sin(0.37 * np.arange(4 * 96))).astype(np.float32).reshape(4, 96)
x[1, 32:64] = 0.0
x[2, :] *= 30000.0  # past F16's range in places: inf there
w = GGUFWriter("tests/fixtures/gguf_export/ref.gguf", "gemma3")
for name, qt in (("f32", T.F32), ("f16", T.F16), ("bf16", T.BF16), ("q8_0", T.Q8_0)):
    data = quantize(x, qt)
    w.add_tensor(name, data, raw_dtype=qt)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote tests/fixtures/gguf_export/ref.gguf")
