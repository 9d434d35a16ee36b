#!/usr/bin/env bash
# LoRA fine-tuning step of Gemma 3 270M (random weights; rank 4 on query/value, AdamW, BATCH rows):
# gemmatrain (frozen base in fp32 and in bf16) against PyTorch + PEFT, 2 threads each, seq 256 and
# 512, on two batches: synthetic ids with every label weighted (the LM head runs on every token)
# and a real SFT batch, rows packed with Debian package prompt/response pairs in the gemma_chat
# template (prompt and padding labels weighted 0, as the 270M example config trains). PEFT runs
# the very same real batch (bench/train dumps it). Every configuration runs in its own process
# so each peak RSS is its own.
# Needs: pip install torch transformers peft. Usage: bench/train.sh [REPS=5] [SEQS="256 512"]
# (BUILD=build by default; GT_THREADS=2 unless set; BATCH=1 rows per step unless set (the 270M
# example config trains 4); DATA and TOKENIZER override the real batch's JSONL and tokenizer, by
# default datasets/debian-packages/train.jsonl and the real Gemma 3 270M GGUF's vocabulary,
# out/models/gemma-3-270m-q4_k_m.gguf from `make setup`; without them: the synthetic batch only).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${1:-5}
SEQS=${2:-"256 512"}
DATA=${DATA:-datasets/debian-packages/train.jsonl}
TOKENIZER=${TOKENIZER:-${GT_GEMMA3_270M_GGUF:-out/models/gemma-3-270m-q4_k_m.gguf}}
BATCH=${BATCH:-1}
export GT_THREADS=${GT_THREADS:-2}
make -s BUILD="$BUILD" "$BUILD/bench/train" >/dev/null
field() { sed -nE "s/^RESULT.* $2=([^ ]+).*/\1/p" <<<"$1"; }
batches=(synthetic)
if [[ -f $DATA && -f $TOKENIZER ]]; then batches+=(sft); else echo "no $DATA or $TOKENIZER: synthetic batch only"; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for seq in $SEQS; do
  for batch in "${batches[@]}"; do
    declare -A tok rss
    extra=() peft_batch=()
    if [[ $batch == sft ]]; then
      extra=("data=$DATA" "tokenizer=$TOKENIZER" "dump=$tmp/batch.json")
      peft_batch=("$tmp/batch.json")
    fi
    for fz in fp32 bf16; do
      out=$("$BUILD/bench/train" "$seq" "$REPS" "$fz" gemma3_270m "$BATCH" 128 "${extra[@]}")
      grep -v '^RESULT' <<<"$out"
      tok[$fz]=$(field "$out" tokens_s); rss[$fz]=$(field "$out" rss_mb)
    done
    if py=$(python3 bench/train_peft.py "$seq" "$REPS" "$GT_THREADS" "$BATCH" "${peft_batch[@]}" 2>/dev/null); then
      grep -v '^RESULT' <<<"$py"
      pt=$(field "$py" tokens_s); pr=$(field "$py" rss_mb)
      for fz in fp32 bf16; do
        awk -v r="$BATCH" -v s="$seq" -v b="$batch" -v f="$fz" -v c="${tok[$fz]}" -v p="$pt" -v cr="${rss[$fz]}" -v pr="$pr" \
          'BEGIN { printf "batch %s x seq %s, %s, frozen %s: gemmatrain/PEFT tokens/s = %.2fx (%.1f vs %.1f), peak RSS %.0f vs %.0f MB (%.2fx less)\n",
                   r, s, b, f, c / p, c, p, cr, pr, pr / cr }'
      done
    else
      echo "seq $seq: PyTorch+PEFT not available (pip install torch transformers peft)"
    fi
    unset tok rss
  done
done
