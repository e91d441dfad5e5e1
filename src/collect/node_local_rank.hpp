#pragma once
// Which rank of its node this process is, so that the ranks of a multi-GPU node each take their
// own device: the CUDA backend uses device local_rank % device_count (cuda::query_device), chosen
// before any CUDA call creates a context (on device 0, every rank would otherwise pay for one
// there). Host code, because it may need MPI; cuda/ gets only the number.
//
// Sources, first that applies:
//   1. MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED) when MPI is initialised (not finalised)
//      and a communicator is given: the rank among the ranks of `comm` on this node, whatever
//      the launcher. Collective over `comm`.
//   2. OMPI_COMM_WORLD_LOCAL_RANK (Open MPI's mpirun / prterun),
//   3. MPI_LOCALRANKID (MPICH and Intel MPI's Hydra mpiexec),
//   4. SLURM_LOCALID (srun).
//   5. none of these: 0 (a single process).
// The launchers' own variables come before SLURM_LOCALID: an mpirun inside a Slurm batch
// script starts every rank from the batch step's environment, whose SLURM_LOCALID is 0.
#include <string>

#include <mpi.h>

namespace nexplain {

struct NodeLocalRank {
  int rank = 0;        // among the processes of this node
  int size = 0;        // processes of this node, 0 when unknown (environment variables)
  std::string source;  // where it came from, for the log
  std::string node;    // the host name, for the log
};

// A variable's value that is not a non-negative integer is an Error naming the variable.
NodeLocalRank node_local_rank(MPI_Comm comm = MPI_COMM_NULL);

}  // namespace nexplain
