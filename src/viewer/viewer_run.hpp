#pragma once
// One run the viewer shows (a sweep or an explain directory): its results index, kept up to date
// while the sweep runs, its records file and the tokenizer, and the JSON documents the pages and
// the API are made of. Safe to use from the server's threads: HDF5 is not thread-safe, so every
// records read holds one process-wide lock, and the index is an immutable snapshot swapped in
// when the results file changes.
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "io/records_file.hpp"
#include "tokenizer/tokenizer.hpp"
#include "viewer/index_query.hpp"
#include "viewer/results_index.hpp"
#include "viewer/run_paths.hpp"
#include "viewer/sweep_status.hpp"

namespace nexplain::viewer {

class ViewerRun {
 public:
  // `tokenizer` may be null: tokens are then shown as "<id>".
  ViewerRun(RunPaths paths, std::shared_ptr<const Tokenizer> tokenizer);

  const RunPaths& paths() const { return paths_; }
  // The current index; the results file is looked at again when the last look is older than the
  // refresh interval (1 s, longer when rebuilding a large index took long).
  std::shared_ptr<const ResultsIndex> index();

  // {"name", "neurons", "ok", "failed", "mean_score", "layers", "records", "cost_usd", ...}
  nlohmann::json summary_json();
  // A page of the index: {"query", "matched", "page", "pages", "per_page", "rows": [...]}
  nlohmann::json index_json(const IndexQuery& q);
  // HttpError 404 when the neuron is neither in the results nor in the records.
  nlohmann::json neuron_json(std::uint32_t layer, std::uint32_t neuron);
  nlohmann::json sweep_json();

 private:
  // An index with the file its offsets point into.
  struct Snapshot {
    ResultsIndex index;
    std::filesystem::path file;
  };
  std::shared_ptr<const Snapshot> snapshot();
  static nlohmann::json result_line(const Snapshot& snap, const IndexEntry& e);
  std::optional<std::size_t> total_neurons();
  bool record_exists(std::uint32_t layer, std::uint32_t neuron);
  bool open_records();  // under the HDF5 lock; false while there is no records file

  RunPaths paths_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::mutex index_mutex_;  // guards the fields below
  std::unique_ptr<IndexBuilder> builder_;
  std::shared_ptr<const Snapshot> snap_;
  std::chrono::steady_clock::time_point last_look_{};
  std::chrono::steady_clock::duration refresh_interval_ = std::chrono::seconds(1);
  bool force_refresh_ = true;
  std::unique_ptr<RecordsFile> records_;  // opened on first use, under the HDF5 lock
  RateTracker rate_;
};

}  // namespace nexplain::viewer
