#pragma once
// Plain text: one document per file, or documents separated by a separator string (the
// separator itself belongs to no document). The file is read in chunks; a document longer
// than a chunk is passed on in pieces cut at safe points (tokenizer/safe_split.hpp). A document
// without any safe point is held whole.
#include <optional>
#include <string>

#include "io/corpus_reader.hpp"

namespace nexplain {

class TxtSource : public CorpusSource {
 public:
  TxtSource(const std::filesystem::path& path, std::optional<std::string> separator, std::size_t chunk_bytes);
  bool next(CorpusPiece& piece) override;

 private:
  bool fill();  // reads one more chunk; false at the end of the file
  void emit(CorpusPiece& piece, std::size_t len, std::size_t skip, bool ends_document);

  std::optional<std::string> separator_;
  std::size_t chunk_bytes_;
  std::string buf_;         // unconsumed text is buf_[start_, end)
  std::size_t start_ = 0;
  std::size_t scanned_ = 0; // separator search resumes here (absolute index into buf_)
  std::size_t no_cut_before_ = 0;  // no safe cut point in buf_[start_, this) (absolute index)
  bool eof_ = false;
  bool in_document_ = false;  // a piece of the current document was already emitted
};

}  // namespace nexplain
