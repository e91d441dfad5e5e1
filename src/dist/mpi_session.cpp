#include "dist/mpi_session.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>

namespace nexplain {

MpiSession::MpiSession() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    owner_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() {
  if (owner_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
}

MpiComm MpiSession::split_roles(RankRole role) const {
  return MpiComm::split(MPI_COMM_WORLD, static_cast<int>(role), rank_);
}

void MpiSession::run_or_abort_all(const std::function<void()>& f, int code) const {
  try {
    f();
  } catch (const std::exception& e) {
    if (size_ > 1) {
      std::fprintf(stderr, "error: rank %d: %s\n", rank_, e.what());
      std::fflush(stderr);
      abort(code);
    }
    throw;
  }
}

void MpiSession::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

}  // namespace nexplain
