#pragma once
// JSON Lines: one JSON object per line, the document's text in a string field (default "text").
// Blank lines are skipped; any other line that is not such an object is an error naming the
// file and line. Read in chunks; one line (one document) at a time is held in memory.
#include <string>

#include "io/corpus_reader.hpp"

namespace nexplain {

class JsonlSource : public CorpusSource {
 public:
  JsonlSource(const std::filesystem::path& path, std::string text_field);
  bool next(CorpusPiece& piece) override;

 private:
  // The next line without its "\n" (and "\r"), or false at the end of the file.
  bool next_line(std::string& line, std::uint64_t& raw_bytes);

  std::string field_;
  std::string buf_;
  std::size_t start_ = 0;
  std::size_t scanned_ = 0;  // no '\n' in buf_[start_, scanned_)
  bool eof_ = false;
  std::uint64_t line_no_ = 0;
};

}  // namespace nexplain
