#include "tokenizer/regex_split.hpp"

#include "tokenizer/pcre2_thread_match.hpp"

#include "core/error.hpp"

namespace nexplain {

namespace {

constexpr std::string_view kWhiteSpace = R"(\t-\r\x{85}\p{Z})";  // Unicode White_Space

std::string pcre2_message(int code) {
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(code, msg, sizeof msg);
  return reinterpret_cast<const char*>(msg);
}


}  // namespace

std::string hf_regex_to_pcre2(std::string_view p, const std::string& source) {
  std::string out;
  bool in_class = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char ch = p[i];
    if (ch == '\\' && i + 1 < p.size()) {
      const char next = p[i + 1];
      if (next == 's') {
        out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      } else if (next == 'S') {
        if (in_class)
          fail("{}: pattern offset {}: \\S inside a character class is not supported", source, i);
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else {
        out += ch;
        out += next;
      }
      ++i;
      continue;
    }
    // A ']' right after '[' or '[^' is a literal, not the end of the class.
    if (ch == '[' && !in_class) {
      in_class = true;
      out += ch;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (ch == ']' && in_class) in_class = false;
    out += ch;
  }
  return out;
}

struct RegexSplitter::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(const std::string& pattern, const std::string& source)
    : pattern_(pattern), code_(std::make_unique<Code>()) {
  int err = 0;
  PCRE2_SIZE at = 0;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
  if (!code_->code) fail("{}: pattern does not compile at offset {}: {}", source, at, pcre2_message(err));
  // Without JIT matching still works, only slower.
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

void RegexSplitter::split(std::string_view text, const std::function<void(std::string_view)>& on_word) const {
  thread_local Pcre2ThreadMatch tm;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const std::size_t n = text.size();
  std::size_t pos = 0, gap = 0;  // gap: start of the bytes not yet given to on_word
  while (pos < n) {
    const int rc = code_->jit ? pcre2_jit_match(code_->code, subject, n, pos, 0, tm.data, tm.context)
                              : pcre2_match(code_->code, subject, n, pos, 0, tm.data, tm.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("pre-tokenizer failed at byte {} of a {}-byte text: {}", pos, n, pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tm.data);
    const std::size_t start = ov[0], end = ov[1];
    if (end == start) {
      // An empty match (a pattern that can match nothing) yields no word, as in HF: search
      // again one character further; the skipped character stays in the pending gap.
      pos = start + 1;
      while (pos < n && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (start > gap) on_word(text.substr(gap, start - gap));  // unmatched bytes: a word of their own
    on_word(text.substr(start, end - start));
    gap = pos = end;
  }
  if (gap < n) on_word(text.substr(gap));
}

}  // namespace nexplain
