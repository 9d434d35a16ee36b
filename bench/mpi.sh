#!/usr/bin/env bash
# bench/mpi.sh: data-parallel training throughput on this machine, measured in one run:
#   1 rank x 2 threads      (gemmatrain train, GT_THREADS=2)
#   2 ranks x 1 thread each (mpirun -np 2, GT_THREADS=1, each rank bound to its own core)
# on the same global batch, for a LoRA step and a full fine-tuning step at Gemma 3 270M's shapes
# (random weights; the real Gemma 3 vocabulary from out/models/gemma-3-270m-q4_k_m.gguf, see
# `make setup`, on datasets/debian-packages/train.jsonl; DATA and TOKENIZER override them).
# Prints s/step, tokens/s, the ratio 2x1 / 1x2 and the share of the 2-rank step spent in
# gradient allreduce (incl. waiting for the slower rank). Targets (issue 6): ratio >= 0.9,
# allreduce < 5% for LoRA.
# usage: bench/mpi.sh [seq=256] [steps=6] [modes="lora full"]     (build first: make)
set -euo pipefail
cd "$(dirname "$0")/.."
seq=${1:-256}; steps=${2:-6}; modes=${3:-lora full}
bin=${GT_BIN:-build/gemmatrain}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE
data=${DATA:-datasets/debian-packages/train.jsonl}
tokenizer=${TOKENIZER:-${GT_GEMMA3_270M_GGUF:-out/models/gemma-3-270m-q4_k_m.gguf}}
common="configs/tiny.yaml tokenizer=$tokenizer model.generation=0 model.preset=gemma3_270m model.vocab_size=0
  model.num_layers=0 model.hidden_dim=0 model.intermediate_dim=0 model.num_query_heads=0
  model.num_key_value_heads=0 model.head_dim=0 model.sliding_window_size=-1 data.train=$data data.eval= data.sequence_length=$seq
  train.batch_size=2 train.micro_batch_size=1 train.steps=$steps schedule.warmup_steps=0
  logging.every_steps=1000"
run() { # command...: its "done after" line
  local out; out=$("$@" 2>&1) || { echo "$out" | tail -5 >&2; exit 1; }
  echo "$out" | grep -E "^(done|stopped) after" | tail -1
}
field() { sed -nE "s/.*, ([0-9.]+) s\/step.*/\1/p"; }
share() { sed -nE "s/.* ([0-9.]+)% of it in gradient allreduce.*/\1/p"; }
printf '%-6s %-14s %10s %10s %12s\n' mode layout s/step tokens/s allreduce%
for mode in $modes; do
  if [ "$mode" = lora ]; then extra="train.full_finetune=false lora.enabled=true lora.rank=4"
  else extra="train.full_finetune=true lora.enabled=false optimizer.learning_rate=1e-5"; fi
  one=$(GT_THREADS=2 run "$bin" train $common $extra)
  two=$(run mpirun -np 2 -x GT_THREADS=1 -x OMP_WAIT_POLICY "$bin" train $common $extra)
  s1=$(echo "$one" | field); s2=$(echo "$two" | field); ar=$(echo "$two" | share)
  [ -n "$s1" ] && [ -n "$s2" ] || { echo "bench/mpi: a run failed" >&2; exit 1; }
  tok=$((2 * seq))
  printf '%-6s %-14s %10.2f %10.1f %12s\n' "$mode" "1 rank x 2 thr" "$s1" "$(awk "BEGIN{print $tok / $s1}")" "-"
  printf '%-6s %-14s %10.2f %10.1f %12s\n' "$mode" "2 ranks x 1" "$s2" "$(awk "BEGIN{print $tok / $s2}")" "$ar"
  printf '%-6s ratio (2x1 tokens/s over 1x2): %.3f\n' "$mode" "$(awk "BEGIN{print $s1 / $s2}")"
done
