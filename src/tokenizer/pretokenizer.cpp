#include "tokenizer/pretokenizer.hpp"

#include "tokenizer/pcre2_thread_match.hpp"

#include <string>

#include <spdlog/spdlog.h>

#include "core/error.hpp"

namespace nexplain {

namespace {

// GPT-2's pattern, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
// with \s spelled out as Unicode White_Space ([\t-\r\x{85}\p{Z}]). PCRE2's own \s differs from
// it in one character (it includes U+180E, which left White_Space in Unicode 6.3); tiktoken,
// the reference the goldens agree with, uses White_Space.
constexpr const char* kPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\t-\r\x{85}\p{Z}\p{L}\p{N}]+)"
    R"(|[\t-\r\x{85}\p{Z}]+(?![^\t-\r\x{85}\p{Z}])|[\t-\r\x{85}\p{Z}]+)";

struct Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  Compiled() {
    int err = 0;
    PCRE2_SIZE at = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("internal: the GPT-2 pre-tokenizer pattern does not compile at offset {}: {}", at,
           reinterpret_cast<const char*>(msg));
    }
    // Without JIT (a PCRE2 built without it) matching still works, only slower.
    jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    if (!jit) spdlog::warn("PCRE2 JIT is unavailable: GPT-2 pre-tokenization runs interpreted (slower)");
  }
  ~Compiled() { pcre2_code_free(code); }
};

const Compiled& compiled() {
  static const Compiled c;
  return c;
}


}  // namespace

const char* gpt2_pretokenizer_pattern() { return kPattern; }

void gpt2_pretokenize(std::string_view text, const std::function<void(std::string_view)>& on_word) {
  const Compiled& c = compiled();
  thread_local Pcre2ThreadMatch tm;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const std::size_t n = text.size();
  std::size_t pos = 0;
  while (pos < n) {
    const int rc = c.jit ? pcre2_jit_match(c.code, subject, n, pos, 0, tm.data, tm.context)
                         : pcre2_match(c.code, subject, n, pos, 0, tm.data, tm.context);
    if (rc == PCRE2_ERROR_NOMATCH) {  // only invalid UTF-8 is left
      on_word(text.substr(pos));
      return;
    }
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("GPT-2 pre-tokenizer failed at byte {} of a {}-byte text: {}", pos, n, reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tm.data);
    const std::size_t start = ov[0], end = ov[1];
    if (start > pos) on_word(text.substr(pos, start - pos));  // bytes that are not valid UTF-8
    if (end == start) {
      // Every alternative consumes at least one character, so this cannot happen; stepping one
      // byte keeps the loop finite and the output lossless all the same.
      on_word(text.substr(start, 1));
      pos = start + 1;
      continue;
    }
    on_word(text.substr(start, end - start));
    pos = end;
  }
}

}  // namespace nexplain
