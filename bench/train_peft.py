"""bench/train_peft.py: the LoRA step of bench/train in PyTorch + PEFT, for a ratio.

Gemma 3 270M architecture (transformers' Gemma3ForCausalLM, text-only config) with random
weights, fp32, LoRA rank 4 (alpha 4) on q_proj and v_proj, AdamW (lr 1e-4, weight decay 0.01),
the given batch (rows) and sequence length, every token a label, torch.set_num_threads(threads).
With a batch file (written by build/bench/train ... dump=FILE) the step runs on that batch
instead: its ids and packed positions, labels -100 where gemmatrain's weight is 0 (transformers
shifts labels itself, so the row's last label is dropped). transformers still computes the
logits of every position and, with eager attention, attends across packed examples; the cost
of its step does not depend on the labels.
Prints one line: seq, median step seconds, tokens/s, peak RSS (MB, this process's VmHWM), CPU
seconds per timed step (all threads).

usage: python3 bench/train_peft.py [seq=256] [reps=3] [threads=2] [rows=1] [batch.json]
"""
import json
import resource
import statistics
import sys
import time

import torch


def main():
    seq = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    batch = json.load(open(sys.argv[5])) if len(sys.argv) > 5 else None
    torch.set_num_threads(threads)
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
        max_position_embeddings=32768, rope_theta=1000000.0, rope_local_base_freq=10000.0,
        query_pre_attn_scalar=256, tie_word_embeddings=True, attn_implementation="eager")
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(cfg).to(torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            weight_decay=0.01)
    ids = (torch.arange(rows * seq, dtype=torch.long) * 7919 % cfg.vocab_size).view(rows, seq)
    labels, extra = ids, {}
    if batch is not None:
        b, t = batch["batch"], batch["seq"]
        if t != seq or b != rows:
            sys.exit(f"batch file has {b} x {t}, not {rows} x {seq}")
        ids = torch.tensor(batch["ids"], dtype=torch.long).view(b, t)
        lab = torch.tensor(batch["labels"], dtype=torch.long).view(b, t)
        w = torch.tensor(batch["weights"]).view(b, t)
        labels = torch.full((b, t), -100, dtype=torch.long)
        labels[:, 1:] = torch.where(w[:, :-1] != 0, lab[:, :-1], torch.tensor(-100))
        if batch["positions"]:
            extra["position_ids"] = torch.tensor(batch["positions"], dtype=torch.long).view(b, t)
    times = []
    for r in range(reps + 1):  # rep 0 warms up
        if r == 1:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=labels, **extra)
        out.loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step = statistics.median(times[1:])
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = r1.ru_maxrss / 1024.0
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / reps
    n = ids.numel()
    print(f"peft batch {rows} x seq {seq}{' (batch file)' if batch else ''}: {step * 1e3:.1f} ms (min "
          f"{min(times[1:]) * 1e3:.1f}, max {max(times[1:]) * 1e3:.1f}), {n / step:.1f} tokens/s, "
          f"peak RSS {peak_mb:.0f} MB, threads {threads}, torch {torch.__version__}")
    print(f"RESULT seq={seq} ms={step * 1e3:.1f} tokens_s={n / step:.2f} rss_mb={peak_mb:.0f} cpu_s={cpu:.2f}")


if __name__ == "__main__":
    main()
