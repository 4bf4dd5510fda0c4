#!/usr/bin/env bash
# A single-node Slurm cluster on localhost (Debian's slurmctld, slurmd, slurm-client, munge;
# no systemd), for trying `gfr fit --slurm N` and for its tests.
#
#   scripts/slurm-local.sh install   # apt-get the packages (root)
#   scripts/slurm-local.sh start     # write /etc/slurm/slurm.conf, start munged, slurmctld, slurmd
#   scripts/slurm-local.sh stop
#
# `start` exits 0 once `sinfo` shows the node idle, else non-zero saying why.
set -euo pipefail
cmd="${1:-start}"
conf=/etc/slurm/slurm.conf
case "$cmd" in
install)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge
  ;;
start)
  host="$(hostname -s)"
  cpus="$(nproc)"
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
  cat > "$conf" <<CONF
ClusterName=gfrlocal
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  rm -f /etc/slurm/cgroup.conf
  [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c "munged --force" 2>/dev/null || munged --force
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for d in munged slurmctld slurmd; do
    pgrep -x "$d" >/dev/null || { echo "slurm: $d did not start; see /var/log/slurm/ and /var/log/munge/" >&2; exit 1; }
  done
  for _ in $(seq 60); do
    if timeout 5 sinfo -h -o %T 2>/dev/null | grep -qE '^idle'; then
      echo "slurm: node $host idle ($cpus CPUs)"; exit 0
    fi
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "slurm: the node did not come up; see /var/log/slurm/" >&2
  sinfo >&2 || true
  exit 1
  ;;
stop)
  for d in slurmd slurmctld munged; do
    pkill -x "$d" || true
    for _ in $(seq 50); do pgrep -x "$d" >/dev/null || break; sleep 0.2; done
  done
  ;;
*)
  echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
