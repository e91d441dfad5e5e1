#pragma once
// The collect rank grid: P pipeline stages x D data-parallel groups over the ranks of one
// communicator (the collect role's, MpiSession::split_roles). Rank r is stage r % P of data
// group r / P, so a group's stages are neighbours (on one node when P divides the ranks per
// node: the hidden states, the heavy traffic, stay in shared memory). Two derived communicators:
//   stage: the D ranks of one stage (moment gathers, state merges, histogram sums), rank = group;
//   group: the P stages of one data group (hidden states stage to stage), rank = stage.
// The stage root (group 0) of stage s is grid rank s; the stage roots write the records file in
// turn, grid rank 0 first and last (collect_mpi.cpp).
#include <string>

#include <mpi.h>

#include "dist/mpi_comm.hpp"

namespace nexplain {

class RankGrid {
 public:
  // Collective over `comm`. Error when P < 1 or P does not divide the rank count.
  RankGrid(MPI_Comm comm, int pipeline_stages);

  MPI_Comm comm() const { return comm_; }
  MPI_Comm stage_comm() const { return stage_.get(); }
  MPI_Comm group_comm() const { return group_.get(); }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int stages() const { return P_; }  // P
  int groups() const { return D_; }  // D
  int stage() const { return rank_ % P_; }
  int group() const { return rank_ / P_; }
  bool stage_root() const { return group() == 0; }
  bool first_stage() const { return stage() == 0; }
  bool last_stage() const { return stage() == P_ - 1; }

  // "rank 5/8 (data group 2, stage 1)" for log lines.
  std::string who() const;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, P_ = 1, D_ = 1;
  MpiComm stage_, group_;
};

}  // namespace nexplain
