#!/usr/bin/env python3
"""Exit 0 when two HDF5 files hold the same groups, datasets (shape, dtype, values) and
attributes; HDF5 object timestamps, which make byte comparison fail, are ignored.
usage: tools/faults/h5same.py A.h5 B.h5   (the ENOSPC campaign, tools/faults/enospc.sh)"""
import sys

import h5py
import numpy as np


def items(f):
    out = {}
    def visit(name, obj):
        attrs = {k: np.asarray(v).tobytes() for k, v in obj.attrs.items()}
        if isinstance(obj, h5py.Dataset):
            out[name] = (obj.shape, str(obj.dtype), np.asarray(obj[()]).tobytes(), attrs)
        else:
            out[name] = ("group", attrs)
    f.visititems(visit)
    out["/"] = ("root", {k: np.asarray(v).tobytes() for k, v in f.attrs.items()})
    return out


try:
    with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
        sys.exit(0 if items(a) == items(b) else 1)
except OSError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
