#!/usr/bin/env bash
# LoRA on a big Gemma 3 preset with a quantised frozen base, through the trainer as a user runs
# it: the preset randomly initialised straight into its storage (no weights to download), LoRA
# r=4 alpha 4 on query and value, batch 1 x SEQ packed Debian SFT (gemma_chat), AdamW, STEPS steps,
# no eval. Prints the init time (start to the trainer's model line: config, random init straight
# into the storage), each step's wall time (between the trainer's lines), tokens/s over the steps
# after the first (1 x SEQ tokens a step), and the peak RSS (GNU time's maximum resident set of
# the whole process).
# Usage: bench/big_lora.sh [PRESET=gemma3_12b_text] [FROZEN=q4_k] [STEPS=3] [COMPUTE=float32] [SEQ=512]
# Check `free -g` first: 12B under q4_k needs ~17 GB, 4B ~7 GB. BUILD=build by default.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-gemma3_12b_text} FROZEN=${2:-q4_k} STEPS=${3:-3} COMPUTE=${4:-float32} SEQ=${5:-512}
BUILD=${BUILD:-build}
make -s BUILD="$BUILD" "$BUILD/gemmatrain" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/cfg.yaml" <<YAML
model: {preset: $PRESET, frozen_dtype: $FROZEN, compute_dtype: $COMPUTE, init_seed: 1}
tokenizer: tests/fixtures/gemma3-tokenizer-8k.json
data: {train: datasets/debian-packages/train.jsonl, format: prompt_response, template: gemma_chat,
       sequence_length: $SEQ, packing: true, shuffle_seed: 1}
lora: {enabled: true, rank: 4, alpha: 4, targets: [query, value]}
optimizer: {name: adamw, learning_rate: 2.0e-4, weight_decay: 0.01}
schedule: {name: constant, warmup_steps: 0}
train: {batch_size: 1, steps: $STEPS}
logging: {metrics: $tmp/metrics.jsonl, every_steps: 1}
output_dir: $tmp/out
YAML
echo "$PRESET, frozen $FROZEN, compute $COMPUTE, 1 x $SEQ, $STEPS steps; $(grep MemAvailable /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
# a Ctrl-C (SIGINT) stops the trainer after its current step: the steps so far are still reported
/usr/bin/time -v -o "$tmp/time.txt" "$BUILD/gemmatrain" train "$tmp/cfg.yaml" 2>&1 |
  while IFS= read -r line; do printf '%8.1f s  %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$line"; done |
  tee "$tmp/log.txt" || true
rss_kb=$(sed -nE 's/.*Maximum resident set size \(kbytes\): ([0-9]+)/\1/p' "$tmp/time.txt")
python3 - "$tmp/log.txt" "$SEQ" "${rss_kb:-0}" "$PRESET" "$FROZEN" "$COMPUTE" <<'PY'
import re, sys
log, seq, rss_kb = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
# the wall-clock stamps of the model line (init done) and of each step's line
t_model = float(re.search(r"^ *([0-9.]+) s  model ", log, re.M).group(1))
steps = [(float(t), float(l)) for t, l in re.findall(r"^ *([0-9.]+) s  step \d+/\d+ loss ([0-9.]+)", log, re.M)]
if not steps:
    sys.exit("no step finished")
stamps = [t_model] + [t for t, _ in steps]
dt = [b - a for a, b in zip(stamps, stamps[1:])]
later = dt[1:] or dt
print("steps (s): " + ", ".join(f"{d:.1f}" for d in dt) + "; losses: " + ", ".join(f"{l:.4f}" for _, l in steps))
print(f"RESULT preset={sys.argv[4]} frozen={sys.argv[5]} compute={sys.argv[6]} peak_rss_kb={rss_kb} "
      f"peak_rss_gib={rss_kb / 2**20:.2f} init_s={t_model:.0f} steps={len(dt)} "
      f"step_s={sum(later) / len(later):.1f} tokens_s={seq * len(later) / sum(later):.2f}")
PY
