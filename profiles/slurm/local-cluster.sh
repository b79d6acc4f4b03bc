#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (Debian, as root), to try profiles/slurm without a
# cluster: `bash profiles/slurm/local-cluster.sh start`, then e.g.
#   snakemake results/train/baseline/vgg16/fold0/metrics.json --profile profiles/slurm
# and `bash profiles/slurm/local-cluster.sh stop`. Two placeholder GPUs are declared (gres) so
# that GPU configs schedule; nothing runs on them. No accounting daemon: the profile polls squeue.
set -euo pipefail

host=$(hostname)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
gpu_dir=/var/lib/crowdskin-fake-gpus

start() {
  if ! command -v slurmctld >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge "$gpu_dir"
  touch "$gpu_dir/gpu0" "$gpu_dir/gpu1"
  chown munge:munge /run/munge
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem_mb Gres=gpu:2 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  printf 'NodeName=%s Name=gpu File=%s/gpu0\nNodeName=%s Name=gpu File=%s/gpu1\n' \
    "$host" "$gpu_dir" "$host" "$gpu_dir" >/etc/slurm/gres.conf
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 30); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && { sinfo; return 0; }
    sleep 1
  done
  echo "the node did not come up idle: run slurmctld -D and slurmd -D in the foreground to see why" >&2
  return 1
}

stop() {
  # By pid: a SIGTERM to a Snakemake that waits on Slurm can hang, so stop that one yourself first.
  for daemon in slurmd slurmctld munged; do
    pkill -x "$daemon" || true
    for _ in $(seq 30); do pgrep -x "$daemon" >/dev/null || break; sleep 1; done
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
