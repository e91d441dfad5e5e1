#pragma once
// The sequences file: a corpus cut into fixed windows of T tokens, one excerpt per row; an
// excerpt's id is its row index. HDF5, so that h5py and every later stage read it directly.
//
//   /tokens   [N, T] uint16 (uint32 when the vocabulary exceeds 65536 ids), chunked, deflate
//   root attributes: format = "nexplain-sequences", format_version = 1, seq_len = T,
//     n_sequences = N, vocab_size, eot_id, tokenizer_sha256, provenance (a JSON string)
//
// Layout and joining rules are described for users in docs/TOKENIZER.md.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "io/h5file.hpp"

namespace nexplain {

class ThreadPool;

inline constexpr const char* kSequencesFormat = "nexplain-sequences";
inline constexpr int kSequencesFormatVersion = 1;

struct SequencesInfo {
  int seq_len = 64;
  std::uint32_t vocab_size = 0;
  std::uint32_t eot_id = 0;
  std::string tokenizer_sha256;
};

// Streams tokens into a sequences file: tokens are appended as they come, full windows are
// written in chunk-sized batches, and only the current partial batch is held in memory. The file
// is written under a temporary name and appears at `path` only after finish(); destroying the
// writer without finish() leaves nothing behind.
class SequencesWriter {
 public:
  SequencesWriter(const std::filesystem::path& path, const SequencesInfo& info);
  ~SequencesWriter();
  SequencesWriter(const SequencesWriter&) = delete;
  SequencesWriter& operator=(const SequencesWriter&) = delete;

  // Compress whole chunks on `pool` (nullptr: on the calling thread). The file's bytes do not
  // depend on it: deflate at one thread is as slow as tokenizing at one thread, so without
  // this a many-core run would wait on the compressor.
  void set_thread_pool(ThreadPool* pool) { pool_ = pool; }

  void append(const std::uint32_t* ids, std::size_t n);
  void append(const std::vector<std::uint32_t>& ids) { append(ids.data(), ids.size()); }

  std::uint64_t tokens_total() const { return tokens_total_; }
  std::uint64_t sequences() const { return (tokens_total_ / static_cast<std::uint64_t>(info_.seq_len)); }
  // Tokens of the final partial window, which finish() drops.
  std::uint64_t tokens_dropped() const { return tokens_total_ % static_cast<std::uint64_t>(info_.seq_len); }

  // Writes the remaining full windows and the attributes, closes the file and renames it into
  // place. `provenance` is stored as the "provenance" attribute (JSON text).
  void finish(const nlohmann::json& provenance);

 private:
  void flush_rows(bool all);
  void write_whole_chunks(const unsigned char* data, std::size_t chunks);

  SequencesInfo info_;
  std::unique_ptr<AtomicOutput> out_;
  h5::File file_;
  h5::Dataset tokens_;
  bool wide_ = false;  // uint32 on disk
  std::size_t rows_per_write_ = 1024;
  std::vector<std::uint32_t> pending_;
  std::uint64_t rows_written_ = 0;
  std::uint64_t tokens_total_ = 0;
  ThreadPool* pool_ = nullptr;
  bool direct_chunks_ = true;  // H5Dwrite_chunk works here (see write_whole_chunks)
  bool finished_ = false;
};

// Reads a sequences file. Not safe for concurrent calls from several threads (HDF5 is not).
class SequencesReader {
 public:
  SequencesReader() = default;
  explicit SequencesReader(const std::filesystem::path& path) { open(path); }
  // Throws Error naming the file when it is not a sequences file of a version this build reads.
  void open(const std::filesystem::path& path);

  std::uint64_t size() const { return n_; }
  int seq_len() const { return seq_len_; }
  std::uint32_t vocab_size() const { return vocab_size_; }
  std::uint32_t eot_id() const { return eot_id_; }
  const std::string& tokenizer_sha256() const { return tokenizer_sha256_; }
  const nlohmann::json& provenance() const { return provenance_; }
  const std::filesystem::path& path() const { return path_; }

  // Rows [first, first+count) into out[count * seq_len()], row-major.
  void read(std::uint64_t first, std::uint64_t count, std::uint32_t* out) const;

 private:
  std::filesystem::path path_;
  h5::File file_;
  h5::Dataset tokens_;
  std::uint64_t n_ = 0;
  int seq_len_ = 0;
  std::uint32_t vocab_size_ = 0;
  std::uint32_t eot_id_ = 0;
  std::string tokenizer_sha256_;
  nlohmann::json provenance_;
};

}  // namespace nexplain
