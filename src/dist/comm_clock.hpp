#pragma once
// Seconds a rank spends blocked in MPI (waiting for hidden states, moment gathers, merges): the
// "fraction of time in communication" that collect logs per rank and bench/scaling prints.
#include <chrono>

namespace nexplain {

class CommClock {
 public:
  template <typename F>
  void operator()(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  double seconds() const { return seconds_; }

 private:
  double seconds_ = 0.0;
};

}  // namespace nexplain
