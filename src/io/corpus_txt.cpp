#include "io/corpus_txt.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "tokenizer/safe_split.hpp"

namespace nexplain {

TxtSource::TxtSource(const std::filesystem::path& path, std::optional<std::string> separator, std::size_t chunk_bytes)
    : CorpusSource(path, CorpusFormat::Txt), separator_(std::move(separator)), chunk_bytes_(std::max<std::size_t>(chunk_bytes, 16)) {
  if (separator_ && separator_->empty()) fail("{}: the document separator must not be empty", path.string());
}

bool TxtSource::fill() {
  if (eof_) return false;
  // Drop consumed text first so the buffer stays about two chunks long.
  if (start_ > 0) {
    buf_.erase(0, start_);
    scanned_ -= std::min(scanned_, start_);
    no_cut_before_ -= std::min(no_cut_before_, start_);
    start_ = 0;
  }
  const std::size_t old = buf_.size();
  buf_.resize(old + chunk_bytes_);
  const std::size_t got = read_raw(buf_.data() + old, chunk_bytes_);
  buf_.resize(old + got);
  if (got < chunk_bytes_) eof_ = true;
  return got > 0;
}

void TxtSource::emit(CorpusPiece& piece, std::size_t len, std::size_t skip, bool ends_document) {
  piece.new_document = !in_document_;
  piece.pretokenized = false;
  piece.ids.clear();
  piece.text.assign(buf_, start_, len);
  piece.bytes = len + skip;
  start_ += len + skip;
  scanned_ = std::max(scanned_, start_);
  in_document_ = !ends_document;
}

bool TxtSource::next(CorpusPiece& piece) {
  std::uint64_t skipped = 0;  // bytes of empty documents (separators only), for progress
  for (;;) {
    const std::size_t avail = buf_.size() - start_;
    if (separator_) {
      const std::string& sep = *separator_;
      const std::size_t from = std::max(scanned_, start_);
      const std::size_t at = buf_.find(sep, from);
      if (at != std::string::npos) {
        const std::size_t len = at - start_;
        if (len == 0 && !in_document_) {  // empty document: skip its separator
          start_ += sep.size();
          scanned_ = start_;
          skipped += sep.size();
          continue;
        }
        emit(piece, len, sep.size(), true);
        piece.bytes += skipped;
        return true;
      }
      // A separator may straddle the end of the buffer: the next search starts just before it.
      scanned_ = std::max(start_, buf_.size() >= sep.size() ? buf_.size() - sep.size() + 1 : 0);
    }
    if (avail >= chunk_bytes_) {
      // A long document: pass on a piece, cut where tokenization is unaffected, never inside a
      // (partly read) separator at the end of the buffer.
      const std::string_view rest(buf_.data() + start_, avail);
      const std::size_t keep = separator_ ? separator_->size() : 0;
      const std::size_t max_pos = avail > keep ? avail - keep : 0;
      // Positions before no_cut_before_ were searched already: a document without safe points
      // costs one scan, not one per chunk.
      const std::size_t from = no_cut_before_ > start_ ? no_cut_before_ - start_ : 0;
      const std::size_t p = find_safe_split(rest, from, max_pos);
      if (p > 0) {
        emit(piece, p, 0, false);
        piece.bytes += skipped;
        return true;
      }
      no_cut_before_ = start_ + max_pos;
    }
    if (fill()) continue;
    // End of file: the rest is the last document (or the last piece of it).
    if (buf_.size() > start_) {
      emit(piece, buf_.size() - start_, 0, true);
      piece.bytes += skipped;
      return true;
    }
    return false;
  }
}

}  // namespace nexplain
