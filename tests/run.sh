#!/usr/bin/env bash
# Runs every Check test binary given, prints each suite's result and one closing total.
# Usage: tests/run.sh BUILD_DIR BIN...
set -u
build=$1; shift
export GT_BUILD="$build"
export GT_BIN="$build/gemmatrain"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Tests are deterministic and sized for 2 cores; keep the pools small unless told otherwise.
export GT_THREADS="${GT_THREADS:-2}"
# See cli/main.c: spinning OpenMP workers slow the next OpenBLAS call.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-18}"  # autograd/blas.h
# The sanitizer build runs 3-10x slower, and more on a loaded machine: scale Check's per-test
# timeouts there (two suites timed out at 120 s under ASan with the load average at 17).
case "$build" in *san*) export CK_TIMEOUT_MULTIPLIER="${CK_TIMEOUT_MULTIPLIER:-4}" ;; esac
passed=0; failed=0; bad_bins=()
for bin in "$@"; do
  name=$(basename "$bin")
  out=$("$bin" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -n 1)
  if [ -n "$line" ]; then
    n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
    f=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
    e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + n - f - e)); failed=$((failed + f + e))
  else
    failed=$((failed + 1))
  fi
  if [ $rc -ne 0 ] || [ -z "$line" ]; then
    bad_bins+=("$name")
    printf '%s\n' "$out" | grep -vE '^[0-9]+%: Checks: ' | tail -n 40
  fi
  printf '%-28s %s\n' "$name" "${line:-crashed (exit $rc)}"
done
echo "tests: $passed passed, $failed failed"
[ ${#bad_bins[@]} -eq 0 ] || { echo "failing: ${bad_bins[*]}"; exit 1; }
