#pragma once
// What the commands that show tokens (explain, inspect, export, the viewer) and a sweep's
// tokenize step need of a tokenizer, whichever files it came from: GPT-2's own pair
// (Gpt2Tokenizer) or a HuggingFace tokenizer.json (HfTokenizer). load_tokenizer()
// (tokenizer_dir.hpp) picks the kind a directory holds, so none of these users names a kind.
//
// Both kinds are byte-level: every id stands for raw bytes (an added/special token for its
// content), and decoding is concatenation. One token's bytes need not be valid UTF-8 on their
// own (a multi-byte character can span tokens); display_token (explain/record_splits.hpp) makes
// them printable the same way for both kinds.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nexplain {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Thread-safe.
  virtual std::vector<std::uint32_t> encode(std::string_view text) const = 0;
  // The raw bytes of token `id`; Error for an id that names no token (see has_token).
  virtual const std::string& token_bytes(std::uint32_t id) const = 0;
  // One past the largest id.
  virtual std::uint32_t vocab_size() const = 0;
  // Whether `id` names a token: ids below vocab_size() may be holes in a tokenizer.json whose
  // added tokens do not follow the vocabulary directly.
  virtual bool has_token(std::uint32_t id) const = 0;

  // The bytes of `ids` concatenated; Error for an id that names no token.
  std::string decode(std::span<const std::uint32_t> ids) const;

 protected:
  Tokenizer() = default;
  Tokenizer(const Tokenizer&) = default;
  Tokenizer& operator=(const Tokenizer&) = default;
};

}  // namespace nexplain
