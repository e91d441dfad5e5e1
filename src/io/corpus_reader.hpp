#pragma once
// Corpus input: each input file is a CorpusSource that yields the file's documents as pieces of
// text (or of token ids, for pre-tokenized .bin shards), in file order. A huge document arrives
// as several pieces, cut only where cutting cannot change its tokens (tokenizer/safe_split.hpp),
// so no reader ever holds a whole multi-gigabyte file. Every source hashes the bytes it reads,
// which gives the provenance digest without a second pass over the file.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/sha256.hpp"

namespace nexplain {

enum class CorpusFormat { Auto, Txt, Jsonl, Bin };

// "auto" | "txt" | "jsonl" | "bin"; throws Error for anything else.
CorpusFormat parse_corpus_format(std::string_view name);
const char* corpus_format_name(CorpusFormat f);
// By extension: .jsonl/.ndjson -> jsonl, .bin -> bin, anything else -> txt.
CorpusFormat detect_corpus_format(const std::filesystem::path& path);

struct CorpusOptions {
  CorpusFormat format = CorpusFormat::Auto;
  std::string text_field = "text";         // jsonl
  std::optional<std::string> separator;    // txt: documents are separated by this string
  std::size_t chunk_bytes = 4u << 20;      // txt: read size, and the size a long document is cut to
  std::uint32_t vocab_size = 50257;        // bin: token ids must be below this
};

struct CorpusPiece {
  bool new_document = true;  // first piece of a document (an <|endoftext|> goes before it)
  bool pretokenized = false; // ids holds the tokens; otherwise text must be tokenized
  std::string text;
  std::vector<std::uint32_t> ids;
  std::uint64_t bytes = 0;   // input bytes this piece accounts for (progress by bytes)
};

// One input file.
class CorpusSource {
 public:
  CorpusSource(std::filesystem::path path, CorpusFormat format);
  virtual ~CorpusSource() = default;
  CorpusSource(const CorpusSource&) = delete;
  CorpusSource& operator=(const CorpusSource&) = delete;

  // The next piece, or false at the end of the file. Empty documents are skipped.
  virtual bool next(CorpusPiece& piece) = 0;

  const std::filesystem::path& path() const { return path_; }
  CorpusFormat format() const { return format_; }
  std::uint64_t file_size() const { return file_size_; }
  // The file's digest; valid once next() has returned false.
  const std::string& sha256() const { return sha256_; }

 protected:
  // Reads up to n bytes (fewer only at the end of the file), hashing them; 0 at the end.
  std::size_t read_raw(char* dst, std::size_t n);
  std::uint64_t bytes_read() const { return bytes_read_; }

 private:
  std::filesystem::path path_;
  CorpusFormat format_;
  std::ifstream file_;
  std::uint64_t file_size_ = 0;
  std::uint64_t bytes_read_ = 0;
  Sha256 hash_;
  std::string sha256_;
};

// Opens one file (format resolved from options.format or the extension). Throws Error naming
// the file when it cannot be opened.
std::unique_ptr<CorpusSource> open_corpus_source(const std::filesystem::path& path, const CorpusOptions& options);

// Several files read one after the other.
class CorpusStream {
 public:
  CorpusStream(std::vector<std::filesystem::path> paths, CorpusOptions options);
  bool next(CorpusPiece& piece);
  // Sum of the input file sizes (the progress total).
  std::uint64_t total_bytes() const { return total_bytes_; }
  // One entry per file finished so far: {"path", "bytes", "sha256", "format"}.
  const nlohmann::json& sources() const { return sources_; }

 private:
  std::vector<std::filesystem::path> paths_;
  CorpusOptions options_;
  std::size_t next_file_ = 0;
  std::unique_ptr<CorpusSource> current_;
  std::uint64_t total_bytes_ = 0;
  nlohmann::json sources_ = nlohmann::json::array();
};

}  // namespace nexplain
