#pragma once
// One neuron's records as plain values: what exporters (OpenAI NeuronRecord JSON, the viewer,
// the explainer) consume. Built from a CaptureState by CaptureState::record(neuron).
#include <cstdint>
#include <vector>

namespace nexplain {

struct ExcerptRecord {
  std::uint64_t excerpt_id = 0;  // row index in the sequences file
  float max = 0.0f;              // max over the T activations
  std::uint64_t hash = 0;        // the sampling hash (random / quantile lists); 0 in the top list
  std::vector<float> acts;       // all T activations, bitwise as captured
};

struct NeuronStats {
  std::uint64_t count = 0;  // token activations seen
  double mean = 0.0;
  double variance = 0.0;  // population: M2/n
  double skewness = 0.0;  // (M3/n) / variance^1.5
  double kurtosis = 0.0;  // excess: (M4/n) / variance^2 - 3
  double m2 = 0.0, m3 = 0.0, m4 = 0.0;  // central sums, for re-merging
};

struct NeuronRecord {
  std::uint32_t layer = 0;
  std::uint32_t neuron = 0;
  std::vector<ExcerptRecord> top;                    // max desc, id asc
  std::vector<ExcerptRecord> random;                 // hash asc
  std::vector<std::vector<ExcerptRecord>> quantile;  // [bin] hash asc; bins empty without boundaries
  std::vector<double> boundaries;                    // m values, empty without boundaries
  std::vector<std::uint64_t> histogram;              // kHistBins counts of excerpt maxima
  NeuronStats stats;
};

}  // namespace nexplain
