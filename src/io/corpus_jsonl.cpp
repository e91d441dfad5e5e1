#include "io/corpus_jsonl.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace nexplain {

namespace {

constexpr std::size_t kReadBytes = 1u << 20;

// nlohmann's message without its "[json.exception.parse_error.101] parse error at line 1, "
// prefix: the line is ours to report, the column is kept.
std::string describe(const nlohmann::json::parse_error& e) {
  std::string s = e.what();
  if (const auto p = s.find("column "); p != std::string::npos) return s.substr(p);
  if (const auto p = s.find("] "); p != std::string::npos) return s.substr(p + 2);
  return s;
}

const char* type_name(const nlohmann::json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a boolean";
  if (j.is_number()) return "a number";
  if (j.is_array()) return "an array";
  if (j.is_object()) return "an object";
  return "a string";
}

}  // namespace

JsonlSource::JsonlSource(const std::filesystem::path& path, std::string text_field)
    : CorpusSource(path, CorpusFormat::Jsonl), field_(std::move(text_field)) {}

bool JsonlSource::next_line(std::string& line, std::uint64_t& raw_bytes) {
  for (;;) {
    const std::size_t nl = buf_.find('\n', std::max(start_, scanned_));
    if (nl != std::string::npos || (eof_ && start_ < buf_.size())) {
      const std::size_t end = nl == std::string::npos ? buf_.size() : nl;
      line.assign(buf_, start_, end - start_);
      raw_bytes = end - start_ + (nl == std::string::npos ? 0 : 1);
      start_ = nl == std::string::npos ? buf_.size() : nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      ++line_no_;
      return true;
    }
    if (eof_) return false;
    buf_.erase(0, start_);
    start_ = 0;
    scanned_ = buf_.size();  // a very long line is searched once, not once per read
    const std::size_t old = buf_.size();
    buf_.resize(old + kReadBytes);
    const std::size_t got = read_raw(buf_.data() + old, kReadBytes);
    buf_.resize(old + got);
    if (got < kReadBytes) eof_ = true;
  }
}

bool JsonlSource::next(CorpusPiece& piece) {
  std::string line;
  std::uint64_t bytes = 0, skipped = 0;
  while (next_line(line, bytes)) {
    if (line.find_first_not_of(" \t") == std::string::npos) {
      skipped += bytes;
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}:{}: invalid JSON: {}", path().string(), line_no_, describe(e));
    }
    if (!j.is_object()) fail("{}:{}: expected a JSON object, found {}", path().string(), line_no_, type_name(j));
    const auto it = j.find(field_);
    if (it == j.end()) fail("{}:{}: field '{}' missing (choose the field with --text-field)", path().string(), line_no_, field_);
    if (!it->is_string())
      fail("{}:{}: field '{}' missing: found {} where a string was expected", path().string(), line_no_, field_, type_name(*it));
    std::string text = it->get<std::string>();
    if (text.empty()) {  // empty documents are skipped
      skipped += bytes;
      continue;
    }
    piece.new_document = true;
    piece.pretokenized = false;
    piece.ids.clear();
    piece.text = std::move(text);
    piece.bytes = bytes + skipped;
    return true;
  }
  return false;
}

}  // namespace nexplain
