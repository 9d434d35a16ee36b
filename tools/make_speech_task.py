#!/usr/bin/env python3
"""The speech task: short spoken phrases (synthesised with espeak-ng) with their transcripts.

Each clip says one phrase about a coloured shape ("a red circle", "the blue square please",
...: the shapes task's vocabulary) in one of several espeak-ng English voices, at a random speed
and pitch, resampled to 16 kHz mono, trimmed to the speech plus 50 ms either side and stored as
Ogg Opus through libsndfile (the library gemmatrain reads audio with; ~23 kbit/s, about 3 KB a
clip, the Ogg stream serial fixed). Two JSONL
files of {"prompt": "<|audio|>Transcribe the clip.", "response": "A red circle.",
"audio": ["audio/train_000.opus"]} records: datasets/speech/train.jsonl (60: 5 of each
colour/shape pair) and eval.jsonl (24: 2 of each), with their own random phrasings and voices.

Deterministic for the seed with the same espeak-ng (1.51 on Debian 12), scipy and libsndfile /
libopus versions. Needs: apt-get install espeak-ng libsndfile1; pip install numpy scipy.
Run: python3 tools/make_speech_task.py   (rewrites datasets/speech/)
"""
import ctypes
import io
import json
import os
import shutil
import subprocess
import wave

import numpy as np
from scipy.signal import resample_poly

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "speech")
RATE = 16000
SHAPES = ["square", "circle", "triangle"]
COLOURS = ["red", "green", "blue", "yellow"]
TEMPLATES = ["a {c} {s}", "the {c} {s}", "one {c} {s}", "a {c} {s} please", "it is a {c} {s}"]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-us+f3", "en-gb+f2", "en-us+m3"]
PROMPT = "<|audio|>Transcribe the clip."


class SFInfo(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int),
                ("channels", ctypes.c_int), ("format", ctypes.c_int),
                ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


def sndfile():
    lib = ctypes.CDLL("libsndfile.so.1")
    lib.sf_open.restype = ctypes.c_void_p
    lib.sf_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(SFInfo)]
    lib.sf_command.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    lib.sf_write_short.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.sf_write_short.restype = ctypes.c_int64
    lib.sf_close.argtypes = [ctypes.c_void_p]
    lib.sf_strerror.restype = ctypes.c_char_p
    lib.sf_strerror.argtypes = [ctypes.c_void_p]
    return lib


def write_opus(lib, path, pcm16):
    sf_write, ogg_opus, set_level = 0x20, 0x200064, 0x1301
    info = SFInfo(0, RATE, 1, ogg_opus, 0, 0)
    h = lib.sf_open(path.encode(), sf_write, ctypes.byref(info))
    if not h:
        raise RuntimeError(f"{path}: {lib.sf_strerror(None).decode()}")
    level = ctypes.c_double(0.95)  # ~23 kbit/s; 1.0 (~12) visibly blurs the log spectrum
    lib.sf_command(h, set_level, ctypes.byref(level), ctypes.sizeof(level))
    a = np.ascontiguousarray(pcm16, dtype=np.int16)
    if lib.sf_write_short(h, a.ctypes.data, len(a)) != len(a):
        raise RuntimeError(f"{path}: short write")
    lib.sf_close(h)
    fix_ogg_serial(path)


def ogg_crc(data):
    crc = 0
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def fix_ogg_serial(path, serial=0x47544149):
    """libsndfile draws a random Ogg stream serial: set a fixed one (and each page's CRC) so
    that reruns write identical files."""
    data = bytearray(open(path, "rb").read())
    at = 0
    while at < len(data):
        assert data[at:at + 4] == b"OggS", path
        nseg = data[at + 26]
        size = 27 + nseg + sum(data[at + 27:at + 27 + nseg])
        data[at + 14:at + 18] = serial.to_bytes(4, "little")
        data[at + 22:at + 26] = b"\0\0\0\0"
        data[at + 22:at + 26] = ogg_crc(data[at:at + size]).to_bytes(4, "little")
        at += size
    open(path, "wb").write(bytes(data))


def speak(text, voice, speed, pitch):
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                          "--stdout", text], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    g = np.gcd(RATE, rate)
    y = resample_poly(x, RATE // g, rate // g)
    loud = np.nonzero(np.abs(y) > 64)[0]
    pad = RATE // 20
    y = y[max(loud[0] - pad, 0):loud[-1] + pad]
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def main():
    rng = np.random.default_rng(18)
    lib = sndfile()
    shutil.rmtree(os.path.join(ROOT, "audio"), ignore_errors=True)
    os.makedirs(os.path.join(ROOT, "audio"))
    pairs = [(s, c) for s in SHAPES for c in COLOURS]
    seconds = 0.0
    for split, per_pair in (("train", 5), ("eval", 2)):
        items = [p for p in pairs for _ in range(per_pair)]
        order = rng.permutation(len(items))
        with open(os.path.join(ROOT, f"{split}.jsonl"), "w") as f:
            for k, i in enumerate(order):
                shape, colour = items[i]
                text = TEMPLATES[rng.integers(len(TEMPLATES))].format(c=colour, s=shape)
                voice = VOICES[rng.integers(len(VOICES))]
                pcm = speak(text, voice, int(rng.integers(130, 190)), int(rng.integers(30, 70)))
                seconds += len(pcm) / RATE
                name = f"audio/{split}_{k:03d}.opus"
                write_opus(lib, os.path.join(ROOT, name), pcm)
                rec = {"prompt": PROMPT, "response": text[0].upper() + text[1:] + ".",
                       "audio": [name]}
                f.write(json.dumps(rec) + "\n")
    size = sum(os.path.getsize(os.path.join(ROOT, "audio", n))
               for n in os.listdir(os.path.join(ROOT, "audio")))
    print(f"wrote {ROOT}: {seconds:.1f} s of speech, {size // 1024} KB of audio")


if __name__ == "__main__":
    main()
