#!/usr/bin/env bash
# Stop what scripts/start-slurm.sh RUNDIR started, by the pid files it wrote (nothing else is touched).
RUN=$(realpath -m "${1:?usage: stop-slurm.sh RUNDIR}")
pids=()
for f in "$RUN"/run/slurmd-*.pid "$RUN"/run/slurmctld.pid "$RUN"/munge/run/munged.pid; do
  [ -f "$f" ] && pids+=("$(cat "$f")")
done
[ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
for _ in $(seq 25); do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" -eq 0 ] && break; sleep 0.2
done
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
rm -f "$RUN"/run/slurmd-*.pid "$RUN"/run/slurmctld.pid "$RUN"/munge/run/munged.pid
exit 0
