#pragma once
// The on-disk response cache: every answered request, by its content hash (request_hash), so
// that a rerun re-sends nothing that was already answered.
//
// Layout: <dir>/<h[0:2]>/<h[2:4]>/<h>.json, one file per answer, holding
//   {"hash": h, "kind": "chat"|"completion", "request": <payload>, "response": <body>}
// Each file is written under a temporary name, fsync'd and renamed into place (AtomicOutput),
// so a crash leaves either the whole answer or none; a leftover temporary is never read. The
// two-level fan-out keeps directories small (65,536 leaves) at millions of answers, and separate
// files let several processes (MPI ranks) share one cache without locking. No API key or
// header is stored: the request is the payload bytes, which carry neither.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "llm/request.hpp"

namespace nexplain {

class ResponseCache {
 public:
  // Creates the directory when missing; Error when that fails.
  explicit ResponseCache(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path path_for(const std::string& hash) const;

  // The stored response body for `hash`, or nullopt. A file that cannot be parsed (disk
  // damage; never a crash, thanks to the rename) is reported once and treated as absent, so
  // the request is simply asked again and the file replaced.
  std::optional<std::string> get(const std::string& hash);
  // Stores a successful answer. `response_body` must be JSON.
  void put(const std::string& hash, ApiKind kind, const std::string& request_payload, const std::string& response_body);

  std::uint64_t hits() const { return hits_; }
  std::uint64_t misses() const { return misses_; }
  std::uint64_t stores() const { return stores_; }

 private:
  std::filesystem::path dir_;
  std::uint64_t hits_ = 0, misses_ = 0, stores_ = 0;
};

}  // namespace nexplain
