#!/usr/bin/env python3
"""Golden fixture for the Gemma 4 audio converter (log-mel features), computed by KerasHub 0.32.

Writes short deterministic 16 kHz mono 16-bit WAVs to tests/fixtures/audio/ (a 440 Hz tone, a
100 Hz -> 6 kHz chirp, seeded white noise, a tone shorter than the clip so the converter pads,
and, when espeak-ng is installed, a spoken sentence resampled by espeak-ng itself to 16 kHz)
and tests/fixtures/audio/features.h5:

  /<name>/features   float32 [frames, mels]: Gemma4AudioConverter(max_audio_length=L)(wave)
  /<name> attributes: samples (clip length), valid_frames (KerasHub's audio_mel_mask sum:
                      min(samples // stride, frames)), num_tokens ((valid + 3) // 4, at least 1:
                      the <|audio|> count Gemma4CausalLMPreprocessor expands to)
  / attributes:       the converter config (num_mels, num_fft_bins, stride, frame_length,
                      sampling_rate, max_audio_length, min/max_frequency, mel_floor)

The wave the converter sees is the WAV's int16 samples / 32768 (what libsndfile's float read
gives). Clip length L = 1 s keeps the fixture small (100 frames); one clip is longer than L
(trimmed). Run: KERAS_BACKEND=jax python3 tools/reference/make_audio_fixture.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import wave

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "audio")
SR = 16000
L = 1


def write_wav(path, x):
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == SR
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def clips():
    t = np.arange(int(1.3 * SR)) / SR
    yield "tone440", 0.5 * np.sin(2 * np.pi * 440 * t[: SR])
    f0, f1, dur = 100.0, 6000.0, 1.3  # linear chirp, longer than L: trimmed
    yield "chirp", 0.4 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * dur) * t * t))
    yield "noise", 0.2 * np.random.default_rng(7).standard_normal(int(0.9 * SR))
    yield "short_tone", 0.3 * np.sin(2 * np.pi * 1000 * t[: int(0.37 * SR)])
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as d:
            raw = os.path.join(d, "s.wav")
            subprocess.run(["espeak-ng", "-w", raw, "-s", "200", "hello world"], check=True)
            sox = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
            print("speech from", sox.stdout.strip())
            with wave.open(raw, "rb") as w:
                rate = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            x = pcm.astype(np.float64) / 32768.0
            # espeak-ng writes 22050 Hz: linear-interpolate to 16 kHz (only the WAV is committed)
            n = int(len(x) * SR / rate)
            x = np.interp(np.arange(n) * rate / SR, np.arange(len(x)), x)
            yield "speech", x


def main():
    os.makedirs(OUT, exist_ok=True)
    conv = keras_hub.layers.Gemma4AudioConverter(max_audio_length=L)
    with h5py.File(os.path.join(OUT, "features.h5"), "w") as f:
        for k in ("num_mels", "num_fft_bins", "stride", "frame_length", "sampling_rate",
                  "max_audio_length", "min_frequency", "max_frequency", "mel_floor"):
            f.attrs[k] = getattr(conv, k)
        for name, x in clips():
            path = os.path.join(OUT, name + ".wav")
            write_wav(path, x)
            wave_in = read_wav(path)
            feats = np.asarray(conv(wave_in), dtype=np.float32)
            frames = feats.shape[0]
            valid = min(len(wave_in) // conv.stride, frames)
            g = f.create_group(name)
            g.create_dataset("features", data=feats, compression="gzip")
            g.attrs["samples"] = len(wave_in)
            g.attrs["valid_frames"] = valid
            g.attrs["num_tokens"] = max((valid + 3) // 4, 1)
            print(f"{name}: {len(wave_in)} samples -> {feats.shape}, range "
                  f"[{feats.min():.3f}, {feats.max():.3f}], valid {valid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
