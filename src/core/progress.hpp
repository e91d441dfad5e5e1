#pragma once
// Progress of a long job: rate and ETA. On a terminal it redraws one line on stderr; otherwise
// (Slurm output files, CI logs) it writes a plain log line every `interval` seconds, so a job's
// output file shows where it is without being flooded.
#include <chrono>
#include <cstdint>
#include <string>

namespace nexplain {

class Progress {
 public:
  // total: units expected (0 = unknown); unit: what is counted ("tokens", "neurons").
  Progress(std::string label, std::uint64_t total, std::string unit);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Units done so far in this run (absolute, not a delta). `already` done before a resume
  // counts toward the fraction but not the rate.
  void update(std::uint64_t done);
  void set_already_done(std::uint64_t already) { already_ = already; }
  void finish();

  // The line that would be printed now, e.g. "collect 51.2% 1.23M/2.40M tokens 45.1k tokens/s ETA 26s".
  std::string line() const;

  static std::string human(double value);    // 1234567 -> "1.23M"
  static std::string duration(double secs);  // 3725 -> "1h02m"

 private:
  void emit(bool final);

  std::string label_;
  std::uint64_t total_;
  std::string unit_;
  std::uint64_t done_ = 0;
  std::uint64_t already_ = 0;
  bool tty_;
  bool finished_ = false;
  double interval_s_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_emit_;
};

}  // namespace nexplain
