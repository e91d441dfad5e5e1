#include "io/corpus_reader.hpp"

#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "io/corpus_bin.hpp"
#include "io/corpus_jsonl.hpp"
#include "io/corpus_txt.hpp"

namespace nexplain {

namespace fs = std::filesystem;

CorpusFormat parse_corpus_format(std::string_view name) {
  if (name == "auto") return CorpusFormat::Auto;
  if (name == "txt") return CorpusFormat::Txt;
  if (name == "jsonl") return CorpusFormat::Jsonl;
  if (name == "bin") return CorpusFormat::Bin;
  fail("unknown corpus format '{}': expected auto, txt, jsonl or bin", name);
}

const char* corpus_format_name(CorpusFormat f) {
  switch (f) {
    case CorpusFormat::Auto: return "auto";
    case CorpusFormat::Txt: return "txt";
    case CorpusFormat::Jsonl: return "jsonl";
    case CorpusFormat::Bin: return "bin";
  }
  return "?";
}

CorpusFormat detect_corpus_format(const fs::path& path) {
  const std::string ext = path.extension().string();
  if (ext == ".jsonl" || ext == ".ndjson") return CorpusFormat::Jsonl;
  if (ext == ".bin") return CorpusFormat::Bin;
  return CorpusFormat::Txt;
}

CorpusSource::CorpusSource(fs::path path, CorpusFormat format) : path_(std::move(path)), format_(format) {
  std::error_code ec;
  if (!fs::exists(path_, ec)) fail("{}: no such file", path_.string());
  if (!fs::is_regular_file(path_, ec)) fail("{}: not a regular file", path_.string());
  file_size_ = fs::file_size(path_, ec);
  file_.open(path_, std::ios::binary);
  if (!file_) fail("{}: cannot open for reading: {}", path_.string(), std::strerror(errno));
}

std::size_t CorpusSource::read_raw(char* dst, std::size_t n) {
  if (n == 0 || !file_) return 0;
  file_.read(dst, static_cast<std::streamsize>(n));
  if (file_.bad()) fail("{}: read error at byte {}", path_.string(), bytes_read_);
  const auto got = static_cast<std::size_t>(file_.gcount());
  hash_.update(dst, got);
  bytes_read_ += got;
  if (got < n) sha256_ = hash_.hex_digest();  // end of file: the digest is final
  return got;
}

std::unique_ptr<CorpusSource> open_corpus_source(const fs::path& path, const CorpusOptions& options) {
  const CorpusFormat f = options.format == CorpusFormat::Auto ? detect_corpus_format(path) : options.format;
  switch (f) {
    case CorpusFormat::Jsonl: return std::make_unique<JsonlSource>(path, options.text_field);
    case CorpusFormat::Bin: return std::make_unique<BinSource>(path, options.vocab_size);
    default: return std::make_unique<TxtSource>(path, options.separator, options.chunk_bytes);
  }
}

CorpusStream::CorpusStream(std::vector<fs::path> paths, CorpusOptions options)
    : paths_(std::move(paths)), options_(std::move(options)) {
  if (paths_.empty()) fail("no input files given");
  // Fail on a missing input before any work is done, not after hours on the ones before it.
  for (const auto& p : paths_) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) fail("{}: no such file", p.string());
    total_bytes_ += fs::file_size(p, ec);
  }
}

bool CorpusStream::next(CorpusPiece& piece) {
  for (;;) {
    if (!current_) {
      if (next_file_ == paths_.size()) return false;
      current_ = open_corpus_source(paths_[next_file_++], options_);
    }
    if (current_->next(piece)) return true;
    sources_.push_back({{"path", fs::absolute(current_->path()).lexically_normal().string()},
                        {"bytes", current_->file_size()},
                        {"sha256", current_->sha256()},
                        {"format", corpus_format_name(current_->format())}});
    current_.reset();
  }
}

}  // namespace nexplain
