#!/usr/bin/env python3
"""KerasHub BeamSampler and score() fixtures for tests/test_generate.c.

Loads the tiny KerasHub presets of tests/fixtures/presets (gemma2, gemma3, gemma4) with
keras_hub.models.CausalLM.from_preset, and runs generate() on fixed prompt ids with
keras_hub.samplers.BeamSampler (no preprocessor: token_ids and padding_mask padded to max_length,
as generate() takes them). Writes tests/fixtures/presets/beam.h5 with, per case c:
  /c/prompt (int32), attributes max_length, num_beams, temperature of /c, /c/stop (int32, maybe empty),
  /c/output (int32): the generated ids after the prompt as generate() returns them (cut after the
  first stop token: its padding_mask)
The stop ids of the "stop" cases are taken from the no-stop run's output, so that stopping happens.
And tests/fixtures/presets/score.h5: CausalLM.score(scoring_mode="logits" and "loss") per preset.
And tests/fixtures/presets/contrastive.h5: the same layout with attributes k, alpha, temperature
for keras_hub.samplers.ContrastiveSampler.

usage: pip install keras-hub jax h5py; KERAS_BACKEND=jax python3 tools/reference/make_sampler_fixtures.py [WHAT...]
  WHAT: beam, score, contrastive (default: all three)
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

OUT = "tests/fixtures/presets/beam.h5"
SCORE_OUT = "tests/fixtures/presets/score.h5"
CONTRASTIVE_OUT = "tests/fixtures/presets/contrastive.h5"


def run(lm, prompt, max_length, num_beams, temperature, stop, sampler=None):
    ids = np.zeros((1, max_length), np.int32)
    mask = np.zeros((1, max_length), bool)
    ids[0, : len(prompt)] = prompt
    mask[0, : len(prompt)] = True
    lm.sampler = sampler or keras_hub.samplers.BeamSampler(num_beams=num_beams, temperature=temperature)
    lm.generate_function = None  # recompile for the new sampler
    out = lm.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=stop or None)
    tok, pm = np.asarray(out["token_ids"][0]), np.asarray(out["padding_mask"][0])
    gen = [int(t) for t, m in zip(tok[len(prompt):], pm[len(prompt):]) if m]
    return gen


def main():
    what = sys.argv[1:] or ["beam", "score", "contrastive"]
    if "beam" in what:
        beam()
    if "score" in what:
        scores()
    if "contrastive" in what:
        contrastive()


def contrastive():
    """ContrastiveSampler(k, alpha, temperature) on the tiny presets, with and without a stop id
    (taken from the free run's output); also prints the greedy output to show the two differ."""
    cases = []
    for name in ("gemma1", "gemma2", "gemma3", "gemma4"):
        cls = {"gemma3": keras_hub.models.Gemma3CausalLM, "gemma4": keras_hub.models.Gemma4CausalLM}.get(
            name, keras_hub.models.GemmaCausalLM)
        lm = cls.from_preset(f"tests/fixtures/presets/{name}", preprocessor=None)
        lm.preprocessor = None
        V = lm.backbone.vocabulary_size
        rng = np.random.default_rng(7 + len(name))
        prompt = [2] + [int(x) for x in rng.integers(3, V, size=5)]
        try:
            greedy = run(lm, prompt, 20, 0, 1.0, None, keras_hub.samplers.GreedySampler())
        except Exception as e:  # keras_hub 0.32: Gemma3/4CausalLM.generate fails on unbatched-mask inputs here
            print(f"{name}: KerasHub's generate fails: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        for k, alpha, temp in ((3, 0.6, 1.0), (5, 0.3, 0.8), (4, 0.9, 1.0)):
            def sampler():
                return keras_hub.samplers.ContrastiveSampler(k=k, alpha=alpha, temperature=temp)
            try:
                free = run(lm, prompt, 20, 0, temp, None, sampler())
            except Exception as e:
                print(f"{name}: KerasHub's ContrastiveSampler fails: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                break
            c = f"{name}_k{k}_a{int(alpha * 10)}"
            cases.append((c, prompt, 20, k, alpha, temp, [], free))
            stop = [free[4]]
            cases.append((c + "_stop", prompt, 20, k, alpha, temp, stop, run(lm, prompt, 20, 0, temp, stop, sampler())))
            print(c, "greedy", greedy, "contrastive", free)
    with h5py.File(CONTRASTIVE_OUT, "w") as f:
        for c, prompt, L, k, alpha, temp, stop, gen in cases:
            g = f.create_group(c)
            g["prompt"] = np.array(prompt, np.int32)
            g.attrs["max_length"] = np.float64(L)
            g.attrs["k"] = np.float64(k)
            g.attrs["alpha"] = np.float64(alpha)
            g.attrs["temperature"] = np.float64(temp)
            g["stop"] = np.array(stop, np.int32)
            g["output"] = np.array(gen, np.int32)
            print(c, "prompt", prompt, "stop", stop, "->", gen)
    print("wrote", CONTRASTIVE_OUT)


def beam():
    cases = []
    for name in ("gemma1", "gemma2", "gemma3", "gemma4"):
        cls = {"gemma3": keras_hub.models.Gemma3CausalLM, "gemma4": keras_hub.models.Gemma4CausalLM}.get(
            name, keras_hub.models.GemmaCausalLM)
        lm = cls.from_preset(f"tests/fixtures/presets/{name}", preprocessor=None)
        lm.preprocessor = None
        V = lm.backbone.vocabulary_size
        rng = np.random.default_rng(len(name))
        prompt = [2] + [int(x) for x in rng.integers(3, V, size=5)]
        for beams, temp in ((3, 1.0), (4, 0.7)):
            try:
                free = run(lm, prompt, 20, beams, temp, None)
            except Exception as e:  # keras_hub 0.32: Gemma3/4CausalLM.next slices its cache mask
                # with the un-beamed batch size, so BeamSampler fails on them
                print(f"{name}: KerasHub's BeamSampler fails: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                break
            cases.append((f"{name}_b{beams}", prompt, 20, beams, temp, [], free))
            stop = [free[3]]
            cases.append((f"{name}_b{beams}_stop", prompt, 20, beams, temp, stop, run(lm, prompt, 20, beams, temp, stop)))
    with h5py.File(OUT, "w") as f:
        for c, prompt, L, beams, temp, stop, gen in cases:
            g = f.create_group(c)
            g["prompt"] = np.array(prompt, np.int32)
            g.attrs["max_length"] = np.float64(L)
            g.attrs["num_beams"] = np.float64(beams)
            g.attrs["temperature"] = np.float64(temp)
            g["stop"] = np.array(stop, np.int32)
            g["output"] = np.array(gen, np.int32)
            print(c, "prompt", prompt, "stop", stop, "->", gen)
    print("wrote", OUT)


def scores():
    """keras_hub's CausalLM.score on fixed ids: scoring_mode "logits", and "loss" against the
    next token (target_ids = ids shifted left, the last target repeating the last id)."""
    with h5py.File(SCORE_OUT, "w") as f:
        for name in ("gemma1", "gemma2", "gemma3", "gemma4"):
            cls = {"gemma3": keras_hub.models.Gemma3CausalLM, "gemma4": keras_hub.models.Gemma4CausalLM}.get(
                name, keras_hub.models.GemmaCausalLM)
            lm = cls.from_preset(f"tests/fixtures/presets/{name}", preprocessor=None)
            if not hasattr(lm, "score"):  # keras_hub 0.32: only GemmaCausalLM (Gemma 1, 2) has score()
                print(f"{name}: {cls.__name__} has no score()")
                continue
            V = lm.backbone.vocabulary_size
            rng = np.random.default_rng(100 + len(name))
            ids = np.concatenate([[2], rng.integers(3, V, size=9)]).astype(np.int32)[None, :]
            mask = np.ones_like(ids, dtype=bool)
            target = np.concatenate([ids[:, 1:], ids[:, -1:]], axis=1)
            g = f.create_group(name)
            g["token_ids"] = ids
            g["logits"] = np.asarray(lm.score(ids, mask, scoring_mode="logits"), np.float32)
            g["target_ids"] = target
            g["loss"] = np.asarray(lm.score(ids, mask, scoring_mode="loss", target_ids=target), np.float32)
            print(name, "score: logits", g["logits"].shape, "loss", np.asarray(g["loss"])[0, :4])
    print("wrote", SCORE_OUT)


if __name__ == "__main__":
    main()
