#include "phase_timer.hpp"

#include <cuda_runtime.h>

#include "cuda_check.hpp"

namespace nexplain::cuda {

struct PhaseTimer::Impl {
  std::vector<cudaEvent_t> pool;  // reused across spans
  std::vector<std::pair<const char*, std::size_t>> marks;  // phase (nullptr = start), event index
  std::size_t used = 0;

  cudaEvent_t next() {
    if (used == pool.size()) {
      cudaEvent_t e = nullptr;
      NX_CUDA(cudaEventCreate(&e));  // with timing (the default flags)
      pool.push_back(e);
    }
    return pool[used++];
  }
};

PhaseTimer::PhaseTimer() : impl_(std::make_unique<Impl>()) {}

PhaseTimer::~PhaseTimer() {
  for (cudaEvent_t e : impl_->pool) cudaEventDestroy(e);
}

void PhaseTimer::start(void* stream) {
  const std::size_t i = impl_->used;
  NX_CUDA(cudaEventRecord(impl_->next(), static_cast<cudaStream_t>(stream)));
  impl_->marks.emplace_back(nullptr, i);
}

void PhaseTimer::mark(const char* phase, void* stream) {
  const std::size_t i = impl_->used;
  NX_CUDA(cudaEventRecord(impl_->next(), static_cast<cudaStream_t>(stream)));
  impl_->marks.emplace_back(phase, i);
}

void PhaseTimer::collect() {
  auto& m = *impl_;
  for (std::size_t k = 1; k < m.marks.size(); ++k) {
    const char* phase = m.marks[k].first;
    if (!phase) continue;  // a new span starts here
    cudaEvent_t a = m.pool[m.marks[k - 1].second], b = m.pool[m.marks[k].second];
    NX_CUDA(cudaEventSynchronize(b));
    float ms = 0.0f;
    NX_CUDA(cudaEventElapsedTime(&ms, a, b));
    std::size_t j = 0;
    while (j < totals_.size() && totals_[j].first != phase) ++j;
    if (j == totals_.size()) totals_.emplace_back(phase, 0.0);
    totals_[j].second += ms;
  }
  m.marks.clear();
  m.used = 0;
}

void PhaseTimer::reset() {
  collect();
  totals_.clear();
}

}  // namespace nexplain::cuda
