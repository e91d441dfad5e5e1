#include "tokenizer/unicode_nfc.hpp"

#include <cstdlib>
#include <memory>

#include "core/error.hpp"

#ifdef NEXPLAIN_HAVE_UTF8PROC
#include <utf8proc.h>
#endif

namespace nexplain {

#ifdef NEXPLAIN_HAVE_UTF8PROC

bool nfc_available() { return true; }

std::string nfc_unicode_version() { return utf8proc_unicode_version(); }

namespace {

// NFC of a run that is valid UTF-8.
void append_nfc(std::string_view run, std::string& out) {
  // ASCII is its own NFC, and no ASCII character composes with what follows it unless a
  // combining mark does, which is not ASCII: most text takes this path.
  bool ascii = true;
  for (const char c : run) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) {
    out.append(run);
    return;
  }
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                          static_cast<utf8proc_ssize_t>(run.size()), &dst,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  if (n < 0) fail("NFC normalization failed: {}", utf8proc_errmsg(n));  // not for valid UTF-8
  out.append(reinterpret_cast<const char*>(dst), static_cast<std::size_t>(n));
}

}  // namespace

std::string nfc_normalize(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(bytes.data());
  const auto size = static_cast<utf8proc_ssize_t>(bytes.size());
  utf8proc_ssize_t run = 0, i = 0;  // [run, i) is valid UTF-8
  while (i < size) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(p + i, size - i, &cp);
    if (len > 0) {
      i += len;
      continue;
    }
    append_nfc(bytes.substr(static_cast<std::size_t>(run), static_cast<std::size_t>(i - run)), out);
    out.push_back(bytes[static_cast<std::size_t>(i)]);  // an invalid byte stays as it is
    run = ++i;
  }
  append_nfc(bytes.substr(static_cast<std::size_t>(run)), out);
  return out;
}

#else

bool nfc_available() { return false; }

std::string nfc_unicode_version() { return {}; }

std::string nfc_normalize(std::string_view) {
  fail("NFC normalization is not available: this build of nexplain lacks utf8proc (install libutf8proc-dev and "
       "rebuild)");
}

#endif

}  // namespace nexplain
