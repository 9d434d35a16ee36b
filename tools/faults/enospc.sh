#!/usr/bin/env bash
# ENOSPC at every write site (issue 13): runs each writer of gemmatrain once under
# tools/faults/enospc_shim.so to list its write-side operations (write, pwrite, fallocate,
# fsync, close of a written file) under its output directory, then once per operation N with the
# Nth and every later one failing with ENOSPC (a disk that fills at that point). Each run must:
# exit non-zero (1) or, when the fault was absorbed (a best-effort directory fsync), leave every
# output equal to the fault-free run's; print one "gemmatrain ...: No space left on device" line;
# not crash (no signal exit, no sanitizer or HDF5 diagnostic); leave no temporary file; leave
# every file under its final name whole: checkpoints equal to the fault-free run's (gemmatrain
# compare), HDF5 contents equal (tools/faults/h5same.py), other files byte-identical, JSONL
# logs valid JSON line by line; and a failed export or convert leaves nothing under --out.
# Writers: train (LoRA, checkpoint every 2 steps, metrics, eval, adapter), eval with per-example
# losses, export of the run's checkpoint (preset with adapter, --lora-only, hf, peft, gguf,
# gguf-lora) and convert (preset to keras, hf, gguf).
#   tools/faults/enospc.sh [-s STRIDE] [-w WRITERS]   (STRIDE 1: every N; WRITERS: a regex of names)
#   BIN=build-san/gemmatrain SHIM=build-san/tools/enospc_shim.so for a sanitized build.
# Run from the repository root after `make`; prints one line per writer and exits 1 on a failure.
set -u
stride=1 only=.
while getopts "s:w:" o; do
  case $o in s) stride=$OPTARG ;; w) only=$OPTARG ;; *) sed -n '2,20p' "$0"; exit 2 ;; esac
done
bin=${BIN:-build/gemmatrain}
shim=${SHIM:-build/tools/enospc_shim.so}
[ -x "$bin" ] && [ -f "$shim" ] || { echo "enospc: $bin or $shim not built (make $shim)" >&2; exit 2; }
shim=$(realpath "$shim")
# HDF5 outputs are compared by content (their object timestamps differ from run to run)
python3 -c 'import h5py' 2>/dev/null ||
  { echo "enospc: tools/faults/h5same.py needs python3's h5py (apt-get install python3-h5py, or pip install h5py)" >&2; exit 2; }
work=$(mktemp -d /tmp/gt-enospc.XXXXXX)
trap 'rm -rf "$work"' EXIT
export GT_THREADS=1 ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}verify_asan_link_order=0
# a sanitized build (BIN=build-san/gemmatrain): libhdf5 1.10's own leak on a failed create/write
echo "leak:libhdf5_serial.so" >"$work/lsan.supp"
export LSAN_OPTIONS=suppressions=$work/lsan.supp
train=(configs/tiny.yaml train.steps=6 checkpoint.every_steps=2 eval.every_steps=3 train.full_finetune=false
       lora.enabled=true logging.every_steps=1 logging.progress=plain)

# The command line of writer $1 with its outputs under $2 (inputs come from $work/in).
cmdline() {
  local in=$work/in lora=("$work/in/ckpt/ckpt-00000006.h5")
  case $1 in
    train) echo "$bin" train "${train[@]}" "checkpoint.dir=$2/ckpt" "output_dir=$2/out" "logging.metrics=$2/out/metrics.jsonl" ;;
    eval) echo "$bin" eval configs/tiny.yaml --lora "$in/out/adapter.lora.h5" "output_dir=$2/eval" "eval.per_example_output=$2/per.jsonl" ;;
    export) echo "$bin" export "${lora[@]}" --out "$2/preset" ;;
    export-lora-only) echo "$bin" export "${lora[@]}" --lora-only --out "$2/a.lora.h5" ;;
    export-hf) echo "$bin" export "${lora[@]}" --merge-lora --format hf --out "$2/hf" ;;
    export-peft) echo "$bin" export "${lora[@]}" --format peft --out "$2/peft" ;;
    export-gguf) echo "$bin" export "${lora[@]}" --merge-lora --format gguf --gguf-type q8_0 --out "$2/m.gguf" ;;
    export-gguf-lora) echo "$bin" export "${lora[@]}" --format gguf-lora --out "$2/l.gguf" ;;
    convert) echo "$bin" convert "$in/preset" "$2/conv" ;;
    convert-hf) echo "$bin" convert "$in/preset" "$2/conv" --format hf ;;
    convert-gguf) echo "$bin" convert "$in/preset" "$2/c.gguf" --format gguf ;;
  esac
}
writers=(train eval export export-lora-only export-hf export-peft export-gguf export-gguf-lora convert convert-hf convert-gguf)

# inputs: a trained adapter and a preset, made without faults
"$bin" train "${train[@]}" "checkpoint.dir=$work/in/ckpt" "output_dir=$work/in/out" >"$work/in.log" 2>&1 &&
  "$bin" export "$work/in/ckpt/ckpt-00000006.h5" --merge-lora --out "$work/in/preset" >>"$work/in.log" 2>&1 || { cat "$work/in.log"; exit 1; }

# Checks run N of writer w in $d against the fault-free run in $ref; prints nothing when it passes.
check() {
  local w=$1 d=$2 ref=$3 rc=$4 err=$5 f rel last
  last=$(grep 'No space left on device' "$err" | tail -n 1) # a sanitized build prints its summary after
  [ "$rc" -ge 128 ] && echo "exit $rc (a signal)"
  grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error|HDF5-DIAG|Segmentation' "$err" && echo "diagnostics: $(grep -Em1 'Sanitizer|runtime error|HDF5-DIAG|Segmentation' "$err")"
  if [ "$rc" -ne 0 ]; then
    [[ $last == gemmatrain*"No space left on device"* ]] || echo "not one clear ENOSPC line: $(tail -n 1 "$err" | cut -c1-100)"
    [ "$(grep -c 'No space left on device' "$err")" -eq 1 ] || echo "$(grep -c 'No space left' "$err") ENOSPC lines"
  fi
  f=$(find "$d" -name '*.tmp*' -o -name '.gemmatrain-probe*' | head -3)
  [ -n "$f" ] && echo "temporary files left: ${f//$d\//}"
  while IFS= read -r f; do
    rel=${f#"$d"/}
    if [ ! -e "$ref/$rel" ]; then echo "$rel: not written by the fault-free run"
    elif [[ $rel == *ckpt-*.h5 ]]; then "$bin" compare "$ref/$rel" "$f" >/dev/null 2>&1 || echo "$rel: differs from the fault-free run's"
    elif [[ $rel == *.jsonl ]]; then
      python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$f" 2>/dev/null || echo "$rel: not valid JSON lines"
    elif [[ $rel == *.h5 ]]; then # HDF5 object timestamps differ between runs: compare the contents
      cmp -s "$ref/$rel" "$f" || python3 tools/faults/h5same.py "$ref/$rel" "$f" ||
        echo "$rel: differs from the fault-free run's (a half-written file under its final name)"
    elif [[ $rel == */metadata.json ]]; then # KerasHub's date_saved differs between runs
      cmp -s <(grep -v date_saved "$ref/$rel") <(grep -v date_saved "$f") || echo "$rel: differs from the fault-free run's"
    elif [[ $rel == */config.yaml ]]; then # it names the output directories
      sed "s#$d#$ref#g" "$f" | cmp -s "$ref/$rel" - || echo "$rel: differs from the fault-free run's"
    else
      cmp -s "$ref/$rel" "$f" || echo "$rel: differs from the fault-free run's (a half-written file under its final name)"
    fi
  done < <(find "$d" -type f)
  if [ "$rc" -ne 0 ] && [[ $w == export* || $w == convert* ]] && [ -n "$(ls -A "$d")" ]; then
    echo "a failed $w left $(ls -A "$d" | tr '\n' ' ')"
  fi
  if [ "$rc" -eq 0 ]; then # absorbed: nothing may be missing
    while IFS= read -r f; do
      [ -e "$d/${f#"$ref"/}" ] || echo "exit 0 but ${f#"$ref"/} missing"
    done < <(find "$ref" -type f)
  fi
}

fail=0
for w in "${writers[@]}"; do
  [[ $w =~ $only ]] || continue
  ref=$work/ref-$w
  mkdir -p "$ref"
  GT_ENOSPC_DIR=$ref GT_ENOSPC_LOG=$work/$w.ops LD_PRELOAD=$shim $(cmdline "$w" "$ref") >"$ref.log" 2>&1 ||
    { echo "enospc: $w: the fault-free run failed:"; tail -3 "$ref.log"; fail=1; continue; }
  total=$(wc -l <"$work/$w.ops")
  bad=0 runs=0 absorbed=0
  for ((n = 1; n <= total; n += stride)); do
    d=$work/run-$w
    rm -rf "$d" && mkdir -p "$d"
    GT_ENOSPC_DIR=$d GT_ENOSPC_AT=$n LD_PRELOAD=$shim $(cmdline "$w" "$d") >"$d.out" 2>"$d.err"
    rc=$?
    runs=$((runs + 1))
    [ $rc -eq 0 ] && absorbed=$((absorbed + 1))
    problems=$(check "$w" "$d" "$ref" $rc "$d.err")
    if [ -n "$problems" ]; then
      bad=$((bad + 1))
      op=$(sed -n "${n}p" "$work/$w.ops" | cut -d' ' -f2-)
      echo "enospc: $w: N=$n ($op): exit $rc: ${problems//$'\n'/; }" | sed "s#$d/##g"
    fi
  done
  [ $bad -eq 0 ] && res=pass || { res=FAIL; fail=1; }
  echo "enospc: $w: $res: $runs runs over $total write-side operations, $bad bad, $absorbed absorbed (exit 0, outputs whole)"
done
exit $fail
