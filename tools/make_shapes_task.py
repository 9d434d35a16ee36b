#!/usr/bin/env python3
"""The shapes task: small images of one coloured shape with their one-line descriptions.

Deterministic (seeded): 32 x 32 PNGs of a square, circle or triangle in red, green, blue or
yellow, of random size and place on a light or dark background, written with numpy and zlib
only, and two JSONL files of {"prompt": "<start_of_image>What is in the picture?",
"response": "A red circle.", "images": ["images/train_000.png"]} records:
datasets/shapes/train.jsonl (96) and eval.jsonl (24), every shape/colour pair in both.

Run: python3 tools/make_shapes_task.py   (rewrites datasets/shapes/ identically)
"""
import json
import os
import struct
import zlib

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "shapes")
SIZE = 32
SHAPES = ["square", "circle", "triangle"]
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 50), "blue": (40, 60, 220), "yellow": (235, 215, 40)}


def png(rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def draw(shape, colour, rng):
    bg = rng.integers(200, 250) if rng.random() < 0.5 else rng.integers(10, 50)
    img = np.full((SIZE, SIZE, 3), bg, np.uint8)
    r = rng.integers(7, 13)
    cy, cx = rng.integers(r + 1, SIZE - r - 1, 2)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    if shape == "square":
        m = (abs(y - cy) <= r * 0.8) & (abs(x - cx) <= r * 0.8)
    elif shape == "circle":
        m = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    else:  # apex up: rows widen downwards
        m = (y >= cy - r) & (y <= cy + r) & (abs(x - cx) <= (y - (cy - r)) / 2)
    img[m] = COLOURS[colour]
    return img


def main():
    rng = np.random.default_rng(16)
    os.makedirs(os.path.join(ROOT, "images"), exist_ok=True)
    pairs = [(s, c) for s in SHAPES for c in COLOURS]
    for split, per_pair in (("train", 8), ("eval", 2)):
        items = [p for p in pairs for _ in range(per_pair)]
        order = rng.permutation(len(items))
        with open(os.path.join(ROOT, f"{split}.jsonl"), "w") as f:
            for k, i in enumerate(order):
                shape, colour = items[i]
                name = f"images/{split}_{k:03d}.png"
                with open(os.path.join(ROOT, name), "wb") as out:
                    out.write(png(draw(shape, colour, rng)))
                rec = {"prompt": "<start_of_image>What is in the picture?",
                       "response": f"A {colour} {shape}.", "images": [name]}
                f.write(json.dumps(rec) + "\n")
    print("wrote", ROOT)


if __name__ == "__main__":
    main()
