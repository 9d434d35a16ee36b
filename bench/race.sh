#!/usr/bin/env bash
# The race (issue 15): the 270M LoRA step (rank 4 on q/v, AdamW, random weights, Gemma 3 270M
# shapes) on the same packed Debian SFT batch, and greedy decoding of the real 270M GGUF, each
# contender in its own process, alternated over ROUNDS rounds (the order rotates every round),
# the same THREADS for all; warm-up steps are excluded by each contender. Prints a Markdown table:
# tokens/s median [min..max] over the rounds, peak RSS, achieved GFLOP/s and its share of the
# peak of the arithmetic the contender uses, measured in this run (fp32: the better of OpenBLAS
# sgemm and torch's fp32 matmul; bf16: the better of our AMX / AVX512-BF16 kernel and torch's
# bf16 matmul; the best of every round's samples). Achieved FLOP/s counts the model's FLOPs for
# the batch (bench/train's count: the LM head on weighted labels only, attention on the keys each
# token sees in its own packed example), the same count for every contender, whatever extra
# work a contender does.
#
# Step contenders (shapes: batch x seq, default 1x512 4x256):
#   gt-fp32     build/bench/train, frozen fp32, compute float32
#   gt-bf16     build/bench/train, frozen bf16, model.compute_dtype bfloat16
#   torch       bench/race_torch.py bf16: sdpa, LM head on response positions only, bf16 autocast
#               with bf16 frozen weights, torch.compile (TORCH_COMPILE=0: eager)
#   torch-fp32  the same in fp32 (not in the default list)
#   peft        bench/train_peft.py: PyTorch + PEFT as a user writes it (eager, all logits, fp32)
#   keras       bench/race_keras.py: KerasHub Gemma3CausalLM on JAX, enable_lora(4), jitted
# Decode contenders (the real GGUF, same prompt, greedy, NEW tokens):
#   gt-gen      build/gemmatrain generate: NEW decode steps = the run of NEW + 1 tokens minus
#               the run of 1 (load and prefill cancel)
#   llama       bench/race_llama.py (llama-cpp-python), timed inside from the first token
#
# usage: bench/race.sh [--rounds N] [--quick] [--shapes "1x512 4x256"] [--contenders "LIST"]
#        bench/race.sh --table RECORDS   (the tables again, from a run's records file)
#   --quick: 1 round, shape 1x256, 1 timed step, 16 new tokens, torch eager (a smoke run)
# Environment: BUILD (build), THREADS (2), REPS (timed steps per run, 3), NEW (64), PROMPT,
# DATA (datasets/debian-packages/train.jsonl), GGUF (out/models/gemma-3-270m-q4_k_m.gguf,
# `make model`), TORCH_COMPILE (1), TORCH_COMPILE_MODE (torch.compile's mode, e.g. max-autotune:
# on the 2-core EPYC it ran the 1 x 512 step at 355 tokens/s, no faster than the default), OMP_WAIT (default: each library's own OpenMP wait policy,
# its best on a quiet machine: gemmatrain spins briefly, torch's libgomp longer; PASSIVE exports
# OMP_WAIT_POLICY=PASSIVE to every contender, for a machine shared with other jobs, where
# torch's spinning threads ran its 1 x 256 step at 9.7 tokens/s against 99 passive),
# RUN_TIMEOUT (seconds per contender run, 1800), LOG (the raw
# output of every run) and RECORDS (one line per measurement), temporary files by default.
# Python contenders need pip packages (torch transformers peft / keras-hub jax /
# llama-cpp-python); a missing one is skipped with a note saying what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 SHAPES="1x512 4x256" QUICK=0 TABLE=
CONTENDERS="gt-fp32 gt-bf16 torch peft keras gt-gen llama"
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --contenders) CONTENDERS=$2; shift 2 ;;
    --table) TABLE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/race.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench/race.sh: --rounds wants a positive integer, got '$ROUNDS'" >&2; exit 2; }

# The tables. Medians and [min..max] over rounds; "vs best PyTorch": this median over the best
# PyTorch-family median (torch, torch-fp32, peft) of the shape; GFLOP/s = the batch's model FLOPs
# per token x tokens/s; share: of the best peak measured for that arithmetic in this run; CPU
# s/step: median CPU time of a step over all threads (on a shared machine, wall / CPU shows how
# much of the threads' time a contender got).
tables() {
awk '
  function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                 return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function mx(a, b) { return a > b ? a : b }
  $1 == "meta" { k = $2; sub(/^meta [^ ]+ /, ""); meta[k] = $0 }
  $1 == "note" { sub(/^note /, ""); notes[++nn] = $0 }
  $1 == "batch" { flops[$2] = $3; weighted[$2] = $4; ntok[$2] = $5 }
  $1 == "peak" { sg = mx(sg, $3); bk = mx(bk, $4); tf = mx(tf, $5); tb = mx(tb, $6); kern = $7 }
  $1 == "step" || $1 == "gen" {
    key = $3 SUBSEP $4
    if (!(key in n)) { keys[++nk] = key; kind[key] = $1 }
    v[key, ++n[key]] = $5; rss[key] = mx(rss[key], $6); arith[key] = $7; extra[key] = $8
    if ($9 != "" && $9 != "-") cpu[key, ++ncpu[key]] = $9
  }
  END {
    rounds = meta["rounds"]; reps = meta["reps"]; new = meta["new"]; prompt = meta["prompt"]
    printf "Machine: %s; %s threads each (OpenMP wait policy %s); load average %s at the start, %s at the end.\n", meta["machine"], meta["threads"], meta["omp"], meta["load0"], meta["load1"]
    fp = mx(sg, tf); bp = mx(bk, tb)
    printf "Peaks (best sample of %d round(s)): fp32 %.0f GFLOP/s (OpenBLAS sgemm %.0f, torch matmul %.0f); bf16 %.0f GFLOP/s (our %s kernel %.0f, torch matmul %.0f).\n\n", rounds, fp, sg, tf, bp, kern, bk, tb
    for (k = 1; k <= nk; k++) {
      key = keys[k]; split("", a); for (i = 1; i <= n[key]; i++) a[i] = v[key, i]
      lo = a[1]; hi = a[1]; for (i = 1; i <= n[key]; i++) { lo = a[i] < lo ? a[i] : lo; hi = a[i] > hi ? a[i] : hi }
      m[key] = med(a, n[key]); spread[key] = sprintf("%.1f [%.1f..%.1f]", m[key], lo, hi)
      split("", a); for (i = 1; i <= ncpu[key]; i++) a[i] = cpu[key, i]
      mcpu[key] = ncpu[key] ? sprintf("%.2f", med(a, ncpu[key])) : "-"
      split(key, p, SUBSEP)
      if (p[2] ~ /^(torch|torch-fp32|peft)$/) best[p[1]] = mx(best[p[1]], m[key])
    }
    print "| batch x seq | contender | arithmetic | tokens/s median [min..max] | vs best PyTorch | peak RSS | GFLOP/s | share of peak | CPU s/step |"
    print "|---|---|---|---|---|---|---|---|---|"
    for (k = 1; k <= nk; k++) {
      key = keys[k]; if (kind[key] != "step") continue
      split(key, p, SUBSEP); sh = p[1]; c = p[2]
      g = flops[sh] / ntok[sh] * m[key] / 1e9; pk = arith[key] == "bf16" ? bp : fp
      vs = best[sh] > 0 ? sprintf("%.2fx", m[key] / best[sh]) : "-"
      label = c (extra[key] != "-" ? " (" extra[key] ")" : "")
      printf "| %s | %s | %s | %s | %s | %.0f MB | %.0f | %s | %s |\n", sh, label, arith[key], spread[key], vs, rss[key], g, (pk > 0 ? sprintf("%.0f%%", 100 * g / pk) : "-"), mcpu[key]
    }
    for (sh in flops) printf "\n%s: %d of %d positions carry a weighted label; %.1f GFLOP per step (model count).", sh, weighted[sh], ntok[sh], flops[sh] / 1e9
    printf "\n%d timed step(s) per run after the warm-up; one process per run.\n", reps
    for (k = 1; k <= nk; k++) if (kind[keys[k]] == "gen") { gen = 1; split(keys[k], p, SUBSEP); if (p[2] == "llama") ll = m[keys[k]] }
    if (gen) decode_table(ll)
    if (nn) { printf "\nNotes:\n"; for (i = 1; i <= nn; i++) print "- " notes[i] }
  }
  function decode_table(ll,   k, key, p, name) {
    printf "\n| decode, real 270M GGUF, greedy, %d new tokens after \"%s\" | tokens/s median [min..max] | vs llama.cpp | peak RSS |\n|---|---|---|---|\n", new, prompt
    for (k = 1; k <= nk; k++) {
      key = keys[k]; if (kind[key] != "gen") continue
      split(key, p, SUBSEP); name = p[2] == "gt-gen" ? "gemmatrain generate" : "llama-cpp-python"
      printf "| %s | %s | %s | %.0f MB |\n", name, spread[key], (ll > 0 ? sprintf("%.2fx", m[key] / ll) : "-"), rss[key]
    }
  }' "$1"
}

if [[ -n $TABLE ]]; then tables "$TABLE"; exit 0; fi

BUILD=${BUILD:-build} THREADS=${THREADS:-2} REPS=${REPS:-3} NEW=${NEW:-64}
TORCH_COMPILE=${TORCH_COMPILE:-1}
if ((QUICK)); then ROUNDS=1 SHAPES="1x256" REPS=1 NEW=16 TORCH_COMPILE=0; fi
PROMPT=${PROMPT:-"The capital of France is"}
DATA=${DATA:-datasets/debian-packages/train.jsonl}
GGUF=${GGUF:-${GT_GEMMA3_270M_GGUF:-out/models/gemma-3-270m-q4_k_m.gguf}}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
export GT_THREADS=$THREADS
OMP_WAIT=${OMP_WAIT:-default}
[[ $OMP_WAIT == default ]] || export OMP_WAIT_POLICY=$OMP_WAIT
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
LOG=${LOG:-$tmp/race.log}
: >"$LOG"
RECORDS=${RECORDS:-$tmp/race.rec}
: >"$RECORDS"
note() { echo "note $*" >>"$RECORDS"; }

[[ -f $DATA ]] || { echo "bench/race.sh: $DATA: no such file (DATA=)" >&2; exit 1; }
[[ -f $GGUF ]] || { echo "bench/race.sh: $GGUF: no such file (run make model, or set GGUF=)" >&2; exit 1; }
make -s BUILD="$BUILD" "$BUILD/bench/train" "$BUILD/bench/race_peak" "$BUILD/gemmatrain" >/dev/null

# Python contenders whose packages are missing are dropped, with a note (one process each:
# torch and jax cannot be imported together).
pycheck() { # contender, import list, pip names
  if ! python3 -c "import $2" 2>/dev/null; then
    note "$1 skipped: python3 cannot import $2 (pip install $3)"
    CONTENDERS=$(tr ' ' '\n' <<<"$CONTENDERS" | grep -vx -- "$1" | tr '\n' ' ')
  fi
}
for c in $CONTENDERS; do
  case $c in
    torch|torch-fp32|peft) pycheck "$c" "torch, transformers, peft" "torch transformers peft" ;;
    keras) pycheck keras "keras_hub, jax" "keras-hub jax" ;;
    llama) pycheck llama llama_cpp llama-cpp-python ;;
    gt-fp32|gt-bf16|gt-gen) ;;
    *) echo "bench/race.sh: unknown contender '$c'" >&2; exit 2 ;;
  esac
done
has() { [[ " $CONTENDERS " == *" $1 "* ]]; }

field() { sed -nE "s/^RESULT.* $2=([^ ]+).*/\1/p; s/^RESULT $2=([^ ]+).*/\1/p" <<<"$1" | head -1; }
# run NAME CMD...: the command under the time limit, its output appended to the log; prints the
# RESULT line (empty on failure, with a note)
run() {
  local name=$1 out rc=0
  shift
  out=$(timeout "$RUN_TIMEOUT" "$@" 2>&1) || rc=$?
  printf '### %s: %s\n%s\n' "$name" "$*" "$out" >>"$LOG"
  if ((rc)) || ! grep -q '^RESULT' <<<"$out"; then
    note "$name failed (exit $rc): $(grep -v '^\s*$' <<<"$out" | tail -1 | cut -c1-160)"
    return 0
  fi
  grep '^RESULT' <<<"$out" | tail -1
}

# step NAME B S BATCHFILE: one LoRA-step run; records
# "step ROUND SHAPE NAME tokens/s MB ARITH EXTRA CPU" (CPU: seconds per step over all threads)
step() {
  local c=$1 b=$2 s=$3 bf=$4 line arith=fp32 extra=-
  local data=("data=$DATA" "tokenizer=$GGUF")
  case $c in
    gt-fp32) line=$(run "$c $b x $s" "$BUILD/bench/train" "$s" "$REPS" fp32 gemma3_270m "$b" 128 "${data[@]}") ;;
    gt-bf16) line=$(run "$c $b x $s" "$BUILD/bench/train" "$s" "$REPS" bf16 gemma3_270m "$b" 128 "${data[@]}" compute=bfloat16) ;;
    torch) line=$(run "$c $b x $s" python3 bench/race_torch.py "$b" "$s" "$REPS" "$THREADS" bf16 "$TORCH_COMPILE" "$bf") ;;
    torch-fp32) line=$(run "$c $b x $s" python3 bench/race_torch.py "$b" "$s" "$REPS" "$THREADS" fp32 "$TORCH_COMPILE" "$bf") ;;
    peft) line=$(run "$c $b x $s" python3 bench/train_peft.py "$s" "$REPS" "$THREADS" "$b" "$bf") ;;
    keras) line=$(run "$c $b x $s" python3 bench/race_keras.py "$b" "$s" "$REPS" "$THREADS" "$bf") ;;
  esac
  [[ -n $line ]] || return 0
  case $c in
    gt-bf16) extra=kernel=$(field "$line" kernel); [[ $extra == kernel=off ]] || arith=bf16 ;;
    torch) arith=bf16; extra=compile=$(field "$line" compile) ;;
    torch-fp32) extra=compile=$(field "$line" compile) ;;
  esac
  local cpu
  cpu=$(field "$line" cpu_s)
  echo "step $round ${b}x$s $c $(field "$line" tokens_s) $(field "$line" rss_mb) $arith $extra ${cpu:--}" | tee -a "$RECORDS"
}

# decode NAME: one greedy decode measurement; records "gen ROUND - NAME tokens/s MB - -"
decode() {
  local c=$1 l1 l2 tok rss
  case $c in
    gt-gen)
      if [[ ! -x /usr/bin/time ]]; then note "gt-gen skipped: needs /usr/bin/time (apt-get install time)"; return 0; fi
      local gen=("$BUILD/gemmatrain" generate --model "$GGUF" --stop -1 "$PROMPT")
      l1=$(run "gt-gen 1 token" /usr/bin/time -f 'RESULT wall_s=%e rss_kb=%M' "${gen[@]}" --max-new-tokens 1)
      l2=$(run "gt-gen $((NEW + 1)) tokens" /usr/bin/time -f 'RESULT wall_s=%e rss_kb=%M' "${gen[@]}" --max-new-tokens $((NEW + 1)))
      [[ -n $l1 && -n $l2 ]] || return 0
      tok=$(awk -v n="$NEW" -v a="$(field "$l1" wall_s)" -v b="$(field "$l2" wall_s)" 'BEGIN { printf "%.2f", (b > a ? n / (b - a) : 0) }')
      rss=$(awk -v k="$(field "$l2" rss_kb)" 'BEGIN { printf "%.0f", k / 1024 }') ;;
    llama)
      l2=$(run llama python3 bench/race_llama.py "$GGUF" "$THREADS" "$NEW" "$PROMPT")
      [[ -n $l2 ]] || return 0
      tok=$(field "$l2" decode_tokens_s) rss=$(field "$l2" rss_mb) ;;
  esac
  echo "gen $round - $c $tok $rss - -" | tee -a "$RECORDS"
}

# peaks: records "peak ROUND SGEMM BF16 TORCH_FP32 TORCH_BF16 KERNEL" (0 where not measured)
peaks() {
  local l t tf=0 tb=0
  l=$(run race_peak "$BUILD/bench/race_peak")
  if has torch || has torch-fp32 || has peft; then
    t=$(run "torch peak" python3 bench/race_torch.py --peak "$THREADS")
    [[ -z $t ]] || tf=$(field "$t" torch_fp32) tb=$(field "$t" torch_bf16)
  fi
  local sg bk kern
  sg=$(field "$l" sgemm) bk=$(field "$l" bf16) kern=$(field "$l" kernel)
  echo "peak $round ${sg:-0} ${bk:-0} ${tf:-0} ${tb:-0} ${kern:-none}" | tee -a "$RECORDS"
}

machine="$(lscpu | sed -nE 's/^Model name: *//p' | head -1), $(nproc) CPUs ($(lscpu | sed -nE 's/^Core\(s\) per socket: *//p' | head -1) cores per socket), flags: $(grep -o -w -E 'avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | paste -sd' ')"
printf 'meta %s\n' "machine $machine" "threads $THREADS" "omp $OMP_WAIT" "rounds $ROUNDS" "reps $REPS" "new $NEW" "prompt $PROMPT" \
  "load0 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RECORDS"
echo "race: $(date -u +%F\ %H:%MZ), $machine; $THREADS threads; $ROUNDS round(s), shapes $SHAPES, $REPS timed step(s) per run; contenders: $CONTENDERS"
echo "race: raw output in $LOG, records in $RECORDS (bench/race.sh --table FILE reprints the tables)"

# The SFT batch of each shape, dumped once for the Python contenders; its FLOPs (bench/train's
# model count) from the same run.
for shape in $SHAPES; do
  b=${shape%x*} s=${shape#*x}
  line=$(run "batch $shape" "$BUILD/bench/train" "$s" 1 bf16 gemma3_270m "$b" 128 "data=$DATA" "tokenizer=$GGUF" "dump=$tmp/batch-$shape.json")
  [[ -n $line ]] || { echo "bench/race.sh: could not build the $shape batch:" >&2; grep '^note' "$RECORDS" >&2; exit 1; }
  echo "batch $shape $(awk -v g="$(field "$line" gflops)" -v ms="$(field "$line" ms)" 'BEGIN { printf "%.6g", g * ms * 1e6 }') $(field "$line" weighted) $((b * s))" >>"$RECORDS"
done

steps=() gens=()
for c in $CONTENDERS; do
  case $c in gt-gen|llama) gens+=("$c") ;; *) steps+=("$c") ;; esac
done
for round in $(seq 1 "$ROUNDS"); do
  peaks
  k=$(((round - 1) % (${#steps[@]} > 0 ? ${#steps[@]} : 1)))
  order=("${steps[@]:k}" "${steps[@]:0:k}")
  for shape in $SHAPES; do
    for c in "${order[@]}"; do step "$c" "${shape%x*}" "${shape#*x}" "$tmp/batch-$shape.json"; done
  done
  ((${#gens[@]})) || continue
  ((round % 2)) && gorder=("${gens[@]}") || mapfile -t gorder < <(printf '%s\n' "${gens[@]}" | tac)
  for c in "${gorder[@]}"; do decode "$c"; done
done

echo "meta load1 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RECORDS"
echo
tables "$RECORDS"
