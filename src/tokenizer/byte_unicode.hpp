#pragma once
// GPT-2's vocabulary files do not store raw bytes: every byte is shown as a printable Unicode
// character (bytes that are already printable map to themselves, the others to U+0100 and up),
// so that tokens can live in JSON and in a space-separated merges file. This is the mapping
// back to bytes.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nexplain {

// The code point GPT-2 uses to show byte `b`.
char32_t gpt2_byte_to_codepoint(unsigned char b);

// Converts a token as written in encoder.json / vocab.bpe (UTF-8 of the mapped code points) to
// its raw bytes. Returns nullopt when `shown` is not valid UTF-8 or uses a code point outside
// the mapping; `bad_at` then receives the byte offset of the offending character.
std::optional<std::string> gpt2_shown_to_bytes(std::string_view shown, std::size_t* bad_at = nullptr);
// The inverse: raw bytes as GPT-2 writes them in its vocabulary (UTF-8 of the mapped code points,
// all below U+0800).
std::string gpt2_bytes_to_shown(std::string_view bytes);

}  // namespace nexplain
