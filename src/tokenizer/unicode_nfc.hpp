#pragma once
// Unicode Normalization Form C, for tokenizer.json files whose normalizer asks for it (Qwen2's
// does). It comes from utf8proc (libutf8proc-dev), an optional dependency: a build without it
// refuses such a tokenizer at load time (HfTokenizer) instead of tokenizing differently.
#include <string>
#include <string_view>

namespace nexplain {

// Whether this build has utf8proc, i.e. whether nfc_normalize works.
bool nfc_available();
// The Unicode version of its tables ("15.0.0"), or "" without utf8proc.
std::string nfc_unicode_version();

// NFC of `bytes`. Bytes that are not valid UTF-8 (as utf8proc reads it: no overlong forms,
// surrogates or code points past U+10FFFF) are kept as they are, so that tokenizing stays
// lossless for NFC text; the valid runs between them are normalized each on its own (an invalid
// byte stops composition, as the U+FFFD that Python's errors="replace" would put there does).
// Throws Error when !nfc_available().
std::string nfc_normalize(std::string_view bytes);

}  // namespace nexplain
