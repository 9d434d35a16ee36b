#!/usr/bin/env python3
"""Golden fixture for data.template: gemma4_chat, computed by KerasHub's Gemma4CausalLMPreprocessor.

The real Gemma 4 tokenizer is not downloadable here, so a small SentencePiece BPE test tokenizer
with Gemma 4's special tokens at Gemma's ids (0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 105 <|turn>,
106 <turn|>, then the media and agent markers) is trained with --train on the prompts and
responses of tests/fixtures/debian-train-200.jsonl (identity normalizer, no dummy prefix, byte
fallback, split digits, as Gemma's) and committed as tests/fixtures/spm/gemma4_chat_vocab.spm.
The same file is the tokenizer on both sides: KerasHub's Gemma4Tokenizer(proto=...) here and
gemmatrain's SentencePiece reader in tests/test_gemma4_chat.c.

Gemma 4's turn format (Google's "Gemma 4 prompt formatting"): <|turn>ROLE\\n TEXT <turn|>, turns
joined by "\\n", roles system, user, model. KerasHub applies no template itself: its users write
the templated strings, which this script does, and the preprocessor packs them.

  prompt/response (pr.jsonl): KerasHub gets prompt "<|turn>user\\n{prompt}<turn|>\\n<|turn>model\\n"
    and response "{response}<turn|>" (sequence_length S, start and end tokens added).
  messages (chat.jsonl): token ids and padding mask are KerasHub's for prompt = the conversation
    up to the last "<|turn>model\\n" and response = the last reply + "<turn|>"; the weights are the
    union of KerasHub's weights over every model turn k (prompt = the conversation before reply
    k, response = reply k + "<turn|>"; the end token only for the last turn), i.e. loss on every
    model turn and nowhere else. A Python check asserts that each per-turn run's tokens are a
    prefix of the whole one (so the union is well defined).

Output tests/fixtures/gemma4_chat/: pr.jsonl, chat.jsonl (the examples) and expected.h5 with
/pr/{token_ids,padding_mask,labels} int32 [N, S], /pr/sample_weight float32 [N, S], the same
under /chat, and attribute sequence_length.

Run: KERAS_BACKEND=jax python3 tools/reference/make_gemma4_chat_fixture.py [--train]
(keras-hub 0.32, tensorflow-text, sentencepiece, h5py)
"""
import argparse
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
SPM = os.path.join(FIX, "spm", "gemma4_chat_vocab.spm")
OUT = os.path.join(FIX, "gemma4_chat")
S = 64

SOT, EOT = "<|turn>", "<turn|>"
# ids 4.. as Gemma 3's vocabulary: <mask>, [multimodal], <unused0..98>; then the turn markers at
# 105/106 and the markers KerasHub's Gemma4Tokenizer and Gemma 4's prompt format name
USER = (["<mask>", "[multimodal]"] + [f"<unused{i}>" for i in range(99)] + [SOT, EOT] +
        ["<|image>", "<|image|>", "<image|>", "<|audio>", "<|audio|>", "<audio|>", "<|video|>",
         "<|channel>", "<channel|>", "<|think|>", "<|tool>", "<tool|>", "<|tool_call>",
         "<tool_call|>", "<|tool_response>", "<tool_response|>"])

PR = [
    {"prompt": "What does the Debian package zlib1g provide?", "response": "Compression library."},
    {"prompt": "Name 3 editors.", "response": "vim, emacs and nano (version 8.2)."},
    {"prompt": "Say hi", "response": "Hi!"},
]
CHAT = [
    {"messages": [{"role": "user", "content": "What is apt?"},
                  {"role": "assistant", "content": "The package manager."}]},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hi"},
                  {"role": "model", "content": "Hello!"},
                  {"role": "user", "content": "Which package provides ls?"},
                  {"role": "assistant", "content": "coreutils"}]},
    {"messages": [{"role": "user", "content": "Count: 1 2 3"},
                  {"role": "model", "content": "4 5 6"},
                  {"role": "user", "content": "Thanks"},
                  {"role": "model", "content": "You're welcome."}]},
]


def train():
    import sentencepiece as spm
    texts = []
    with open(os.path.join(FIX, "debian-train-200.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            texts += [r["prompt"], r["response"]]
    prefix = os.path.join(FIX, "spm", "gemma4_chat_vocab")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=prefix, model_type="bpe", vocab_size=1024,
        character_coverage=1.0, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", add_dummy_prefix=False,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, pad_id=0, eos_id=1,
        bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=USER, num_threads=1, minloglevel=2)
    os.remove(prefix + ".vocab")
    os.replace(prefix + ".model", SPM)


def turn(role, text):
    return f"{SOT}{role}\n{text}{EOT}"


def render(msgs):
    """Each model turn as (prompt text before its reply, the reply); the whole conversation."""
    parts, cuts = [], []
    for m in msgs:
        role = "model" if m["role"] in ("assistant", "model") else m["role"]
        if role == "model":
            cuts.append(("\n".join(parts + [f"{SOT}model\n"]) if parts else f"{SOT}model\n", m["content"]))
        parts.append(turn(role, m["content"]))
    return cuts, "\n".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true", help="retrain the test tokenizer first")
    a = ap.parse_args()
    if a.train:
        train()
    import keras_hub
    tok = keras_hub.models.Gemma4Tokenizer(proto=open(SPM, "rb").read(), has_audio_tokens=True)
    assert tok.token_to_id(SOT) == 105 and tok.token_to_id(EOT) == 106, "turn markers not at 105/106"
    assert (tok.start_token_id, tok.end_token_id, tok.pad_token_id) == (2, 1, 0)

    def pp(prompt, response, end=True):
        p = keras_hub.models.Gemma4CausalLMPreprocessor(tok, sequence_length=S, add_end_token=end)
        x, y, w = p({"prompts": [prompt], "responses": [response]})
        return (np.asarray(x["token_ids"][0]), np.asarray(x["padding_mask"][0]).astype(np.int32),
                np.asarray(y[0]), np.asarray(w[0]).astype(np.float32))

    os.makedirs(OUT, exist_ok=True)
    rows = {"pr": [], "chat": []}
    for ex in PR:
        r = pp(f"{SOT}user\n{ex['prompt']}{EOT}\n{SOT}model\n", ex["response"] + EOT)
        assert r[1].sum() < S, "example does not fit: the fixture compares untruncated rows"
        rows["pr"].append(r)
    for ex in CHAT:
        cuts, whole = render(ex["messages"])
        ids, mask, labels, _ = pp(cuts[-1][0], cuts[-1][1] + EOT)
        assert mask.sum() < S
        w = np.zeros(S, np.float32)
        for k, (prompt, reply) in enumerate(cuts):
            last = k == len(cuts) - 1
            i2, m2, _, w2 = pp(prompt, reply + EOT, end=last)
            n = int(m2.sum())
            assert (i2[:n] == ids[:n]).all(), "a turn's tokens are not a prefix of the conversation's"
            w = np.maximum(w, w2)
        rows["chat"].append((ids, mask, labels, w))
        assert whole.endswith(cuts[-1][1] + EOT)
    for name, data in (("pr", PR), ("chat", CHAT)):
        with open(os.path.join(OUT, name + ".jsonl"), "w", encoding="utf-8") as f:
            for ex in data:
                f.write(json.dumps(ex, ensure_ascii=False) + "\n")
    with h5py.File(os.path.join(OUT, "expected.h5"), "w") as h:
        h.attrs["sequence_length"] = S
        for name, rs in rows.items():
            g = h.create_group(name)
            for i, key in enumerate(("token_ids", "padding_mask", "labels")):
                g[key] = np.stack([r[i] for r in rs]).astype(np.int32)
            g["sample_weight"] = np.stack([r[3] for r in rs]).astype(np.float32)
    for name, rs in rows.items():
        for r in rs:
            n = int(r[1].sum())
            print(name, n, "tokens,", int(r[3].sum()), "weighted:", " ".join(map(str, r[0][:n])))


if __name__ == "__main__":
    main()
