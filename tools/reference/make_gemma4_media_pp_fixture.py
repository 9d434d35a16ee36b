#!/usr/bin/env python3
"""Golden fixture for Gemma 4 train/eval records with media, computed by KerasHub's
Gemma4CausalLMPreprocessor (keras-hub 0.32) with an image and an audio converter.

Records (tests/fixtures/gemma4_media_pp/records.jsonl, media paths relative to it) hold
"<|image|>" / "<|audio|>" markers, one file each, at the start, in the middle and back to back,
with a shapes picture and spoken clips of datasets/ of different lengths. KerasHub gets each
record alone (a batch of one: with several clips in a batch it gives every clip the batch's
largest token count, then drops the unused placeholders) as prompt and response with start and
end tokens. Its tokenizer is the committed test SentencePiece model with Gemma 4's markers
(tests/fixtures/spm/gemma4_chat_vocab.spm, see make_gemma4_chat_fixture.py). The image converter
is a small Gemma4ImageConverter (patch 4, pool 2, 16 soft tokens), the audio converter
Gemma4AudioConverter with 32 mel bins (the picture is given to it as a 32 x 32 ramp: no image
decoder here, and a span's length does not depend on the pixels): the soft-token counts (16 per image; ceil(valid frames /
4) per clip) are what the records test, not the pixel or mel values.

Output tests/fixtures/gemma4_media_pp/expected.h5: /token_ids, /padding_mask, /labels int32
[N, S], /sample_weight float32 [N, S], attributes sequence_length and image_tokens.

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma4_media_pp_fixture.py
(keras-hub 0.32, tensorflow-text, h5py; libsndfile reads the Opus clips, as in gemmatrain)
"""
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import ctypes  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
SPM = os.path.join(FIX, "spm", "gemma4_chat_vocab.spm")
OUT = os.path.join(FIX, "gemma4_media_pp")
S = 96
L = 16

IMG = "../../../datasets/shapes/images/eval_000.png"
CLIP_A = "../../../datasets/speech/audio/eval_000.opus"
CLIP_B = "../../../datasets/speech/audio/train_006.opus"
CLIP_C = "../../../datasets/speech/audio/train_000.opus"
RECORDS = [
    {"prompt": "<|audio|>Transcribe the clip.", "response": "A red circle.", "audio": [CLIP_A]},
    {"prompt": "<|image|>What is in the picture?", "response": "A blue circle.", "images": [IMG]},
    {"prompt": "Listen: <|audio|> then say it.", "response": "The blue square.", "audio": [CLIP_B]},
    {"prompt": "Look <|image|><|audio|> and answer.", "response": "Yes.", "images": [IMG], "audio": [CLIP_C]},
    {"prompt": "Say hi", "response": "Hi!"},
]


class SFInfo(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int), ("channels", ctypes.c_int),
                ("format", ctypes.c_int), ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


def read_clip(path):
    """A mono clip as float32 through libsndfile (sf_readf_float), and its rate."""
    lib = ctypes.CDLL("libsndfile.so.1")
    lib.sf_open.restype = ctypes.c_void_p
    lib.sf_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(SFInfo)]
    lib.sf_readf_float.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.sf_readf_float.restype = ctypes.c_int64
    lib.sf_close.argtypes = [ctypes.c_void_p]
    info = SFInfo()
    h = lib.sf_open(path.encode(), 0x10, ctypes.byref(info))
    assert h, path
    buf = np.zeros(info.frames * info.channels, dtype=np.float32)
    n = lib.sf_readf_float(h, buf.ctypes.data, info.frames)
    lib.sf_close(h)
    assert info.channels == 1
    return buf[:n], info.samplerate


def main():
    import keras_hub
    from keras_hub.src.models.gemma4.gemma4_audio_converter import Gemma4AudioConverter
    from keras_hub.src.models.gemma4.gemma4_image_converter import Gemma4ImageConverter
    tok = keras_hub.models.Gemma4Tokenizer(proto=open(SPM, "rb").read(), has_audio_tokens=True)
    pp = keras_hub.models.Gemma4CausalLMPreprocessor(
        tokenizer=tok, image_converter=Gemma4ImageConverter(patch_size=4, max_soft_tokens=L, pooling_kernel_size=2),
        audio_converter=Gemma4AudioConverter(num_mels=32), sequence_length=S, max_images_per_prompt=1,
        num_vision_tokens_per_image=L, audio_input_feat_size=32)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "records.jsonl"), "w", encoding="utf-8") as f:
        for r in RECORDS:
            f.write(json.dumps(r) + "\n")
    out = {k: [] for k in ("token_ids", "padding_mask", "labels", "sample_weight")}
    for r in RECORDS:
        x = {"prompts": [r["prompt"]], "responses": [r["response"]]}
        if "images" in r:
            # the span's length does not depend on the pixels: a 32 x 32 ramp stands for the PNG
            im = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3) % 256
            x["images"] = im[None, None]
        if "audio" in r:
            wav, rate = read_clip(os.path.join(OUT, r["audio"][0]))
            assert rate == 16000
            x["audio"] = wav[None]  # (batch, samples): one clip a prompt, as KerasHub takes it
        xo, y, w = pp(x)
        ids = np.asarray(xo["token_ids"])[0]
        out["token_ids"].append(ids)
        out["padding_mask"].append(np.asarray(xo["padding_mask"])[0].astype(np.int32))
        out["labels"].append(np.asarray(y)[0])
        out["sample_weight"].append(np.asarray(w)[0].astype(np.float32))
        n_img = int((ids == tok.token_to_id("<|image|>")).sum())
        n_aud = int((ids == tok.token_to_id("<|audio|>")).sum())
        print(f"{r['prompt']!r}: {n_img} image and {n_aud} audio placeholders, "
              f"{int(np.asarray(xo['padding_mask'])[0].sum())} real tokens")
    with h5py.File(os.path.join(OUT, "expected.h5"), "w") as h:
        for k, v in out.items():
            h[k] = np.stack(v).astype(np.float32 if k == "sample_weight" else np.int32)
        h.attrs["sequence_length"] = S
        h.attrs["image_tokens"] = L
    print(f"wrote {OUT}/expected.h5")


if __name__ == "__main__":
    main()
