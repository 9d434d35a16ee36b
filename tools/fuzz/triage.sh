#!/usr/bin/env bash
# Sorts a fuzz target's crash and OOM inputs by whose code failed: runs the harness on each one
# (the fuzz build, ASan + UBSan) and reads the first stack frame that is neither the sanitizer
# runtime, libFuzzer nor libc's memory functions. A failure whose first such frame is in a
# library (libhdf5 for fuzz_checkpoint, which crashes on some corrupted files by itself) is the
# library's; one in this repository's code is ours and makes the exit status 1.
#
# Usage: tools/fuzz/triage.sh TARGET [INPUT ...]   (default: every crash-* and oom-* input in
#        $BUILD/fuzz/artifacts/TARGET; BUILD defaults to build-fuzzer, built by tools/fuzz/run.sh)
# Prints one line per input: kind (SEGV, FPE, overflow, OOM, ...), owner (ours / the library's
# file name), the frame's function (or address) and the input's name; then the counts.
set -u
cd "$(dirname "$0")/../.."
build=${BUILD:-build-fuzzer}
t=${1:?usage: tools/fuzz/triage.sh TARGET [INPUT ...]}
shift
bin="$build/fuzz/$t"
[ -x "$bin" ] || { echo "triage: no $bin (build it with tools/fuzz/run.sh or make FUZZ=1)" >&2; exit 2; }
inputs=("$@")
if [ ${#inputs[@]} -eq 0 ]; then
  shopt -s nullglob
  inputs=("$build/fuzz/artifacts/$t"/crash-* "$build/fuzz/artifacts/$t"/oom-*)
fi
export OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ours=0 lib=0 none=0
for f in "${inputs[@]}"; do
  out=$(timeout 120 "$bin" -rss_limit_mb=2048 -malloc_limit_mb=2048 "$f" 2>&1)
  kind=$(grep -m1 -oE 'ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer): [a-zA-Z-]+|runtime error|deadly signal' <<<"$out" |
         sed -E 's/.*: //')
  # the first frame outside the sanitizers, libFuzzer and libc's copy/compare routines
  frame=$(grep -E '^ +#[0-9]+ 0x' <<<"$out" |
          grep -vE 'in (__asan|__sanitizer|__interceptor|___interceptor|__ubsan|fuzzer::|__mem|mem(cpy|move|set|cmp)|malloc|calloc|realloc|free|operator new)|/libc\.so|libFuzzer|compiler-rt' |
          head -n 1)
  if [ -z "$kind" ]; then
    none=$((none + 1))
    printf '%-20s %-22s %-24s %s\n' "none" "-" "(no failure now)" "$(basename "$f")"
    continue
  fi
  module=$(sed -nE 's/.*\(([^()+]+)\+0x[0-9a-f]+\).*/\1/p' <<<"$frame")
  fn=$(sed -nE 's/^ +#[0-9]+ 0x[0-9a-f]+ in ([^ ]+).*/\1/p' <<<"$frame")
  if [ -n "$module" ] && [ "${module#"$PWD"}" = "$module" ] && [ "${module#build}" = "$module" ]; then
    owner=$(basename "$module")
    lib=$((lib + 1))
  else
    owner=ours
    ours=$((ours + 1))
  fi
  printf '%-20s %-22s %-24s %s\n' "$kind" "$owner" "${fn:-?}" "$(basename "$f")"
done
echo "triage $t: ${#inputs[@]} inputs: $ours ours, $lib in a library, $none no longer failing"
[ $ours -eq 0 ]
