#pragma once
// An owned MPI communicator (MPI_Comm_free on destruction), for the communicators a command
// derives by MPI_Comm_split: rank roles (collect ranks, an explain pool) and the collect grid's
// stage and data-group communicators. Must be destroyed before MPI_Finalize (MpiSession outlives it).
#include <utility>

#include <mpi.h>

namespace nexplain {

class MpiComm {
 public:
  MpiComm() = default;
  explicit MpiComm(MPI_Comm c) : comm_(c) {}
  ~MpiComm() { reset(); }
  MpiComm(MpiComm&& o) noexcept : comm_(std::exchange(o.comm_, MPI_COMM_NULL)) {}
  MpiComm& operator=(MpiComm&& o) noexcept {
    if (this != &o) {
      reset();
      comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
    }
    return *this;
  }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  // MPI_Comm_split of `parent`: ranks with the same color share a communicator, ordered by key.
  static MpiComm split(MPI_Comm parent, int color, int key);

  MPI_Comm get() const { return comm_; }
  int rank() const;
  int size() const;

 private:
  void reset();
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace nexplain
