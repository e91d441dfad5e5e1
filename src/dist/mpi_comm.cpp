#include "dist/mpi_comm.hpp"

namespace nexplain {

MpiComm MpiComm::split(MPI_Comm parent, int color, int key) {
  MPI_Comm c = MPI_COMM_NULL;
  MPI_Comm_split(parent, color, key, &c);
  return MpiComm(c);
}

int MpiComm::rank() const {
  int r = 0;
  MPI_Comm_rank(comm_, &r);
  return r;
}

int MpiComm::size() const {
  int n = 0;
  MPI_Comm_size(comm_, &n);
  return n;
}

void MpiComm::reset() {
  if (comm_ == MPI_COMM_NULL) return;
  // A communicator outliving MPI_Finalize (an exception unwinding past the session) is leaked,
  // not freed: freeing it then would be an MPI error.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

}  // namespace nexplain
