#!/usr/bin/env bash
# Stop what scripts/start-slurm.sh RUNDIR started, by the pid files it wrote (nothing else is touched).
RUN=$(realpath -m "${1:?usage: stop-slurm.sh RUNDIR}")
pids=()
for f in "$RUN"/run/slurmd-*.pid "$RUN"/run/slurmctld.pid "$RUN"/run/slurmdbd.pid "$RUN"/run/mariadbd.pid \
    "$RUN"/munge/run/munged.pid; do
  [ -f "$f" ] && pids+=("$(cat "$f")")
done
[ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
for _ in $(seq 25); do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" -eq 0 ] && break; sleep 0.2
done
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
# Job steps whose slurmd was killed (a node-failure test) outlive it, and so would their jobs' processes (a
# batch script, its srun waiting for a controller that is gone): stop those of this cluster only.
descendants() { local c; for c in $(pgrep -P "$1"); do descendants "$c"; echo "$c"; done; }
for p in $(pgrep -x slurmstepd); do
  if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$RUN/slurm.conf"; then
    # shellcheck disable=SC2046  # one pid a word
    kill -9 $(descendants "$p") "$p" 2>/dev/null
  fi
done
rm -f "$RUN"/run/slurmd-*.pid "$RUN"/run/slurmctld.pid "$RUN"/run/slurmdbd.pid "$RUN"/run/mariadbd.pid \
  "$RUN"/munge/run/munged.pid
exit 0
