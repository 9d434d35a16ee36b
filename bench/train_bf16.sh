#!/usr/bin/env bash
# The 270M LoRA step (bench/train, frozen bf16 weights) with model.compute_dtype float32 against
# bfloat16, alternated in the same run: ROUNDS rounds, each running every shape (batch x seq) in
# both modes in turn, one process per configuration; tokens/s median [min..max] and the median of
# the per-round ratio bf16 / fp32. Batches: synthetic ids (every label weighted: the LM head on all
# tokens) and, when the data and tokenizer exist, the real packed SFT batch (as bench/train.sh).
# Usage: bench/train_bf16.sh [ROUNDS=3] [SHAPES="1x512 4x256"] [REPS=2 steps per run]
# (BUILD=build; GT_THREADS=2 unless set; DATA, TOKENIZER or GT_GEMMA3_270M_GGUF as bench/train.sh;
# GT_BF16_KERNEL picks the kernel, see autograd/bf16_gemm.h)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${1:-3}
SHAPES=${2:-"1x512 4x256"}
REPS=${3:-2}
DATA=${DATA:-datasets/debian-packages/train.jsonl}
TOKENIZER=${TOKENIZER:-${GT_GEMMA3_270M_GGUF:-out/models/gemma-3-270m-q4_k_m.gguf}}
export GT_THREADS=${GT_THREADS:-2}
make -s BUILD="$BUILD" "$BUILD/bench/train" >/dev/null
batches=(synthetic)
if [[ -f $DATA && -f $TOKENIZER ]]; then batches+=(sft); else echo "no $DATA or $TOKENIZER: synthetic batch only"; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for batch in "${batches[@]}"; do
    extra=()
    [[ $batch == sft ]] && extra=("data=$DATA" "tokenizer=$TOKENIZER")
    for shape in $SHAPES; do
      b=${shape%x*} s=${shape#*x}
      for mode in float32 bfloat16; do
        out=$("$BUILD/bench/train" "$s" "$REPS" bf16 gemma3_270m "$b" 128 "${extra[@]}" "compute=$mode")
        line=$(grep '^RESULT' <<<"$out")
        tok=$(sed -nE 's/.* tokens_s=([^ ]+).*/\1/p' <<<"$line")
        kern=$(sed -nE 's/.* kernel=([^ ]+).*/\1/p' <<<"$line")
        rss=$(sed -nE 's/.* rss_mb=([^ ]+).*/\1/p' <<<"$line")
        echo "$r $batch $shape $mode $tok $kern $rss" | tee -a "$tmp/all"
      done
    done
  done
done
echo "summary: tokens/s median [min..max] over $ROUNDS rounds; ratio = median of per-round bf16/fp32"
awk '
  { key = $2 " " $3; v[key, $4, $1] = $5; if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
    kern[key] = ($4 == "bfloat16") ? $6 : kern[key]; rss[key, $4] = $7; nr = ($1 > nr) ? $1 : nr }
  function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                 return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  END {
    for (k = 1; k <= nk; k++) {
      key = keys[k]; line = key
      split("", q)
      for (m = 1; m <= 2; m++) {
        mode = m == 1 ? "float32" : "bfloat16"; split("", a)
        for (i = 1; i <= nr; i++) a[i] = v[key, mode, i]
        mn = a[1]; mx = a[1]; for (i = 1; i <= nr; i++) { if (a[i] < mn) mn = a[i]; if (a[i] > mx) mx = a[i] }
        line = line sprintf("  %s %.1f [%.1f..%.1f] (%s MB)", mode, med(a, nr), mn, mx, rss[key, mode])
      }
      for (i = 1; i <= nr; i++) q[i] = v[key, "bfloat16", i] / v[key, "float32", i]
      print line sprintf("  bf16/fp32 %.2fx (kernel %s)", med(q, nr), kern[key])
    }
  }' "$tmp/all"
