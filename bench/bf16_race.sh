#!/usr/bin/env bash
# The bf16 GEMM race (issue 15): our bf16 path (bench/bf16_kern: rounding + packing + AMX /
# AVX512-BF16 kernel, as ops_bf16 and the LM head call it) against torch's bf16 matmul
# (bench/bf16_torch.py, oneDNN) on the Gemma 3 270M frozen-weight shapes, y = x W^T (fwd) and
# dx += dy W (bwd), each contender in its own process, alternated over ROUNDS rounds (order
# rotating). Contenders: gt (operands 64-byte aligned, as the model allocates them), gt-mis
# (16 bytes past a boundary: where glibc malloc put them before), torch (skipped with a note when
# torch is not installed). Prints per shape: GFLOP/s median [min..max] over the rounds from wall
# time and from CPU time per thread (cpu: less moved by other load on a shared machine), and the
# load average seen at the start of each round.
# usage: bench/bf16_race.sh [ROUNDS=5] [M=512] [REPS=5 calls per run]   (BUILD, THREADS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${1:-5}
M=${2:-512}
REPS=${3:-5}
THREADS=${THREADS:-2}
export GT_THREADS=$THREADS THREADS OMP_WAIT_POLICY=PASSIVE
make -s BUILD="$BUILD" "$BUILD/bench/bf16_kern" >/dev/null
contenders=(gt gt-mis)
if python3 -c 'import torch' 2>/dev/null; then contenders+=(torch); else echo "torch not installed (pip install torch): skipped"; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=${#contenders[@]}
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp/load"
  for i in $(seq 0 $((n - 1))); do
    c=${contenders[$(((i + r) % n))]}
    case $c in
      gt) out=$("$BUILD/bench/bf16_kern" "$REPS" "$M" 64) ;;
      gt-mis) out=$("$BUILD/bench/bf16_kern" "$REPS" "$M" 16) ;;
      torch) out=$(python3 bench/bf16_torch.py "$REPS" "$M") ;;
    esac
    grep '^RESULT' <<<"$out" | sed -E "s/^RESULT (align=[0-9]+ )?/$r $c /" >>"$tmp/all"
  done
done
cat "$tmp/load"
echo "GFLOP/s median [min..max] over $ROUNDS rounds, M $M, $THREADS threads: wall | cpu"
awk '
  { split($3, s, "="); split($4, d, "="); key = s[2] " " d[2]; c = $2
    for (f = 5; f <= NF; f++) { split($f, kv, "="); val[kv[1]] = kv[2] }
    if (!(key in seen)) { seen[key] = 1; keys[++nk] = key; dims[key] = "N " val["N"] " K " val["K"] }
    if (!(c in cs)) { cs[c] = 1; cl[++ncl] = c }
    n = ++cnt[key, c]; w[key, c, n] = val["gflops"]; u[key, c, n] = val["cpu_gflops"] }
  function stat(arr, key, c, n,   a, i, j, t) {
    for (i = 1; i <= n; i++) a[i] = arr[key, c, i] + 0
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return sprintf("%.0f [%.0f..%.0f]", n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2, a[1], a[n]) }
  END {
    for (k = 1; k <= nk; k++) {
      key = keys[k]; line = sprintf("%-12s %-16s", key, dims[key])
      for (i = 1; i <= ncl; i++) { c = cl[i]; n = cnt[key, c]; if (!n) continue
        line = line sprintf("  %s %s | %s", c, stat(w, key, c, n), stat(u, key, c, n)) }
      print line
    }
  }' "$tmp/all"
