#pragma once
// The hand-off of hidden states between neighbouring pipeline stages of one data group.
//
// A stage works on micro-batches in a ring of three buffers: while it computes micro-batch j in
// one, the next is receiving j+1 from the previous stage (MPI_Irecv posted ahead) and the third
// is still sending j-1 to the next stage (MPI_Isend), so stages compute concurrently instead of
// waiting for each other. A buffer is reused only after its send completed. Messages of one link arrive in
// the order they were sent (MPI's non-overtaking rule), and both sides derive every micro-batch's
// size from the same schedule, so no headers travel.
//
// The buffers are host memory: the CPU backend computes there. A device backend would hand
// device pointers to MPI when the library is CUDA-aware (mpi_cuda_aware()) and stage through
// host buffers otherwise.
#include <cstddef>
#include <vector>

#include <mpi.h>

#include "dist/comm_clock.hpp"

namespace nexplain {

class StageLink {
 public:
  // group: the data group's communicator (rank = stage). max_floats: the largest micro-batch.
  StageLink(MPI_Comm group, int stage, int stages, std::size_t max_floats, CommClock& clock);
  ~StageLink();  // call finish() first; after an error, leaks the buffers of transfers in flight
  StageLink(const StageLink&) = delete;
  StageLink& operator=(const StageLink&) = delete;

  bool receives() const { return stage_ > 0; }
  bool sends() const { return stage_ + 1 < stages_; }

  static constexpr std::size_t kSlots = 3;

  // Micro-batch j (counted from 0 over the link's lifetime) uses buffer j % kSlots. prepare(j, n)
  // waits until that buffer is free and, on a receiving stage, posts the receive of n floats.
  void prepare(std::size_t j, std::size_t n);
  // The buffer of micro-batch j, filled by the previous stage (waits for it) or to be filled
  // by the caller on stage 0.
  float* acquire(std::size_t j);
  // Starts sending micro-batch j's buffer (n floats) to the next stage (no-op on the last).
  void send(std::size_t j, std::size_t n);
  // Waits for every outstanding send. Call prepare(j + 1) before acquire(j): the receive of the
  // next micro-batch then overlaps this one's compute.
  void finish();

  // Whether the MPI library can move device memory (Open MPI's MPIX_Query_cuda_support).
  static bool mpi_cuda_aware();

 private:
  MPI_Comm comm_;
  int stage_, stages_;
  CommClock& clock_;
  std::vector<float> buf_[kSlots];
  MPI_Request recv_[kSlots] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  MPI_Request send_[kSlots] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL, MPI_REQUEST_NULL};
};

}  // namespace nexplain
