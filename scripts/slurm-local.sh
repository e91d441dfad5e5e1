#!/usr/bin/env bash
# Copied from ../shared/recipes/slurm-local.sh (checked on the CI machine kind); used by .ci/run.
# Single-node Slurm 22.05 for CI on Debian 12, no systemd, no cgroups, no slurmdbd.
# Usage: source slurm-local.sh; slurm_up; ...; slurm_down
# Env: SLURM_AUTH=munge (default) | none   (auth/none + cred/none: no munged at all)
SLURM_STATE=/var/spool/slurmctld
SLURM_LOGDIR=/var/log/slurm

_stop_pid() {   # stop one daemon by PID: TERM, wait up to 10 s, then KILL
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    # a zombie still answers kill -0, so check /proc state too
    if ! kill -0 "$pid" 2>/dev/null || grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
}

slurm_write_conf() {
  local host node auth cred
  host=$(hostname -s)
  getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts   # slurmctld must resolve its own name
  # exact CPUs/sockets/cores/RealMemory of this machine, e.g.
  # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
  node=$(slurmd -C | head -n1)
  if [ "${SLURM_AUTH:-munge}" = none ]; then auth=auth/none; cred=cred/none; else auth=auth/munge; cred=cred/munge; fi
  mkdir -p /etc/slurm "$SLURM_STATE" /var/spool/slurmd "$SLURM_LOGDIR"
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=${auth}
CredType=${cred}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${SLURM_LOGDIR}/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=${SLURM_STATE}
SlurmctldLogFile=${SLURM_LOGDIR}/slurmctld.log
SlurmdLogFile=${SLURM_LOGDIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=600
KillWait=5
InactiveLimit=0
${node} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

slurm_up() {
  slurm_write_conf
  if [ "${SLURM_AUTH:-munge}" = munge ]; then
    install -d -o munge -g munge -m 0755 /run/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create --force; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged          # daemonizes, writes /run/munge/munged.pid
    for i in $(seq 1 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null
  fi
  /usr/sbin/slurmctld -c       # -c: clear jobs/node state left by an earlier run; daemonizes, writes /run/slurmctld.pid
  /usr/sbin/slurmd             # daemonizes, writes /run/slurmd.pid
  for i in $(seq 1 100); do
    sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)' && return 0
    sleep 0.2
  done
  echo "slurm did not come up" >&2; tail -n 30 "$SLURM_LOGDIR"/slurmctld.log "$SLURM_LOGDIR"/slurmd.log >&2; return 1
}

slurm_down() {
  scancel -u root 2>/dev/null || true
  for i in $(seq 1 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  _stop_pid "$(cat /run/slurmd.pid 2>/dev/null || true)"
  _stop_pid "$(cat /run/slurmctld.pid 2>/dev/null || true)"
  [ -f /run/munge/munged.pid ] && _stop_pid "$(cat /run/munge/munged.pid)"
  rm -f /run/slurmd.pid /run/slurmctld.pid
}
