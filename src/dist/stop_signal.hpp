#pragma once
// SIGUSR1/SIGTERM (Slurm --signal, preemption) as a flag polled at round boundaries: the handler
// only sets a sig_atomic_t, everything else happens in normal code where MPI may be called.
namespace nexplain {

void install_stop_handlers();  // idempotent
bool stop_requested();

}  // namespace nexplain
