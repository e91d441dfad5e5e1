#pragma once
// MPI for one command's lifetime. Commands that can run on many ranks (explain, collect under
// mpirun) open a session; a plain `nexplain explain` is a singleton MPI process of one rank, so
// the single-process and the mpirun runs take the same code path.
#include <mpi.h>

namespace nexplain {

class MpiSession {
 public:
  MpiSession();   // MPI_Init_thread (FUNNELED) unless MPI is already initialised
  ~MpiSession();  // MPI_Finalize if this session initialised it
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  MPI_Comm world() const { return MPI_COMM_WORLD; }
  int rank() const { return rank_; }
  int size() const { return size_; }

  // Ends every rank (after a rank caught an error the others cannot know about).
  [[noreturn]] void abort(int code) const;

 private:
  bool owner_ = false;
  int rank_ = 0, size_ = 1;
};

}  // namespace nexplain
