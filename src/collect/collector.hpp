#pragma once
// The collect stage: model + sequences -> records.h5. One process, one backend; the MPI driver
// (src/dist) distributes the same steps over ranks.
//
// Steps: validate everything that can be validated before spending compute (model vs config,
// layers, K vs excerpts, output path), run the histogram pre-pass over the hashed subset of
// excerpts, compute per-neuron quantile boundaries, run the main pass in batches, and write the
// records file atomically.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "capture/params.hpp"

namespace nexplain {

struct CollectOptions {
  std::filesystem::path model_dir;
  std::filesystem::path sequences;
  std::filesystem::path out;
  std::string layers = "all";      // parse_layer_range syntax
  CaptureParams params;            // K, R, Q, seed, fractions; T comes from the sequences file
  int seq_len = 0;                 // 0 = the sequences file's T; else must equal it
  int batch = 32;                  // excerpts per forward batch (results do not depend on it)
  int threads = 0;                 // 0 = all cores
  double prepass_rate = -1.0;      // < 0 = auto: min(1, prepass_target / n_excerpts)
  std::uint64_t prepass_target = 100000;
  std::uint64_t max_excerpts = 0;  // 0 = all; else the first max_excerpts excerpts
  std::string device = "cpu";      // cpu | cuda | auto
  std::string precision = "fp32";  // fp32 | tf32 | bf16 (cuda)
  std::string command_line;
};

struct CollectSummary {
  std::uint64_t excerpts = 0;
  std::uint64_t tokens = 0;
  std::uint64_t prepass_excerpts = 0;
  double seconds = 0.0;
  double main_tokens_per_s = 0.0;
  std::string backend;
};

// Throws Error for bad input; on any failure nothing is left at `out`.
CollectSummary run_collect(const CollectOptions& opts);

// The auto pre-pass rate for a corpus of n excerpts (depends on n only, so every rank agrees).
double auto_prepass_rate(std::uint64_t n_excerpts, std::uint64_t target);

}  // namespace nexplain
