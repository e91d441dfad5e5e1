#pragma once
// The records file (records.h5): per layer, the reduction state of every neuron (top-K, random
// and quantile-bin excerpts with all T activations, histogram of excerpt maxima, moments), the
// tokens of every excerpt a record refers to, and provenance. docs/FORMAT.md is the schema.
//
// Datasets mirror CaptureArrays one to one ("/layers/<L>/<array name>"), chunked by neuron ranges
// so that one neuron's records are one small read.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "capture/capture_state.hpp"
#include "capture/neuron_record.hpp"
#include "io/h5file.hpp"

namespace nexplain {

inline constexpr const char* kRecordsFormat = "nexplain-records";
inline constexpr int kRecordsFormatVersion = 1;

// Everything about how a records file was made; stored as root attributes.
struct RecordsMeta {
  CaptureParams params;              // T, K, R, Q, seed, quantile fractions (layer unused)
  std::vector<int> layers;           // layers present, ascending
  std::uint64_t n_excerpts = 0;      // excerpts reduced (the whole stream)
  double prepass_rate = 0.0;         // fraction of excerpts the histogram pre-pass saw
  std::uint64_t prepass_excerpts = 0;
  nlohmann::json model;              // {"config": {...}, "files": {name: sha256}, "dir": ...}
  nlohmann::json corpus;             // {"path", "sha256", "provenance": {...}}
  std::string backend;               // "cpu" / "cuda:fp32" ...
  std::string command_line;
  std::string nexplain_version;
};

// A records file is written in steps, each one open/close session of the file, so that several
// processes can take turns on one file with serial HDF5 (the MPI collect's stage roots,
// docs/MPI.md "End"):
//   create_records_file      the file and its root attributes;
//   append_records_layer     one layer's group and datasets, once per layer of meta.layers, in order;
//   append_records_excerpts  the tokens of every excerpt the layers refer to, last.
// HDF5's placement of objects depends on how the writes are split into sessions, so every writer
// (one process or many) runs exactly these steps: then the same data gives the same file bytes.
void create_records_file(const std::filesystem::path& path, const RecordsMeta& meta);
// Writes state.params().layer's datasets from the state's arrays (no copy of the state).
void append_records_layer(const std::filesystem::path& path, const CaptureState& state);
// ids: every excerpt any layer refers to, ascending and unique; tokens: their T tokens each, flat.
void append_records_excerpts(const std::filesystem::path& path, const std::vector<std::uint64_t>& ids,
                             const std::vector<std::uint32_t>& tokens);

// All steps in one process: a complete records file at `path` (the caller makes it atomic via
// AtomicOutput). excerpt_tokens: id -> T tokens, for every excerpt id referenced by any state
// (checked).
void write_records_file(const std::filesystem::path& path, const RecordsMeta& meta,
                        const std::vector<const CaptureState*>& layer_states,
                        const std::map<std::uint64_t, std::vector<std::uint32_t>>& excerpt_tokens);

// The set of excerpt ids a state's samples refer to (appended to out, unsorted, with repeats).
void collect_referenced_ids(const CaptureArrays& a, std::vector<std::uint64_t>& out);
// Sorts ids and drops repeats.
void sort_unique_ids(std::vector<std::uint64_t>& ids);

class RecordsFile {
 public:
  explicit RecordsFile(const std::filesystem::path& path);  // Error when not a records file

  const RecordsMeta& meta() const { return meta_; }
  const std::string& path() const { return file_.path(); }
  bool has_layer(int layer) const;
  std::uint32_t n_neurons(int layer) const;

  // One neuron's records (small reads).
  NeuronRecord neuron(int layer, std::uint32_t neuron) const;
  // A whole layer's state (checkpoints, merges, the viewer's summaries).
  CaptureState layer_state(int layer) const;
  // The T tokens of an excerpt (Error when the file does not hold it).
  std::vector<std::uint32_t> excerpt_tokens(std::uint64_t excerpt_id) const;

 private:
  h5::File file_;
  RecordsMeta meta_;
  std::vector<std::uint64_t> excerpt_ids_;  // sorted
};

}  // namespace nexplain
