#pragma once
// Reads finished OpenAI Batch-API output files (or `vllm run-batch` outputs) into the response
// cache, so that the next run finds those answers as if it had asked them itself.
//
// An output line is {"id", "custom_id", "response": {"status_code", "request_id", "body"},
// "error"}. custom_id is the request hash nexplain wrote (BatchWriter), which is the cache key,
// so a line is stored as it stands: only a status-200 answer whose body parses as a chat or
// completion response is stored. The entry's "kind" comes from the body (its "object", else the
// shape of its choices) and its "request" is null: the output file does not repeat the request,
// and the cache is read by hash alone.
//
// Every line is accounted for: ingested, already cached (left as it is: a rerun must see the
// answer it saw before), failed (error, non-200 status, malformed body: that request is simply
// written again by the next --write-batch round), unknown (a custom_id that is not a nexplain
// request hash) or malformed (not a JSON output line). Each problem is named as file:line.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "llm/response_cache.hpp"

namespace nexplain {

struct BatchIngestReport {
  std::filesystem::path file;
  std::uint64_t lines = 0;  // non-empty lines read
  std::uint64_t ingested = 0, already_cached = 0, failed = 0, unknown = 0, malformed = 0;
  // "file:line: what is wrong", for failed, unknown and malformed lines; the first
  // kMaxProblems only (the counts are complete).
  std::vector<std::string> problems;
  static constexpr std::size_t kMaxProblems = 20;

  // One line: "<file>: N lines: a ingested, b already cached, c failed, d unknown, e malformed".
  std::string summary() const;
};

// Error when the file cannot be read, when it is a batch *input* file (lines with method, url
// and body but no response), or when none of its lines is an output line. Problems with single
// lines are counted, logged as warnings and reported instead.
BatchIngestReport ingest_batch_output(const std::filesystem::path& file, ResponseCache& cache);

}  // namespace nexplain
