#!/usr/bin/env bash
# Builds the libFuzzer targets (tools/fuzz/fuzz_*.c, clang with ASan + UBSan) and runs each for
# RUNS executions or SECONDS seconds, whichever comes first, then prints the executions per target.
#
# Usage: tools/fuzz/run.sh [-n RUNS] [-t SECONDS] [-j MAKE_JOBS] [-k] [TARGET ...]
#   -k: keep going after a crash (libFuzzer -fork=1 -ignore_crashes=1): for a target whose library
#       crashes on some inputs by itself (fuzz_checkpoint: libhdf5). Every crash input is kept in
#       the artifacts directory, each with its stack in the log, to be triaged: a crash with our
#       code at the top of its stack is ours (tools/fuzz/triage.sh TARGET sorts them). The run ends at SECONDS (RUNS is not honoured by
#       libFuzzer's fork mode; the count printed is the last one reported).
#   TARGET: a harness name (fuzz_gguf) or file; default: every tools/fuzz/fuzz_*.c
#   env: BUILD (default build-fuzzer), FUZZ_CC (default clang-14), FUZZ_FLAGS (more libFuzzer flags)
#
# Each harness names its seed inputs on a header line " * seeds: PATH ..." (files or directories,
# relative to the repository root) and may name a libFuzzer dictionary on " * dict: PATH" and
# libFuzzer flags of its own on " * flags: -flag=value ..." (before FUZZ_FLAGS); a new
# target is one file. The growing corpus is kept in
# $BUILD/fuzz/corpus/NAME (seeds are read, never written), crash inputs go to
# $BUILD/fuzz/artifacts/NAME/. Exit status: 0 when no target found a crash, leak or UB.
# Reproduce one: $BUILD/fuzz/NAME $BUILD/fuzz/artifacts/NAME/crash-...
set -u
cd "$(dirname "$0")/../.."
runs=1000000 secs=600 jobs=2 keep=0
while getopts "n:t:j:k" o; do
  case $o in
    n) runs=$OPTARG ;;
    t) secs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    k) keep=1 ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
build=${BUILD:-build-fuzzer}
targets=()
if [ $# -eq 0 ]; then
  for f in tools/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
else
  for t in "$@"; do targets+=("$(basename "$t" .c)"); done
fi
bins=()
for t in "${targets[@]}"; do
  [ -f "tools/fuzz/$t.c" ] || { echo "fuzz: no tools/fuzz/$t.c" >&2; exit 2; }
  bins+=("$build/fuzz/$t")
done
make --no-print-directory FUZZ=1 BUILD="$build" -j"$jobs" "${bins[@]}" || exit 2

# One thread per process: the machine is shared and OpenMP teams only add noise here.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
summary=()
for t in "${targets[@]}"; do
  corpus="$build/fuzz/corpus/$t" art="$build/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$art"
  # libFuzzer reads directories only: gather the seed files into one
  seeds=() seeddir="$build/fuzz/seeds/$t"
  rm -rf "$seeddir" && mkdir -p "$seeddir"
  for s in $(sed -n 's/^ \* seeds: *//p' "tools/fuzz/$t.c" | head -n 1); do
    if [ -e "$s" ]; then
      seeds+=("$s")
      find "$s" -type f -exec cp -t "$seeddir" {} +
    else
      echo "fuzz: $t: seed $s not found" >&2
    fi
  done
  dict=$(sed -n 's/^ \* dict: *//p' "tools/fuzz/$t.c" | head -n 1)
  dictflag=()
  [ -n "$dict" ] && dictflag=(-dict="$dict")
  read -r -a ownflags <<<"$(sed -n 's/^ \* flags: *//p' "tools/fuzz/$t.c" | head -n 1)"
  log="$build/fuzz/$t.log"
  echo "fuzz: $t: up to $runs runs / ${secs}s, seeds: ${seeds[*]:-none}"
  # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
  forkflags=()
  [ $keep = 1 ] && forkflags=(-fork=1 -ignore_crashes=1)
  "$build/fuzz/$t" -runs="$runs" -max_total_time="$secs" -print_final_stats=1 "${forkflags[@]}" \
    -artifact_prefix="$art/" -rss_limit_mb=4096 -timeout=30 "${dictflag[@]}" "${ownflags[@]}" ${FUZZ_FLAGS:-} \
    "$corpus" "$seeddir" >"$log" 2>&1
  rc=$?
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ $keep = 1 ]; then
    # fork mode: "#N: cov: ... oom/timeout/crash: a/b/c time: Ss ..." lines, no final stats
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
    n=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
    secs_used=$(sed -nE 's/.* time: ([0-9]+)s.*/\1/p' <<<"$last")
    crashes=$(sed -nE 's|.*oom/timeout/crash: ([0-9/]+) .*|\1|p' <<<"$last")
    summary+=("$(printf '%-24s %10s executions in %ss, oom/timeout/crash %s (inputs in %s); log %s' "$t" "${n:-?}" \
      "${secs_used:-?}" "${crashes:-?}" "$art" "$log")")
    [ $rc -eq 0 ] || status=1
    continue
  fi
  secs_used=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  if [ $rc -ne 0 ]; then
    status=1
    grep -E '^==[0-9]+==ERROR|runtime error|SUMMARY|Test unit written|ABORT|deadly signal' "$log" | head -n 8
    summary+=("$(printf '%-24s FAILED (exit %d) after %s executions; log %s' "$t" "$rc" "${n:-?}" "$log")")
  else
    rate=$( [ -n "$n" ] && [ "${secs_used:-0}" -gt 0 ] && echo $((n / secs_used)) || echo '?')
    summary+=("$(printf '%-24s %10s executions in %ss (%s/s), corpus %s inputs' "$t" "${n:-?}" "${secs_used:-?}" "$rate" \
      "$(find "$corpus" -type f | wc -l)")")
  fi
done
printf '%s\n' "${summary[@]}"
exit $status
