#pragma once
// MPI for one command's lifetime. Commands that can run on many ranks (explain, collect under
// mpirun) open a session; a plain `nexplain explain` is a singleton MPI process of one rank, so
// the single-process and the mpirun runs take the same code path.
#include <mpi.h>

#include <functional>

#include "dist/mpi_comm.hpp"

namespace nexplain {

// Rank roles of one job. Every rank of a role gets one communicator (MpiSession::split_roles),
// so a job can run collect on some ranks and an explain pool on others, or collect first and
// the explain pool afterwards on the same ranks, without their messages ever meeting.
enum class RankRole : int { collect = 0, explain = 1, idle = 2 };

class MpiSession {
 public:
  MpiSession();   // MPI_Init_thread (FUNNELED) unless MPI is already initialised
  ~MpiSession();  // MPI_Finalize if this session initialised it
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  MPI_Comm world() const { return MPI_COMM_WORLD; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  // Collective over the world: the ranks that pass the same role share the returned
  // communicator, ordered by world rank. Commands run on it instead of on MPI_COMM_WORLD.
  MpiComm split_roles(RankRole role) const;

  // Ends every rank (after a rank caught an error the others cannot know about).
  [[noreturn]] void abort(int code) const;
  // Runs `f`. An exception on one rank of a multi-rank job is printed with the rank and ends
  // every rank with `code` (the others may be waiting in a collective for this one); in a single
  // process it propagates as usual.
  void run_or_abort_all(const std::function<void()>& f, int code) const;

 private:
  bool owner_ = false;
  int rank_ = 0, size_ = 1;
};

}  // namespace nexplain
