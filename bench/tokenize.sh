#!/usr/bin/env bash
# Gemma tokenizer throughput: gemmatrain's C encoder vs Hugging Face `tokenizers` (Rust, called
# from Python), same tokenizer.json, same texts (prompt and response of each line of
# debian-packages/train.jsonl), one thread each: RAYON_NUM_THREADS=1 and
# TOKENIZERS_PARALLELISM=false for tokenizers, and the C encoder is single-threaded (its load
# may use GT_THREADS/OMP threads to parse the JSON; both load times are printed).
# Needs: pip install tokenizers. Usage: bench/tokenize.sh [REPEATS]   (BUILD=build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SHARED=${GT_SHARED:-../shared}
TOK="$SHARED/data/gemma3-tokenizer/tokenizer.json"
DATA="$SHARED/data/debian-packages/train.jsonl"
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
