#!/usr/bin/env bash
# Gemma tokenizer throughput: gemmatrain's C encoder vs Hugging Face `tokenizers` (Rust, called
# from Python), same tokenizer.json, same texts (prompt and response of each line of
# datasets/debian-packages/train.jsonl), one thread each: RAYON_NUM_THREADS=1 and
# TOKENIZERS_PARALLELISM=false for tokenizers, and the C encoder is single-threaded (its load
# may use GT_THREADS/OMP threads to parse the JSON; both load times are printed).
# Needs: pip install tokenizers. Usage: bench/tokenize.sh [REPEATS]   (BUILD=build by default)
# TOKENIZER: a tokenizer.json, by default $GT_GEMMA3_TOKENIZER_JSON (the real 262144-piece Gemma 3
# tokenizer.json, e.g. from Hugging Face google/gemma-3-270m) when set, else the committed
# 8192-piece cut tests/fixtures/gemma3-tokenizer-8k.json (faster to load, more pieces per text:
# the numbers are not the full vocabulary's). DATA overrides the JSONL.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TOK=${TOKENIZER:-${GT_GEMMA3_TOKENIZER_JSON:-tests/fixtures/gemma3-tokenizer-8k.json}}
DATA=${DATA:-datasets/debian-packages/train.jsonl}
REPEATS=${1:-5}
make -s BUILD="$BUILD" "$BUILD/bench/tokenize" >/dev/null
c=$("$BUILD/bench/tokenize" "$TOK" "$DATA" "$REPEATS")
hf=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 bench/tokenize_hf.py "$TOK" "$DATA" "$REPEATS")
echo "$c" | grep -v '^RESULT'
echo "$hf" | grep -v '^RESULT'
field() { sed -nE "s/^RESULT.* $2=([^ ]+).*/\1/p" <<<"$1"; }
ct=$(field "$c" tokens); ht=$(field "$hf" tokens)
if [ "$ct" != "$ht" ]; then
  echo "token counts differ: gemmatrain $ct, tokenizers $ht" >&2
  exit 1
fi
awk -v c="$(field "$c" mb_s)" -v h="$(field "$hf" mb_s)" -v cl="$(field "$c" load_s)" -v hl="$(field "$hf" load_s)" \
  'BEGIN { printf "encode: gemmatrain/tokenizers = %.2fx (%.2f vs %.2f MB/s); load: %.3f s vs %.3f s (%.2fx faster)\n",
           c / h, c, h, cl, hl, hl / cl }'
