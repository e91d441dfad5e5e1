#pragma once
// The request path of a --write-batch run: every request is answered from the response cache
// when it can be, and otherwise written to a batch shard (BatchWriter). Nothing is sent, so no
// API key, no preflight and no server are needed: the run works through whatever the cache
// already holds and leaves the rest, written down, for the Batch API.
//
// Answers come back as the LlmResult the client would have given for a cache hit (ok,
// from_cache, parsed response), so the code that drives neurons is the same in both modes.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "llm/batch_writer.hpp"
#include "llm/client.hpp"
#include "llm/response_cache.hpp"

namespace nexplain {

class BatchRouter {
 public:
  // `endpoints` give each stage's model (part of the payload, hence of the hash).
  BatchRouter(const std::vector<EndpointConfig>& endpoints, const std::filesystem::path& cache_dir,
              const std::filesystem::path& batch_dir, BatchLimits limits = {});

  // True when the cache answered (the result waits for take_ready), false when the request was
  // written to a batch shard (or had been written already for another neuron). Error for an
  // unknown stage.
  bool submit(const LlmRequest& request);
  // Results answered since the last call, in submission order.
  std::vector<LlmResult> take_ready();

  std::uint64_t answered() const { return answered_; }
  // Distinct requests written, and requests that needed an answer not yet in the cache
  // (distinct or not).
  std::uint64_t written() const { return writer_.requests(); }
  std::uint64_t unanswered() const { return unanswered_; }

  // Commits the shards and writes the manifest; see BatchWriter::finish.
  const std::vector<BatchShardInfo>& finish() { return writer_.finish(); }
  const std::filesystem::path& dir() const { return writer_.dir(); }

 private:
  std::map<std::string, std::string> model_of_;  // stage -> model
  ResponseCache cache_;
  BatchWriter writer_;
  std::vector<LlmResult> ready_;
  std::uint64_t next_id_ = 1;
  std::uint64_t answered_ = 0, unanswered_ = 0;
};

}  // namespace nexplain
