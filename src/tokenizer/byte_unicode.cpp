#include "tokenizer/byte_unicode.hpp"

namespace nexplain {

namespace {

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<int, 512> from_cp{};  // code point (< 512) -> byte, or -1
  Tables() {
    from_cp.fill(-1);
    // Printable Latin-1 ranges keep their own code point; the remaining bytes are numbered
    // from U+0100 upwards in byte order (exactly as GPT-2's bytes_to_unicode()).
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      to_cp[static_cast<std::size_t>(b)] = cp;
      from_cp[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t gpt2_byte_to_codepoint(unsigned char b) { return tables().to_cp[b]; }

std::string gpt2_bytes_to_shown(std::string_view bytes) {
  std::string s;
  s.reserve(2 * bytes.size());
  for (const unsigned char b : bytes) {
    const char32_t cp = gpt2_byte_to_codepoint(b);
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return s;
}

std::optional<std::string> gpt2_shown_to_bytes(std::string_view s, std::size_t* bad_at) {
  const auto& t = tables();
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c0 = static_cast<unsigned char>(s[i]);
    char32_t cp = 0;
    std::size_t len = 0;
    // Every mapped code point is below U+0200, so one or two UTF-8 bytes suffice.
    if (c0 < 0x80) {
      cp = c0;
      len = 1;
    } else if ((c0 & 0xE0) == 0xC0 && i + 1 < s.size() && (static_cast<unsigned char>(s[i + 1]) & 0xC0) == 0x80) {
      cp = (static_cast<char32_t>(c0 & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
      len = cp >= 0x80 ? 2 : 0;  // an overlong encoding is not valid UTF-8
    }
    if (len == 0 || cp >= t.from_cp.size() || t.from_cp[cp] < 0) {
      if (bad_at) *bad_at = i;
      return std::nullopt;
    }
    out.push_back(static_cast<char>(t.from_cp[cp]));
    i += len;
  }
  return out;
}

}  // namespace nexplain
