#pragma once
// A pre-tokenizer from any regular expression, for HF tokenizer.json "Split" steps (Llama 3,
// Qwen2, ... each ship their own pattern). Same rules as the GPT-2 pre-tokenizer
// (pretokenizer.hpp): PCRE2 with UTF + UCP + MATCH_INVALID_UTF, JIT when available, match data
// per thread; every match is a word and every run of bytes between matches is a word of its own
// (HF's "Isolated" behaviour; for invalid UTF-8 it keeps encoding lossless).
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace nexplain {

// HF compiles patterns with Oniguruma, whose \s is Unicode White_Space; PCRE2's \s also matches
// U+180E. This rewrites \s and \S (outside and inside character classes) to White_Space spelled
// out, [\t-\r\x{85}\p{Z}], leaving every other construct as it is. `\S` inside a class cannot be
// spelled that way and is an Error naming `source`.
std::string hf_regex_to_pcre2(std::string_view pattern, const std::string& source);

class RegexSplitter {
 public:
  // `pattern` in PCRE2 syntax (after hf_regex_to_pcre2). Error naming `source` and the offset
  // when it does not compile.
  RegexSplitter(const std::string& pattern, const std::string& source);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Calls on_word for each word of `text`, in order; the words concatenate to `text`.
  // Thread-safe.
  void split(std::string_view text, const std::function<void(std::string_view)>& on_word) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

}  // namespace nexplain
