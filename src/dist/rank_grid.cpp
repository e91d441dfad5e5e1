#include "dist/rank_grid.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace nexplain {

RankGrid::RankGrid(MPI_Comm comm, int P) : comm_(comm), P_(P) {
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size_);
  // Every rank reaches the same verdict, so failing here needs no agreement.
  if (P < 1) fail("--pipeline-stages {}: must be at least 1", P);
  if (size_ % P != 0)
    fail("--pipeline-stages {} does not divide the {} MPI ranks (the grid is stages x data groups)", P, size_);
  D_ = size_ / P;
  stage_ = MpiComm::split(comm, stage(), group());
  group_ = MpiComm::split(comm, group(), stage());
}

std::string RankGrid::who() const {
  return fmt::format("rank {}/{} (data group {}, stage {})", rank_, size_, group(), stage());
}

}  // namespace nexplain
