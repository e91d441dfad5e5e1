#include "dist/stage_link.hpp"

#include <climits>
#include <utility>
#include <vector>

#if defined(OPEN_MPI) && __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

#include "core/error.hpp"

namespace nexplain {

namespace {
constexpr int kTagHidden = 301;

int count_of(std::size_t n) {
  if (n > static_cast<std::size_t>(INT_MAX)) fail("pipeline: a micro-batch of {} floats is too large for one message; lower --batch", n);
  return static_cast<int>(n);
}
}  // namespace

StageLink::StageLink(MPI_Comm group, int stage, int stages, std::size_t max_floats, CommClock& clock)
    : comm_(group), stage_(stage), stages_(stages), clock_(clock) {
  for (auto& b : buf_) b.resize(max_floats);
}

StageLink::~StageLink() {
  // Normal paths call finish(). Here an error is unwinding and the job is about to be aborted:
  // waiting could hang (the peer may never receive), and MPI may still read the buffers, so
  // they are deliberately leaked instead of freed.
  for (std::size_t k = 0; k < kSlots; ++k)
    if (send_[k] != MPI_REQUEST_NULL || recv_[k] != MPI_REQUEST_NULL) {
      static_cast<void>(new std::vector<float>(std::move(buf_[k])));
    }
}

void StageLink::prepare(std::size_t j, std::size_t n) {
  const std::size_t k = j % kSlots;
  if (n > buf_[k].size()) fail("pipeline: internal: micro-batch of {} floats, buffers hold {}", n, buf_[k].size());
  if (send_[k] != MPI_REQUEST_NULL) clock_([&] { MPI_Wait(&send_[k], MPI_STATUS_IGNORE); });
  if (receives())
    MPI_Irecv(buf_[k].data(), count_of(n), MPI_FLOAT, stage_ - 1, kTagHidden, comm_, &recv_[k]);
}

float* StageLink::acquire(std::size_t j) {
  const std::size_t k = j % kSlots;
  if (recv_[k] != MPI_REQUEST_NULL) clock_([&] { MPI_Wait(&recv_[k], MPI_STATUS_IGNORE); });
  return buf_[k].data();
}

void StageLink::send(std::size_t j, std::size_t n) {
  if (!sends()) return;
  const std::size_t k = j % kSlots;
  MPI_Isend(buf_[k].data(), count_of(n), MPI_FLOAT, stage_ + 1, kTagHidden, comm_, &send_[k]);
}

void StageLink::finish() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  for (auto& r : send_)
    if (r != MPI_REQUEST_NULL) clock_([&] { MPI_Wait(&r, MPI_STATUS_IGNORE); });
}

bool StageLink::mpi_cuda_aware() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

}  // namespace nexplain
