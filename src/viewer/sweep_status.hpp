#pragma once
// Progress of a (possibly running) sweep, read from its directory and explain journal: which
// stages are done, neurons explained so far, rate and ETA, failures with their reasons, tokens
// and cost so far. The journal has no timestamps, so the rate comes from watching it grow
// (RateTracker, fed on every look) and, before two looks exist, from the journal's age.
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "viewer/results_index.hpp"
#include "viewer/run_paths.hpp"

namespace nexplain::viewer {

// Neurons per second over the last few minutes of observations.
class RateTracker {
 public:
  void observe(double seconds, std::size_t done);  // a monotonic clock reading and the count then
  std::optional<double> rate() const;              // nullopt until the count has moved

 private:
  mutable std::mutex mutex_;
  std::deque<std::pair<double, std::size_t>> samples_;
};

struct SweepInputs {
  const RunPaths* paths = nullptr;
  const ResultsIndex* index = nullptr;    // the journal's (or results') entries
  std::optional<std::size_t> total;       // neurons the explain stage will do, when known
  std::optional<double> observed_rate;    // RateTracker::rate()
  double now_unix = 0;                    // for the "age" fallback and the page's timestamp
};

nlohmann::json build_sweep_json(const SweepInputs& in);

}  // namespace nexplain::viewer
