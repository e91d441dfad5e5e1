#pragma once
// Writes requests as OpenAI Batch-API input files ("shards") instead of sending them, for
// half-price sweeps through the Batch API or `vllm run-batch` on one's own GPUs.
//
// One JSONL line per request, custom_id = the request hash (the response cache's key, so the
// finished outputs can be stored in the cache by custom_id alone):
//   {"custom_id":"<hash>","method":"POST","url":"/v1/chat/completions","body":<payload>}
// `body` is the exact payload the client would send, byte for byte, so re-hashing it gives the
// custom_id back. A shard targets one endpoint and one model (the Batch API takes one endpoint
// per input file, and OpenAI one model per batch): requests are grouped by (stage, kind), and a
// group rolls over to a new shard at the request or byte limit. Shards are named batch-0000.jsonl,
// batch-0001.jsonl, ... in the order they are opened, each written under a temporary name and
// renamed into place when complete; manifest.json (written last, by finish()) lists them with
// stage, endpoint, model and counts.
//
// The directory is one round of a sweep: a directory that already holds shards or a manifest is
// refused, so files of two rounds never mix.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm/request.hpp"

namespace nexplain {

// OpenAI's limits for one batch input file.
struct BatchLimits {
  std::uint64_t max_requests = 50'000;
  std::uint64_t max_bytes = 200'000'000;  // 200 MB, counted in decimal to stay under either reading
};

struct BatchShardInfo {
  std::string file;  // name inside the batch directory
  std::string stage;
  ApiKind kind = ApiKind::chat;
  std::string url;    // what each line names: "/v1/chat/completions" or "/v1/completions"
  std::string model;
  std::uint64_t requests = 0;
  std::uint64_t bytes = 0;
  nlohmann::json to_json() const;
};

class BatchWriter {
 public:
  // Creates `dir` when missing; Error when it already holds a manifest or batch-*.jsonl files.
  explicit BatchWriter(std::filesystem::path dir, BatchLimits limits = {});
  ~BatchWriter();  // shards not yet committed (no finish()) are removed: they were not complete
  BatchWriter(const BatchWriter&) = delete;
  BatchWriter& operator=(const BatchWriter&) = delete;

  // Adds one request (its payload as request_payload made it, and its request_hash). Returns
  // false, writing nothing, when the same hash was written before: a custom_id must be unique,
  // and one answer serves every neuron that asks the same question.
  bool add(const std::string& stage, ApiKind kind, const std::string& model, const std::string& hash,
           const std::string& payload);

  // Commits the open shards and writes manifest.json; returns the shards in file order. Adding
  // after finish() is an Error.
  const std::vector<BatchShardInfo>& finish();

  const std::filesystem::path& dir() const { return dir_; }
  std::uint64_t requests() const { return requests_; }

 private:
  struct OpenShard;
  void close(OpenShard& s);

  std::filesystem::path dir_;
  BatchLimits limits_;
  std::map<std::pair<std::string, ApiKind>, std::unique_ptr<OpenShard>> open_;
  std::vector<BatchShardInfo> shards_;  // in file order; open ones are filled in when closed
  std::unordered_set<std::string> written_;
  std::uint64_t requests_ = 0;
  bool finished_ = false;
};

}  // namespace nexplain
