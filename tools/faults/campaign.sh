#!/usr/bin/env bash
# Fault campaign (issue 13): runs the tiny config through crashes and signals and checks that
# nothing is lost and every resume ends bit for bit where an uninterrupted run ends
# (`gemmatrain compare`). Not part of `make test` (minutes); run from the repository root after
# `make`:
#   tools/faults/campaign.sh [-k KILLS] [-s SIGNALS]      (defaults: 50 kill -9, 8 SIGTERMs)
# Cases: kill -9 soak (one process, KILLS random kill points), SIGTERM to mpirun -np 2 at random
# steps, a rank killed mid-run (GT_FAULT_INJECT=rank_kill), a NaN step under on_nonfinite
# stop/skip, a full disk (2 MB tmpfs, root only; and ENOSPC at every write site through an
# LD_PRELOAD shim, tools/faults/enospc.sh), and two "hosts" (network namespaces joined by a
# veth pair, Open MPI over TCP through tools/faults/netns_rsh.sh; root only): training equal to
# two local ranks, then the link cut mid-run. Prints one line per case and a summary table; exit
# status 1 when any case fails. Needs mpirun, and python3 with h5py for the ENOSPC case.
set -u
kills=50 signals=8
while getopts "k:s:" o; do
  case $o in k) kills=$OPTARG ;; s) signals=$OPTARG ;; *) sed -n '2,13p' "$0"; exit 2 ;; esac
done
bin=${BIN:-build/gemmatrain}
[ -x "$bin" ] || { echo "campaign: $bin not built (make)" >&2; exit 2; }
work=$(mktemp -d /tmp/gt-faults.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export GT_THREADS=1
steps=600
base=(configs/tiny.yaml "train.steps=$steps" schedule.warmup_steps=2 data.eval= eval.every_steps=0
      checkpoint.every_steps=2 checkpoint.keep=2 logging.progress=plain)
results=()
record() { results+=("$(printf '| %-34s | %-44s | %-60s | %s |' "$1" "$2" "$3" "$4")"); echo "campaign: $1: $4: $3"; }
fail=0
rand_ms() { echo $(( (RANDOM % ($2 - $1 + 1)) + $1 )); }
sleep_ms() { sleep "$(printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 )))"; }

# uninterrupted references (1 process and 2 ranks)
"$bin" train "${base[@]}" "output_dir=$work/ref1" "checkpoint.dir=$work/ref1/ckpt" >"$work/ref1.log" 2>&1 ||
  { cat "$work/ref1.log"; exit 1; }
mpirun -np 2 "$bin" train "${base[@]}" "output_dir=$work/ref2" "checkpoint.dir=$work/ref2/ckpt" >"$work/ref2.log" 2>&1 ||
  { cat "$work/ref2.log"; exit 1; }
final=$(printf 'ckpt-%08d.h5' $steps)

# 1. kill -9 at random points, resume, until the run completes (a run long enough for KILLS kills)
soak=("${base[@]}" "train.steps=$((kills * 40))")
"$bin" train "${soak[@]}" "output_dir=$work/refs" "checkpoint.dir=$work/refs/ckpt" >"$work/refs.log" 2>&1
sfinal=$(printf 'ckpt-%08d.h5' $((kills * 40)))
d=$work/soak; n=0; started=$(date +%s)
while :; do
  "$bin" train "${soak[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" checkpoint.resume=latest >>"$d.log" 2>&1 &
  pid=$!
  if [ $n -lt "$kills" ]; then
    sleep_ms "$(rand_ms 100 900)"
    if kill -9 $pid 2>/dev/null; then n=$((n + 1)); fi
  fi
  wait $pid 2>/dev/null; rc=$? # (no "Killed" line per kill)
  [ $rc -eq 0 ] && [ -f "$d/ckpt/$sfinal" ] && break
  [ $(( $(date +%s) - started )) -gt 900 ] && break
done
steps_logged=$(grep -c '"step"' "$d/metrics.jsonl" 2>/dev/null || echo 0)
cmp_out=$("$bin" compare "$work/refs/ckpt/$sfinal" "$d/ckpt/$sfinal" 2>&1)
if [ $? -eq 0 ]; then ok=pass; else ok=FAIL; fail=1; fi
record "kill -9 soak ($n kills)" "resumes end bit-identical to the reference" "$cmp_out; no stale temp: $(ls -a "$d/ckpt" | grep -c tmp) left" $ok

# 2. SIGTERM to mpirun -np 2 at random steps: each stop writes a checkpoint at the step it stopped
# (no periodic checkpoints here, so any new one is the stop's; mpirun may drop the ranks' last
# lines, so the files are counted, not the log), and the resumes end where one run ends
d=$work/term; got=0; tsteps=6000; tfinal=$(printf 'ckpt-%08d.h5' $tsteps)
term=("${base[@]}" "train.steps=$tsteps" checkpoint.every_steps=0 checkpoint.keep=100)
mpirun -np 2 "$bin" train "${term[@]}" "output_dir=$work/reft" "checkpoint.dir=$work/reft/ckpt" >"$work/reft.log" 2>&1 ||
  { cat "$work/reft.log"; exit 1; }
newest() { ls "$d/ckpt" 2>/dev/null | grep -E '^ckpt-[0-9]+\.h5$' | sort | tail -1 | sed -E 's/ckpt-0*([0-9]+)\.h5/\1/'; }
stops=""
for ((i = 0; i < signals; i++)); do
  before=$(newest); before=${before:-0}
  mpirun -np 2 "$bin" train "${term[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" checkpoint.resume=latest >"$d.$i.log" 2>&1 &
  pid=$!
  sleep_ms "$(rand_ms 1500 3500)"
  kill -TERM $pid 2>/dev/null
  wait $pid; rc=$?
  after=$(newest); after=${after:-0}
  if [ $rc -ne 0 ] && [ "$after" -gt "$before" ] && [ "$after" -lt $tsteps ]; then got=$((got + 1)); fi
  stops="$stops $after"
done
mpirun -np 2 "$bin" train "${term[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" checkpoint.resume=latest >"$d.end.log" 2>&1
cmp_out=$("$bin" compare "$work/reft/ckpt/$tfinal" "$d/ckpt/$tfinal" 2>&1)
if [ $? -eq 0 ] && [ $got -eq "$signals" ]; then ok=pass; else ok=FAIL; fail=1; fi
record "SIGTERM to mpirun -np 2 (x$signals)" "checkpoint at each stop; resume bit-identical" "$got of $signals stops wrote one (steps$stops); $cmp_out" $ok

# 3. a rank dies mid-run: the job ends non-zero, resumes from the last checkpoint
d=$work/rank; t0=$(date +%s)
GT_FAULT_INJECT=rank_kill:1:13 mpirun -np 2 -x GT_FAULT_INJECT "$bin" train "${base[@]}" "output_dir=$d" \
  "checkpoint.dir=$d/ckpt" >"$d.log" 2>&1; rc=$?; secs=$(( $(date +%s) - t0 ))
mpirun -np 2 "$bin" train "${base[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" checkpoint.resume=latest >"$d.2.log" 2>&1
cmp_out=$("$bin" compare "$work/ref2/ckpt/$final" "$d/ckpt/$final" 2>&1); crc=$?
if [ $rc -ne 0 ] && [ $secs -le 60 ] && [ $crc -eq 0 ]; then ok=pass; else ok=FAIL; fail=1; fi
record "rank 1 killed at step 13" "non-zero within 60 s; resume bit-identical" "exit $rc after ${secs}s; $cmp_out" $ok

# 4. a NaN in the gradients of step 7
d=$work/nan
GT_FAULT_INJECT=nonfinite:7 "$bin" train "${base[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" train.on_nonfinite=stop \
  >"$d.log" 2>&1; rc=$?
line=$(grep '^gemmatrain train:' "$d.log" | tail -1)
if [ $rc -ne 0 ] && grep -q 'step 7' <<<"$line"; then ok=pass; else ok=FAIL; fail=1; fi
record "NaN at step 7, on_nonfinite: stop" "exit non-zero naming step 7" "exit $rc: $line" $ok
GT_FAULT_INJECT=nonfinite:7 "$bin" train "${base[@]}" "output_dir=$d.s" "checkpoint.dir=$d.s/ckpt" train.on_nonfinite=skip \
  "logging.metrics=$d.s.jsonl" logging.every_steps=1 >"$d.s.log" 2>&1; rc=$?
valid=$(python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]; print("valid JSON")' "$d.s.jsonl" 2>&1 | tail -1)
if [ $rc -eq 0 ] && [ "$valid" = "valid JSON" ]; then ok=pass; else ok=FAIL; fail=1; fi
record "NaN at step 7, on_nonfinite: skip" "trains on; metrics stay valid JSON" "exit $rc; $valid; step 7: $(grep '"step": 7,' "$d.s.jsonl" | cut -c1-60)" $ok

# 5. a full disk (needs root for the tmpfs)
if [ "$(id -u)" = 0 ] && mkdir -p "$work/full" && mount -t tmpfs -o size=2m tmpfs "$work/full" 2>/dev/null; then
  "$bin" train "${base[@]}" "output_dir=$work/full/out" "checkpoint.dir=$work/full/ckpt" >"$work/full.log" 2>&1; rc=$?
  umount "$work/full"
  line=$(grep 'gemmatrain' "$work/full.log" | tail -1)
  if [ $rc -eq 1 ]; then ok=pass; else ok=FAIL; fail=1; fi
  record "2 MB tmpfs as checkpoint.dir" "exit 1, one line, no crash (was 139)" "exit $rc: ${line:0:60}" $ok
else
  record "2 MB tmpfs as checkpoint.dir" "exit 1, one line, no crash" "skipped: needs root and tmpfs" skip
fi

# 7. ENOSPC at every write site: tools/faults/enospc.sh sweeps every write-side operation of
# train, eval, export and convert under the LD_PRELOAD shim (no root needed)
shim=$(dirname "$bin")/tools/enospc_shim.so
[ -f "$shim" ] || make -s "$shim" >/dev/null 2>&1
if out=$(BIN=$bin SHIM=$shim tools/faults/enospc.sh 2>&1); then ok=pass; else ok=FAIL; fail=1; fi
summary=$(grep -E '^enospc: [a-z-]+: (pass|FAIL)' <<<"$out" | sed -E 's/^enospc: ([a-z-]+): (pass|FAIL): ([0-9]+) runs.*, ([0-9]+) bad.*/\1 \3\/\4/' | tr '\n' ' ')
[ -n "$summary" ] || summary=$(head -n 1 <<<"$out")
record "ENOSPC at every write site (shim)" "exit 1, one line, no crash/temp/partial file" "runs/bad per writer: ${summary:0:200}" $ok
[ $ok = FAIL ] && grep -E '^enospc: .*N=' <<<"$out" | head -20

# 6. two hosts in network namespaces over TCP; then one host's link cut mid-run
netns_up() {
  ip netns add gtA && ip netns add gtB && ip link add vA type veth peer name vB && ip link set vA netns gtA &&
    ip link set vB netns gtB && ip -n gtA addr add 10.77.0.1/24 dev vA && ip -n gtB addr add 10.77.0.2/24 dev vB &&
    ip -n gtA link set vA up && ip -n gtB link set vB up && ip -n gtA link set lo up && ip -n gtB link set lo up
}
netns_down() { ip netns del gtA 2>/dev/null; ip netns del gtB 2>/dev/null; return 0; }
two_hosts() { # mpirun in gtA, one rank per namespace; keepalives so a dead link is noticed in ~30 s
  ip netns exec gtA mpirun --mca plm_rsh_agent "$PWD/tools/faults/netns_rsh.sh" --host 10.77.0.1,10.77.0.2 -np 2 \
    --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
    --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 5 --mca oob_tcp_keepalive_probes 4 \
    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x GT_THREADS --wdir "$PWD" "$PWD/$bin" train "$@"
}
if [ "$(id -u)" = 0 ] && netns_down && netns_up 2>/dev/null; then
  d=$work/hosts
  two_hosts "${base[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" >"$d.log" 2>&1; rc=$?
  cmp_out=$("$bin" compare "$work/ref2/ckpt/$final" "$d/ckpt/$final" 2>&1); crc=$?
  if [ $rc -eq 0 ] && [ $crc -eq 0 ]; then ok=pass; else ok=FAIL; fail=1; fi
  record "two hosts (netns, TCP) vs 2 local ranks" "equal bit for bit" "exit $rc; $cmp_out" $ok
  long=(configs/tiny.yaml train.steps=3000 schedule.warmup_steps=2 data.eval= eval.every_steps=0
        checkpoint.every_steps=50 checkpoint.keep=2 logging.every_steps=500)
  d=$work/cut
  two_hosts "${long[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" >"$d.log" 2>&1 &
  pid=$!
  sleep 8; ip -n gtB link set vB down; t0=$(date +%s)
  while kill -0 $pid 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt 120 ]; do sleep 1; done
  secs=$(( $(date +%s) - t0 )); kill -9 $pid 2>/dev/null; wait $pid; rc=$?
  last=$(ls "$d/ckpt" | grep -v tmp | tail -1)
  ip -n gtB link set vB up
  two_hosts "${long[@]}" "output_dir=$d" "checkpoint.dir=$d/ckpt" checkpoint.resume=latest >"$d.2.log" 2>&1; rc2=$?
  mpirun -np 2 "$bin" train "${long[@]}" "output_dir=$work/ref3" "checkpoint.dir=$work/ref3/ckpt" >"$work/ref3.log" 2>&1
  cmp_out=$("$bin" compare "$work/ref3/ckpt/ckpt-00003000.h5" "$d/ckpt/ckpt-00003000.h5" 2>&1); crc=$?
  if [ $rc -ne 0 ] && [ $secs -le 60 ] && [ $rc2 -eq 0 ] && [ $crc -eq 0 ]; then ok=pass; else ok=FAIL; fail=1; fi
  record "link cut between the two hosts" "non-zero within 60 s; resume bit-identical" "exit $rc ${secs}s after the cut (last $last); resumed: $cmp_out" $ok
  netns_down
else
  record "two hosts (netns, TCP)" "equal; a cut link ends the job" "skipped: needs root and ip netns" skip
fi

echo
echo "| case | expected | observed | result |"
echo "|---|---|---|---|"
printf '%s\n' "${results[@]}"
exit $fail
