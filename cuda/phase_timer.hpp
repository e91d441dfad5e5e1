#pragma once
// Where one batch's GPU time goes, phase by phase: CUDA events recorded on the stream between the
// steps of the forward and the reduction (bench/collect_gpu --breakdown). Analysis only: each mark
// costs an event record (microseconds), so collect never turns it on.
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nexplain::cuda {

class PhaseTimer {
 public:
  PhaseTimer();
  ~PhaseTimer();
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  // Starts a timed span on `stream` (a cudaStream_t): the next mark measures from here.
  void start(void* stream);
  // The GPU time since the previous mark (or start) is charged to `phase`. Marks may be on
  // several streams only when those are serialised by events (no overlap): the intervals are
  // then consecutive in execution order.
  void mark(const char* phase, void* stream);
  // Synchronises the recorded events and adds every interval to its phase's total; clears the
  // marks (the totals stay until reset()).
  void collect();
  // Phase totals in milliseconds, in order of first appearance.
  const std::vector<std::pair<std::string, double>>& totals_ms() const { return totals_; }
  void reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<std::pair<std::string, double>> totals_;
};

}  // namespace nexplain::cuda
