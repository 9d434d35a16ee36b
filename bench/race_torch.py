"""bench/race_torch.py: PyTorch at its strongest on the race's LoRA step (bench/race.sh).

The step of bench/train on the same packed SFT batch (the JSON bench/train dump= writes): Gemma 3
270M architecture (transformers' Gemma3ForCausalLM, random weights), LoRA rank 4 (alpha 4) on
q_proj and v_proj through PEFT, AdamW (lr 1e-4, weight decay 0.01), tuned as a performance-minded
user would:
  - sdpa attention; the packed positions are passed without an attention mask or cache, so
    transformers masks attention across the packed examples (as gemmatrain does);
  - the LM head and the loss only on the positions whose label is weighted (gemmatrain's labels
    and weights as dumped: position i predicts labels[i]), not on every position;
  - mode bf16: frozen weights stored in bfloat16 and the step under torch.autocast(bfloat16)
    (oneDNN's bf16 matmuls); the LoRA adapters stay fp32 (PEFT's default), as does AdamW;
    mode fp32: everything fp32;
  - compile 1: the step's forward and loss under torch.compile (inductor; its backward through
    AOTAutograd), in the mode TORCH_COMPILE_MODE names (default: inductor's default; the RESULT
    line then says compile=yes, else the mode). When compiling fails the step runs eager and the
    RESULT line says compile=failed.
Warm-up steps (2, which also compile) are not timed. Prints one RESULT line: step ms median, min,
max, tokens/s, peak RSS (this process's high-water mark, MB), CPU seconds per timed step (all threads).

usage: python3 bench/race_torch.py ROWS SEQ REPS THREADS fp32|bf16 COMPILE(0|1) BATCH.json
       python3 bench/race_torch.py --peak THREADS   (fp32 and bf16 matmul GFLOP/s, best of 5)
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def peak(threads):
    """Best GFLOP/s of torch.matmul over a few 270M-like shapes, fp32 and bf16."""
    torch.set_num_threads(threads)
    out = {}
    for dt, name in ((torch.float32, "torch_fp32"), (torch.bfloat16, "torch_bf16")):
        best = 0.0
        for m, n, k in ((1536, 1536, 1536), (2048, 2048, 640), (2048, 640, 2048), (512, 2048, 640)):
            a, b = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
            torch.matmul(a, b)
            for _ in range(5):
                t = time.perf_counter()
                torch.matmul(a, b)
                best = max(best, 2.0 * m * n * k / (time.perf_counter() - t) / 1e9)
        out[name] = best
    print(f"RESULT torch_fp32={out['torch_fp32']:.1f} torch_bf16={out['torch_bf16']:.1f} "
          f"torch={torch.__version__}")


def build(mode):
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
        max_position_embeddings=32768, rope_theta=1000000.0, rope_local_base_freq=10000.0,
        query_pre_attn_scalar=256, tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(cfg)
    if mode == "bf16":
        model = model.to(torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"]))
    model.train()
    return model


def main():
    if sys.argv[1:2] == ["--peak"]:
        return peak(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    rows, seq, reps, threads = (int(a) for a in sys.argv[1:5])
    mode, want_compile, batch = sys.argv[5], sys.argv[6] == "1", json.load(open(sys.argv[7]))
    if mode not in ("fp32", "bf16"):
        sys.exit(f"mode {mode}: want fp32 or bf16")
    if (batch["batch"], batch["seq"]) != (rows, seq):
        sys.exit(f"{sys.argv[7]}: batch {batch['batch']} x {batch['seq']}, not {rows} x {seq}")
    torch.set_num_threads(threads)
    model = build(mode)
    inner = model.base_model.model  # Gemma3ForCausalLM with the adapters injected
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            weight_decay=0.01)
    ids = torch.tensor(batch["ids"], dtype=torch.long).view(rows, seq)
    pos = torch.tensor(batch["positions"], dtype=torch.long).view(rows, seq) if batch["positions"] else None
    w = torch.tensor(batch["weights"], dtype=torch.float32)
    sel = torch.nonzero(w).flatten()  # fixed size: index_select keeps the graph static
    tgt = torch.tensor(batch["labels"], dtype=torch.long)[sel]
    wsel = w[sel]

    def loss_fn(ids, pos):
        h = inner.model(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state
        hs = h.reshape(-1, h.shape[-1]).index_select(0, sel)
        logits = inner.lm_head(hs).float()
        return (F.cross_entropy(logits, tgt, reduction="none") * wsel).sum() / wsel.sum()

    fn, compiled = loss_fn, "no"
    if want_compile:
        cmode = os.environ.get("TORCH_COMPILE_MODE") or None  # e.g. max-autotune (inductor's GEMM templates)
        fn, compiled = torch.compile(loss_fn, mode=cmode), "yes" if not cmode else cmode

    def step(f):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            loss = f(ids, pos)
        loss.backward()
        opt.step()
        return loss.item()

    t0 = time.perf_counter()
    try:
        step(fn)
    except Exception as e:  # inductor needs a working C++ toolchain; some graphs do not compile
        if not want_compile:
            raise
        print(f"torch.compile failed, running eager: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        fn, compiled = loss_fn, "failed"
        step(fn)
    first = time.perf_counter() - t0
    step(fn)  # second warm-up (a compile may specialise again)
    times, r0 = [], resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(reps):
        t = time.perf_counter()
        loss = step(fn)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / reps
    rss = r1.ru_maxrss / 1024.0
    n = rows * seq
    print(f"torch {torch.__version__} {mode} sdpa, response-only LM head ({sel.numel()} of {n} "
          f"positions), compile {compiled}: first step {first:.1f} s, step {med * 1e3:.0f} ms, loss {loss:.3f}")
    print(f"RESULT ms={med * 1e3:.1f} ms_min={min(times) * 1e3:.1f} ms_max={max(times) * 1e3:.1f} "
          f"tokens_s={n / med:.2f} rss_mb={rss:.0f} compile={compiled} cpu_s={cpu:.2f}")


if __name__ == "__main__":
    main()
