#pragma once
// The journal: an append-only JSONL file of finished work, one record per line,
//   {"key": "<what was finished, e.g. L3/N17>", "value": <result JSON>}
// Each append is one write(2) of the whole line followed by fsync, so after a crash the file
// is every acknowledged record plus, at worst, one torn (partial) last line. Opening drops that
// torn tail (truncating the file back to the last complete line) and reports what it kept.
// A damaged line anywhere else is not a crash artefact and is an error naming the line.
//
// One process appends at a time: the file is locked (flock) while open, so a second writer
// (a stray rerun) fails at once instead of interleaving lines.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace nexplain {

class Journal {
 public:
  // Opens (creating when missing) and recovers the journal at `path`.
  explicit Journal(std::filesystem::path path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Records read back on open (all lines, including repeated keys).
  std::uint64_t recovered() const { return recovered_; }
  // Bytes of torn last line dropped on open (0 when the file ended cleanly).
  std::uint64_t truncated_bytes() const { return truncated_bytes_; }

  bool contains(const std::string& key) const { return records_.count(key) != 0; }
  // The latest value recorded for each key (a later record for the same key wins).
  const std::map<std::string, nlohmann::json>& records() const { return records_; }

  // Appends one record durably: when this returns, the record survives a crash.
  void append(const std::string& key, const nlohmann::json& value);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t recovered_ = 0;
  std::uint64_t truncated_bytes_ = 0;
  std::map<std::string, nlohmann::json> records_;
};

}  // namespace nexplain
