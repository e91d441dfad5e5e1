#include "dist/sleeping_bcast.hpp"

#include <thread>

namespace nexplain {

void sleeping_bcast(int& value, int root, MPI_Comm comm, std::chrono::milliseconds poll) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Request req = MPI_REQUEST_NULL;
  MPI_Ibcast(&value, 1, MPI_INT, root, comm, &req);
  if (rank == root) {
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    return;
  }
  // MPI_Test also drives the progress of the broadcast (relaying it down the tree).
  for (int done = 0;;) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) return;
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace nexplain
