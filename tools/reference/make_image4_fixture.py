#!/usr/bin/env python3
"""Gemma 4 image converter fixture: KerasHub 0.32's Gemma4ImageConverter (JAX backend).

Runs the converter on the committed images of tests/fixtures/images/ (made by
make_image_fixtures.py; decoded here as there, with TensorFlow's libjpeg-turbo islow IDCT and
libpng, which tests/test_image.c shows our decoder matches bit for bit) under three settings,
and stores to tests/fixtures/image4_ref.h5:

  /<cfg>/<image>/patches   [P, 3 p p] float32  pixel_values (P = max_soft_tokens * pool^2)
  /<cfg>/<image>/pos       [P, 2] int32        pixel_position_ids
  /<cfg>/<image>/hw        [2] int32           the resized height and width
  /<cfg> attrs: patch, pool, max_soft_tokens, scale, offset, stride

cfg "shrink" (patch 4, pool 2, 8 tokens) makes every image smaller (the antialiased branch),
"grow" (patch 3, pool 2, 30 tokens) larger; "gemma4" is the presets' converter (patch 16,
pool 3, 280 tokens, scale 1/255) whose output is too big to commit whole: there patches keeps
every stride-th value of the flattened pixel_values (and pos every value).

Run: KERAS_BACKEND=jax python3 tools/reference/make_image4_fixture.py
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
IMG_DIR = os.path.join(ROOT, "tests", "fixtures", "images")
OUT = os.path.join(ROOT, "tests", "fixtures", "image4_ref.h5")

CONFIGS = {
    # name: (patch, pool, max_soft_tokens, scale, offset, stride, images)
    "shrink": (4, 2, 8, 1 / 255, 0.0, 1, None),
    "grow": (3, 2, 30, [1 / 127.5, 1 / 100.0, 1 / 64.0], [-1.0, 0.25, -0.5], 1,
             ["grey_25x50.jpg", "palette_24x17.png", "rgb_45x33.jpg", "rgba_20x20.png"]),
    "gemma4": (16, 3, 280, 1 / 255, 0.0, 613, ["rgb_45x33.jpg", "grey_18x30.png"]),
}


def decode(name):
    data = open(os.path.join(IMG_DIR, name), "rb").read()
    if name.endswith(".jpg"):
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    return tf.io.decode_png(data, channels=3).numpy()


def main():
    names = sorted(os.listdir(IMG_DIR))
    with h5py.File(OUT, "w") as f:
        for cname, (patch, pool, tokens, scale, offset, stride, only) in CONFIGS.items():
            g = f.create_group(cname)
            sc = np.broadcast_to(np.asarray(scale, np.float32), (3,))
            of = np.broadcast_to(np.asarray(offset, np.float32), (3,))
            g.attrs.update(patch=patch, pool=pool, max_soft_tokens=tokens, scale=sc, offset=of,
                           stride=stride)
            conv = keras_hub.layers.Gemma4ImageConverter(
                patch_size=patch, max_soft_tokens=tokens, pooling_kernel_size=pool,
                scale=list(map(float, sc)), offset=list(map(float, of)))
            for name in only or names:
                img = decode(name).astype(np.float32)[None]
                out = conv(img)
                pv = np.asarray(out["pixel_values"])[0].astype(np.float32)
                pos = np.asarray(out["pixel_position_ids"])[0].astype(np.int32)
                th, tw = conv.resizing.call(img).shape[1:3]
                h = g.create_group(name)
                kept = pv.reshape(-1)[::stride] if stride > 1 else pv
                h.create_dataset("patches", data=kept, compression="gzip", shuffle=True)
                h.create_dataset("pos", data=pos, compression="gzip", shuffle=True)
                h["hw"] = np.array([th, tw], np.int32)
                print(cname, name, img.shape[1:3], "->", (th, tw), pv.shape)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
