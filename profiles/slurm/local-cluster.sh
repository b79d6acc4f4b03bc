#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (Debian, as root), to try profiles/slurm without a
# cluster. Two placeholder GPUs are declared (gres) so that GPU configs schedule; nothing runs on
# them. No accounting daemon: the profile polls squeue.
#
#   bash profiles/slurm/local-cluster.sh start    # installs slurm-wlm + munge if missing, starts
#   .venv/bin/snakemake results/default/train/checks/baseline/vgg16/fold0/metrics.json --profile profiles/slurm
#   bash profiles/slurm/local-cluster.sh stop     # stops the daemons, removes what start installed
#   bash profiles/slurm/local-cluster.sh run CMD… # start, CMD, stop (also on failure or Ctrl-C)
#
# `make test-slurm` is `run` around tests/test_slurm.py. `stop` purges the packages that `start`
# installed because the Slurm plugin asks `scontrol` for the cluster's config when Snakemake loads
# it: with a Slurm client installed and no controller answering, every `snakemake` call on the
# machine, local runs included, waits ~9 s. Daemons are stopped by the pids in their pid files, so
# a cluster (or munged) that was running before `start` is left alone.
set -euo pipefail

host=$(hostname)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
state_dir=/var/lib/crowdskin-local-slurm
gpu_dir=$state_dir/gpus
# what `start` installed, one package a line: `stop` purges exactly these
installed_list=$state_dir/installed-packages
pid_dir=/run/crowdskin-local-slurm
daemons=(slurmd slurmctld munged)   # the order they stop in

installed_packages() { dpkg-query -W -f='${db:Status-Status} ${Package}\n' | awk '$1 == "installed" {print $2}' | sort; }

install() {
  mkdir -p "$state_dir"
  installed_packages >"$state_dir/before"
  apt-get update -qq
  # Without recommends: 9 packages instead of ~40, so installing and purging them stays quick.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  installed_packages | comm -13 "$state_dir/before" - >"$installed_list"
  rm -f "$state_dir/before"
}

start() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    install
  fi
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge "$gpu_dir" "$pid_dir"
  touch "$gpu_dir/gpu0" "$gpu_dir/gpu1"
  chown munge:munge /run/munge
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$pid_dir/slurmctld.pid
SlurmdPidFile=$pid_dir/slurmd.pid
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
  # munged runs as the munge user, so its pid file lives in its own directory.
  if ! pgrep -x munged >/dev/null; then
    su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/crowdskin-munged.pid"
    ln -sf /run/munge/crowdskin-munged.pid "$pid_dir/munged.pid"
  fi
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
  # A Snakemake that waits on Slurm may hang on SIGTERM: end it by its own pid before this.
  if [[ -f $pid_dir/slurmctld.pid ]] && command -v squeue >/dev/null; then
    # Only jobs of the cluster started here; slurmstepd would outlive slurmd and keep them running.
    local jobs
    jobs=$(timeout 20 squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086
      timeout 20 scancel $jobs || true
      for _ in $(seq 30); do [[ -z $(timeout 20 squeue -h -o %i 2>/dev/null) ]] && break; sleep 1; done
    fi
  fi
  local daemon pid
  for daemon in "${daemons[@]}"; do
    [[ -f $pid_dir/$daemon.pid ]] || continue
    pid=$(cat "$pid_dir/$daemon.pid" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null; then
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_dir/$daemon.pid"
  done
  rm -f /run/munge/crowdskin-munged.pid
  if [[ -f $state_dir/before ]]; then   # an install that did not finish
    installed_packages | comm -13 "$state_dir/before" - >"$installed_list"
  fi
  if [[ -s $installed_list ]]; then
    # munge's purge deletes its user, which fails while any process of it lives (a munged whose pid
    # file went missing, one started by the package's own scripts): this installed munge, so every
    # such process is this cluster's.
    if grep -qx munge "$installed_list"; then
      pkill -KILL -u munge 2>/dev/null || true
      for _ in $(seq 10); do pgrep -u munge >/dev/null || break; sleep 0.5; done
    fi
    # shellcheck disable=SC2046
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $(cat "$installed_list") >/dev/null
    rm -rf /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "$state_dir" "$pid_dir"
  fi
  if command -v scontrol >/dev/null; then
    echo "Slurm stays installed (it was there before start): snakemake calls wait ~9 s while no controller answers" >&2
  fi
}

run() {
  # EXIT covers failures of start and of the command; INT/TERM exit through it too.
  trap stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  start
  "$@"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  run) shift; [[ $# -gt 0 ]] || { echo "usage: $0 run COMMAND [ARGS...]" >&2; exit 2; }; run "$@" ;;
  *) echo "usage: $0 start|stop|run COMMAND [ARGS...]" >&2; exit 2 ;;
esac
