#!/usr/bin/env bash
# The AVX512-BF16 GEMM blocks of autograd/bf16_kern.c at REV against the working tree's, both
# compiled into one process with the build's flags and alternated call by call: on a VM whose
# speed switches between states (the 2-core EPYC: about 10% within one run), separate processes
# could not resolve 2% (the same binary against itself swung 0.93-1.03 over alternated pairs);
# alternation in one process can. Each round times every product once per version over all its
# 32 x 32 blocks on one thread; prints the best time of ROUNDS rounds per version and new / old.
# Products (Gemma 3 270M, 512 tokens): gate forward (y^T = W x^T: packed B, transposed store) and
# gate's input gradient (dx += dy W: W's rows as stored, accumulated store).
# usage: bench/kern_ab.sh [REV=HEAD] [ROUNDS=30]     (needs an AVX512-BF16 CPU and gcc)
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:-HEAD} ROUNDS=${2:-30}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench/kern_ab.sh: ROUNDS wants a positive integer, got '$ROUNDS'" >&2; exit 2; }
grep -qw avx512_bf16 /proc/cpuinfo || { echo "bench/kern_ab.sh: this CPU has no AVX512-BF16" >&2; exit 2; }
git rev-parse --verify -q "$REV^{commit}" >/dev/null || { echo "bench/kern_ab.sh: no revision '$REV'" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
git show "$REV:autograd/bf16_kern.c" >"$dir/old.c"
cp autograd/bf16_kern.c "$dir/new.c"
flags="-std=c11 -D_GNU_SOURCE -O3 -march=native -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -mamx-tile -mamx-bf16 -I$PWD"
for v in old new; do
  # each version's entry points renamed (the shared output struct keeps its name)
  sed -i "s/\bgt_bf16k_\([a-z0-9_]*\)(/${v}_\1(/g" "$dir/$v.c"
  gcc $flags -c "$dir/$v.c" -o "$dir/$v.o" 2>"$dir/$v.err" || { echo "bench/kern_ab.sh: $v.c does not compile:" >&2; head -5 "$dir/$v.err" >&2; exit 1; }
done
cat >"$dir/main.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "autograd/bf16_kern.h"

#define DECL(v)                                                                                              \
    void v##_avx_block(int64_t, int64_t, int, int, int64_t, const uint16_t *, int64_t, const uint16_t *,       \
                       const gt_bf16k_out *);                                                                \
    void v##_avx_block_rowb(int64_t, int64_t, int, int, int64_t, const uint16_t *, int64_t, const uint16_t *,  \
                            int64_t, const gt_bf16k_out *);
DECL(old)
DECL(new)
/* a revision before the row-major kernel has none: its rows are skipped */
void old_avx_block_rowb(int64_t, int64_t, int, int, int64_t, const uint16_t *, int64_t, const uint16_t *, int64_t,
                        const gt_bf16k_out *) __attribute__((weak));

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int rounds = atoi(argv[1]);
    enum { T = 512, D = 640, F = 2048 };
    uint16_t *w = aligned_alloc(64, (size_t)F * D * 2), *x = aligned_alloc(64, (size_t)F * T * 2);
    float *c = aligned_alloc(64, (size_t)F * T * 4);
    if (!w || !x || !c) return 1;
    for (int64_t i = 0; i < (int64_t)F * D; i++) w[i] = (uint16_t)(0x3f80 + i % 7);  /* bf16 1.0 .. 1.05 */
    for (int64_t i = 0; i < (int64_t)F * T; i++) x[i] = (uint16_t)(0x3f80 + i % 5);
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < 4; v++) {
            if (v >= 2 && !old_avx_block_rowb) continue;
            double t = now();
            if (v < 2) { /* gate forward: A = W [F, D], B = x packed (T / 16 panels), C = y [T, F] transposed */
                gt_bf16k_out o = {c, F, F, T, true, false};
                for (int64_t m0 = 0; m0 < F; m0 += 32)
                    for (int64_t n0 = 0; n0 < T; n0 += 32)
                        (v == 0 ? old_avx_block : new_avx_block)(m0, n0, 2, 2, D, w, D, x, &o);
            } else { /* gate's input gradient: A = dy [T, F], B = W_gate [F, D] as stored, C = dx [T, D] += */
                gt_bf16k_out o = {c, D, T, D, false, true};
                for (int64_t m0 = 0; m0 < T; m0 += 32)
                    for (int64_t n0 = 0; n0 < D; n0 += 32)
                        (v == 2 ? old_avx_block_rowb : new_avx_block_rowb)(m0, n0, 2, 2, F, x, F, w, D, &o);
            }
            t = now() - t;
            if (t < best[v]) best[v] = t;
        }
    double fl = 2.0 * F * D * T;
    printf("gate forward:      old %.3f ms (%.0f GFLOP/s)  new %.3f ms (%.0f GFLOP/s)  new/old %.3f\n", best[0] * 1e3,
           fl / best[0] / 1e9, best[1] * 1e3, fl / best[1] / 1e9, best[1] / best[0]);
    if (!old_avx_block_rowb) {
        printf("gate input grad.:  the old revision has no row-major kernel\n");
        return 0;
    }
    printf("gate input grad.:  old %.3f ms (%.0f GFLOP/s)  new %.3f ms (%.0f GFLOP/s)  new/old %.3f\n", best[2] * 1e3,
           fl / best[2] / 1e9, best[3] * 1e3, fl / best[3] / 1e9, best[3] / best[2]);
    return 0;
}
EOF
gcc $flags "$dir/main.c" "$dir/old.o" "$dir/new.o" -o "$dir/ab"
echo "bench/kern_ab.sh: autograd/bf16_kern.c at $(git rev-parse --short "$REV") (old) against the working tree (new), one thread, best of $ROUNDS rounds"
"$dir/ab" "$ROUNDS"
