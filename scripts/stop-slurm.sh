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
# Job steps whose slurmd was killed (a node-failure test) outlive it: stop the ones of this cluster only.
for p in $(pgrep -x slurmstepd); do
  tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$RUN/slurm.conf" && kill -9 "$p" 2>/dev/null
done
rm -f "$RUN"/run/slurmd-*.pid "$RUN"/run/slurmctld.pid "$RUN"/munge/run/munged.pid
exit 0
