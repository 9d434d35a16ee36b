"""bench/race_keras.py: KerasHub on JAX on the race's LoRA step (bench/race.sh).

The step of bench/train on the same packed SFT batch (the JSON bench/train dump= writes): KerasHub's
Gemma3CausalLM with a Gemma 3 270M backbone (random weights, fp32), backbone.enable_lora(4)
(query and value, KerasHub's defaults), AdamW (lr 1e-4, weight decay 0.01), the loss
SparseCategoricalCrossentropy(from_logits=True) with gemmatrain's weights as sample weights,
compiled with jit_compile=True and run through train_on_batch (KerasHub's jitted train_step: the
step a user's fit() runs). KerasHub's backbone takes no position ids, so the packed examples
attend to each other and the logits are computed on every position (its train_step has no way
to skip them). Warm-up steps (2: the first compiles) are not timed. Prints one RESULT line: step
ms median, min, max, tokens/s, peak RSS (this process's high-water mark, MB), CPU seconds per
timed step (all threads).

usage: python3 bench/race_keras.py ROWS SEQ REPS THREADS BATCH.json   (needs KERAS_BACKEND=jax,
       set here when unset)
"""
import json
import os
import resource
import statistics
import sys
import time


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    rows, seq, reps, threads = (int(a) for a in sys.argv[1:5])
    batch = json.load(open(sys.argv[5]))
    if (batch["batch"], batch["seq"]) != (rows, seq):
        sys.exit(f"{sys.argv[5]}: batch {batch['batch']} x {batch['seq']}, not {rows} x {seq}")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}")
    import keras
    import keras_hub
    import numpy as np

    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=262144, image_size=None, num_layers=18, num_query_heads=4,
        num_key_value_heads=1, hidden_dim=640, intermediate_dim=2048, head_dim=256,
        query_head_dim_normalize=True, use_query_key_norm=True, use_post_ffw_norm=True,
        use_post_attention_norm=True, use_sliding_window_attention=True, sliding_window_size=512,
        local_rope_scaling_factor=1.0, global_rope_scaling_factor=1.0, dtype="float32")
    lm = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    backbone.enable_lora(rank=4)
    lm.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               weighted_metrics=[], jit_compile=True)
    shape = (rows, seq)
    x = {"token_ids": np.asarray(batch["ids"], "int32").reshape(shape),
         "padding_mask": np.ones(shape, "int32")}
    y = np.asarray(batch["labels"], "int32").reshape(shape)
    sw = np.asarray(batch["weights"], "float32").reshape(shape)
    t0 = time.perf_counter()
    lm.train_on_batch(x, y, sample_weight=sw)
    first = time.perf_counter() - t0
    lm.train_on_batch(x, y, sample_weight=sw)
    times, r0 = [], resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(reps):
        t = time.perf_counter()
        loss = lm.train_on_batch(x, y, sample_weight=sw)  # returns host numbers: the step is done
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / reps
    rss = r1.ru_maxrss / 1024.0
    n = rows * seq
    print(f"keras_hub {keras_hub.__version__} on {keras.backend.backend()}, fp32, LoRA "
          f"{len(backbone.trainable_variables)} adapter tensors: first step {first:.1f} s, "
          f"step {med * 1e3:.0f} ms, loss {float(np.ravel(loss)[0]):.3f}")
    print(f"RESULT ms={med * 1e3:.1f} ms_min={min(times) * 1e3:.1f} ms_max={max(times) * 1e3:.1f} "
          f"tokens_s={n / med:.2f} rss_mb={rss:.0f} cpu_s={cpu:.2f}")


if __name__ == "__main__":
    main()
