#!/usr/bin/env bash
# LoRA fine-tuning step of Gemma 3 270M (random weights; rank 4 on query/value, AdamW, batch 1):
# gemmatrain (frozen base in fp32 and in bf16) against PyTorch + PEFT, 2 threads each, seq 256 and
# 512. Every configuration runs in its own process so each peak RSS is its own.
# Needs: pip install torch transformers peft. Usage: bench/train.sh [REPS=3] [SEQS="256 512"]
# (BUILD=build by default; GT_THREADS=2 unless set).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
REPS=${1:-3}
SEQS=${2:-"256 512"}
export GT_THREADS=${GT_THREADS:-2}
make -s BUILD="$BUILD" "$BUILD/bench/train" >/dev/null
field() { sed -nE "s/^RESULT.* $2=([^ ]+).*/\1/p" <<<"$1"; }
for seq in $SEQS; do
  declare -A tok rss
  for fz in fp32 bf16; do
    out=$("$BUILD/bench/train" "$seq" "$REPS" "$fz")
    grep -v '^RESULT' <<<"$out"
    tok[$fz]=$(field "$out" tokens_s); rss[$fz]=$(field "$out" rss_mb)
  done
  if py=$(python3 bench/train_peft.py "$seq" "$REPS" "$GT_THREADS" 2>/dev/null); then
    grep -v '^RESULT' <<<"$py"
    pt=$(field "$py" tokens_s); pr=$(field "$py" rss_mb)
    for fz in fp32 bf16; do
      awk -v s="$seq" -v f="$fz" -v c="${tok[$fz]}" -v p="$pt" -v cr="${rss[$fz]}" -v pr="$pr" \
        'BEGIN { printf "seq %s, frozen %s: gemmatrain/PEFT tokens/s = %.2fx (%.1f vs %.1f), peak RSS %.0f vs %.0f MB (%.2fx less)\n",
                 s, f, c / p, c, p, cr, pr, pr / cr }'
    done
  else
    echo "seq $seq: PyTorch+PEFT not available (pip install torch transformers peft)"
  fi
  unset tok rss
done
