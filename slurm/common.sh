# ---- slurm/common.sh, inlined into every stage script by `nexplain submit` ----
# Why this shape: with --signal=B:USR1@margin Slurm signals only this batch shell, and bash runs
# a trap only between commands; so the stage runs in the background (`cmd & wait $!`) and the
# trap forwards USR1 to it. The stage checkpoints and exits 75; then this job requeues itself
# and, on its next start, the same command resumes from the checkpoint (collect) or the
# journal (explain). --open-mode=append keeps every run's output in one file.
set -u
{{ENV}}
cd {{WORKDIR}} || { echo "nexplain: cannot cd to {{WORKDIR}}" >&2; exit 1; }
NX_NEXPLAIN={{NEXPLAIN}}
NX_SWEEP={{SWEEP}}
NX_OUT={{OUT}}
NX_LAUNCHER={{LAUNCHER}}
NX_CHILD=""
NX_SIGNALLED=""

nx_log() { echo "[$(date -u +%Y-%m-%dT%H:%M:%SZ)] nexplain job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0}: $*"; }

# The job's MPI ranks: srun with PMIx when this Slurm offers it, else mpirun inside the
# allocation. An array (not a function) so that the stage's own PID is srun's or mpirun's, the
# process the trap signals.
case "$NX_LAUNCHER" in
  srun) NX_LAUNCH=(srun --mpi=pmix) ;;
  mpirun) NX_LAUNCH=(mpirun) ;;
  *) if command -v srun >/dev/null 2>&1 && srun --mpi=list 2>&1 | grep -q pmix; then
       NX_LAUNCH=(srun --mpi=pmix)
     else
       NX_LAUNCH=(mpirun)
     fi ;;
esac
# Open MPI's mpirun does not forward SIGTERM (scancel and preemption signal the batch step, mpirun
# included): it ends the job itself, sending the ranks SIGTERM after odls_base_sigkill_timeout
# seconds and SIGKILL as many seconds later, and forwards nothing (not the trap's USR1) meanwhile.
# Its default of 1 s kills the ranks before they can checkpoint; 15 s gives them from 15 s to 30 s
# (Slurm's default KillWait), or all 30 s where Slurm signals the ranks too (proctrack/cgroup).
# The price: a job aborted by an error takes 30 s to end. docs/MPI.md. [slurm] env may set
# OMPI_MCA_odls_base_sigkill_timeout to another value (about half the cluster's KillWait).
if [ "${NX_LAUNCH[0]}" = mpirun ]; then
  export OMPI_MCA_odls_base_sigkill_timeout="${OMPI_MCA_odls_base_sigkill_timeout:-15}"
fi

nx_on_signal() {
  NX_SIGNALLED=$1
  nx_log "got SIG$1: asking the stage to checkpoint"
  # srun and mpirun forward USR1 to every rank.
  [ -n "$NX_CHILD" ] && kill -USR1 "$NX_CHILD" 2>/dev/null
}
trap 'nx_on_signal USR1' USR1
trap 'nx_on_signal TERM' TERM

# nx_run CMD...: runs the stage, waits for its real exit status (a trap interrupts `wait` with
# 128+signal while the stage still runs), and requeues this job when the stage checkpointed.
nx_run() {
  nx_log "start on $(hostname): $*"
  "$@" &
  NX_CHILD=$!
  local rc r
  wait "$NX_CHILD"; rc=$?
  while kill -0 "$NX_CHILD" 2>/dev/null; do wait "$NX_CHILD"; rc=$?; done
  wait "$NX_CHILD" 2>/dev/null; r=$?; [ "$r" -ne 127 ] && rc=$r
  NX_CHILD=""
  if [ "$NX_SIGNALLED" = TERM ]; then
    # SIGTERM comes from scancel or from preemption: Slurm decides what follows (a preempted
    # job with PreemptMode=REQUEUE is requeued by Slurm itself); a self-requeue here would undo
    # a user's scancel. The checkpoint is on disk for a requeue or a resubmission.
    nx_log "stage stopped (exit $rc) after SIGTERM: checkpoint kept, not requeueing"
    exit "$rc"
  fi
  if [ "$rc" -eq 75 ] || { [ -n "$NX_SIGNALLED" ] && [ "$rc" -gt 128 ]; }; then
    nx_log "stage stopped (exit $rc) after SIG${NX_SIGNALLED:-?}: requeueing job ${SLURM_JOB_ID}"
    if scontrol requeue "${SLURM_JOB_ID}"; then exit 0; fi
    nx_log "scontrol requeue failed: resubmit with \`nexplain submit\`; the work done so far is kept"
    exit 75
  fi
  nx_log "stage exited $rc"
  exit "$rc"
}
# ---- end of slurm/common.sh ----
