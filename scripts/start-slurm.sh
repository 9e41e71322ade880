#!/usr/bin/env bash
# A throwaway Slurm cluster on this machine for expctl's tests: munged + slurmctld + N slurmd "nodes" on
# 127.0.0.1, each with fake GPUs (character devices aliasing /dev/null, which Slurm's gres/gpu accepts).
#
#   usage: scripts/start-slurm.sh [--accounting] RUNDIR [NODES=2] [GPUS_PER_NODE=2] [CTLD_PORT=16817] [CPUS_PER_NODE=4]
#
# --accounting adds slurmdbd with a private MariaDB (scripts/start-slurmdbd.sh; ports CTLD_PORT+2 and +3) and
# turns on accounting with enforcement: associations, limits and QOS (a job over its QOS's GrpTRES gres/gpu
# waits with reason QOSGrpGRES). slurmctld registers the cluster; accounts, users and QOS are the tests' to make.
#
# Prints `export SLURM_CONF=RUNDIR/slurm.conf` as its last line; stop with scripts/stop-slurm.sh RUNDIR.
# Needs Debian's slurm-wlm and munge (scripts/test-prereqs.sh installs them) and root (slurmd runs jobs as
# their submitter). Node NAME's slurmd can be restarted with: slurmd -N NAME -f RUNDIR/slurm.conf
set -euo pipefail
ACCOUNTING=0
[ "${1:-}" = --accounting ] && { ACCOUNTING=1; shift; }
RUN=$(realpath -m "${1:?usage: start-slurm.sh RUNDIR [NODES] [GPUS_PER_NODE] [CTLD_PORT] [CPUS_PER_NODE]}")
NODES=${2:-2}; GPUS=${3:-2}; PORT=${4:-16817}; CPUS=${5:-4}
for tool in munged slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "start-slurm.sh: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
mkdir -p "$RUN"/{state,log,run,dev,munge/etc,munge/lib,munge/log,munge/run}
chmod 700 "$RUN"/munge/etc "$RUN"/munge/lib "$RUN"/munge/log
chmod 755 "$RUN"/munge/run  # munged refuses a socket directory others cannot traverse
if [ ! -f "$RUN/munge/etc/munge.key" ]; then
  head -c 1024 /dev/urandom > "$RUN/munge/etc/munge.key"; chmod 600 "$RUN/munge/etc/munge.key"
fi
munged -f --key-file="$RUN/munge/etc/munge.key" --socket="$RUN/munge/run/munge.socket" \
  --pid-file="$RUN/munge/run/munged.pid" --log-file="$RUN/munge/log/munged.log" \
  --seed-file="$RUN/munge/lib/munged.seed"
HERE=$(dirname "$(realpath "$0")")
for i in $(seq 0 $((NODES * GPUS - 1))); do
  [ -e "$RUN/dev/gpu$i" ] || mknod "$RUN/dev/gpu$i" c 1 3
done
HOST=$(hostname -s)
# SlurmdTimeout is short so that a killed slurmd turns into NODE_FAIL within seconds; KillWait is short so
# that cancel and timeout end jobs quickly; MinJobAge keeps finished jobs visible to squeue for a while;
# config_overrides lets a node declare more CPUs than this machine has (jobs share the cores).
cat > "$RUN/slurm.conf" <<CONF
ClusterName=expctl-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$RUN/munge/run/munge.socket
StateSaveLocation=$RUN/state
SlurmdSpoolDir=$RUN/spool/%n
SlurmctldPidFile=$RUN/run/slurmctld.pid
SlurmdPidFile=$RUN/run/slurmd-%n.pid
SlurmctldLogFile=$RUN/log/slurmctld.log
SlurmdLogFile=$RUN/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/filetxt
JobCompLoc=$RUN/log/jobcomp.txt
MinJobAge=300
SlurmdTimeout=5
MessageTimeout=5
KillWait=3
InactiveLimit=0
SlurmdParameters=config_overrides
CONF
if [ "$ACCOUNTING" -eq 1 ]; then
  cat >> "$RUN/slurm.conf" <<CONF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
AccountingStoragePass=$RUN/munge/run/munge.socket
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
CONF
  bash "$HERE/start-slurmdbd.sh" "$RUN" $((PORT + 2)) $((PORT + 3))
fi
: > "$RUN/gres.conf"
names=()
for n in $(seq 1 "$NODES"); do
  name=n$n; names+=("$name"); mkdir -p "$RUN/spool/$name"
  first=$(((n - 1) * GPUS)); last=$((first + GPUS - 1))
  echo "NodeName=$name NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((PORT + 10 + n)) CPUs=$CPUS RealMemory=4000 Gres=gpu:$GPUS" >> "$RUN/slurm.conf"
  echo "NodeName=$name Name=gpu File=$RUN/dev/gpu[$first-$last]" >> "$RUN/gres.conf"
done
echo "PartitionName=main Nodes=$(IFS=,; echo "${names[*]}") Default=YES MaxTime=INFINITE State=UP" >> "$RUN/slurm.conf"
# a second partition on the same nodes: a team's runs land in its own (tests/integration/test_teams_placement.py)
echo "PartitionName=gpu Nodes=$(IFS=,; echo "${names[*]}") Default=NO MaxTime=INFINITE State=UP" >> "$RUN/slurm.conf"
export SLURM_CONF=$RUN/slurm.conf
slurmctld -f "$RUN/slurm.conf"  # daemonizes; needs the absolute path
for name in "${names[@]}"; do slurmd -N "$name" -f "$RUN/slurm.conf"; done
idle=0
for _ in $(seq 150); do
  idle=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2=="idle" {print $1}' | sort -u | wc -l)
  [ "$idle" -eq "$NODES" ] && break; sleep 0.2
done
[ "$idle" -eq "$NODES" ] || { echo "start-slurm.sh: nodes not idle: $(sinfo -N 2>&1)" >&2; exit 1; }
echo "export SLURM_CONF=$RUN/slurm.conf"
