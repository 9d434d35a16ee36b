#!/usr/bin/env python3
"""Image decoding and preprocessing fixtures: KerasHub 0.32's Gemma3ImageConverter.

Writes a few small deterministic images (drawn here: gradients, stripes and noise, so resizing
has something to get wrong) to tests/fixtures/images/ as JPEG and PNG in the colour types that
matter (RGB, greyscale, palette, RGBA, 4:2:0 JPEG, greyscale JPEG), decodes each with
TensorFlow's libjpeg-turbo (islow IDCT, PIL's default) / libpng decoders (channels=3, RGB), runs
Gemma3ImageConverter (JAX backend) on it and stores to tests/fixtures/image_ref.h5:

  /<name>/decoded          [H, W, 3] uint8   TensorFlow's decode
  /<name>/out_<S>          [S, S, 3] float32 converter(image_size=(S, S), scale=1/127.5,
                                              offset=-1) with its defaults otherwise
                                              (crop_to_aspect_ratio=True, bilinear, no antialias)
  /<name>/out_<S>_nocrop   the same with crop_to_aspect_ratio=False
  attrs on the root: sizes

Run: KERAS_BACKEND=jax python3 tools/reference/make_image_fixtures.py
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
OUT = os.path.join(ROOT, "tests", "fixtures", "image_ref.h5")
SIZES = [16, 28]


def drawing(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = (255 * x / max(w - 1, 1)).astype(np.float64)
    g = (255 * y / max(h - 1, 1)).astype(np.float64)
    b = np.where(((x // 3) + (y // 5)) % 2 == 0, 230.0, 20.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write(name, data):
    with open(os.path.join(IMG_DIR, name), "wb") as f:
        f.write(data)


def make_images():
    rgb = drawing(23, 37, 1)
    write("rgb_37x23.png", tf.io.encode_png(rgb).numpy())
    grey = drawing(30, 18, 2)[:, :, :1]
    write("grey_18x30.png", tf.io.encode_png(grey).numpy())
    rgba = np.concatenate([drawing(20, 20, 3), drawing(20, 20, 4)[:, :, :1]], -1)
    write("rgba_20x20.png", tf.io.encode_png(rgba).numpy())
    write("rgb_45x33.jpg", tf.io.encode_jpeg(drawing(33, 45, 5), quality=85,
                                             chroma_downsampling=True).numpy())
    write("grey_25x50.jpg", tf.io.encode_jpeg(drawing(50, 25, 6)[:, :, :1], quality=90).numpy())
    write_palette_png("palette_24x17.png", drawing(17, 24, 7) // 64 * 85)


def write_palette_png(name, rgb):
    """A colour-type-3 PNG written by hand (TensorFlow writes none): zlib + CRC chunks."""
    import struct
    import zlib

    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    assert len(colours) <= 256
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + bytes(index.reshape(h, w)[y].astype(np.uint8)) for y in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", colours.astype(np.uint8).tobytes())
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    write(name, png)


def main():
    os.makedirs(IMG_DIR, exist_ok=True)
    make_images()
    names = sorted(os.listdir(IMG_DIR))
    with h5py.File(OUT, "w") as f:
        f.attrs["sizes"] = np.array(SIZES, dtype=np.int32)
        for name in names:
            data = open(os.path.join(IMG_DIR, name), "rb").read()
            if name.endswith(".jpg"):  # the islow IDCT, as PIL (Keras' load_img) decodes
                img = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()
            else:
                img = tf.io.decode_png(data, channels=3).numpy()
            g = f.create_group(name)
            g["decoded"] = img
            for s in SIZES:
                for crop, suffix in ((True, ""), (False, "_nocrop")):
                    conv = keras_hub.layers.Gemma3ImageConverter(
                        image_size=(s, s), scale=1 / 127.5, offset=-1.0,
                        crop_to_aspect_ratio=crop)
                    out = np.asarray(conv(img.astype(np.float32)))
                    g[f"out_{s}{suffix}"] = out.astype(np.float32)
            print(name, img.shape)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
