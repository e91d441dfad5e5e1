#pragma once
// A byte-level BPE tokenizer read from a HuggingFace tokenizer.json (GPT-2, Llama 3, Pythia,
// Qwen2 and most recent LMs ship one). It reuses the GPT-2 pieces: the byte <-> printable
// character alphabet (byte_unicode.hpp), the merge table and loop (bpe_merges.hpp), the GPT-2
// pattern (pretokenizer.hpp) and a PCRE2 splitter for other patterns (regex_split.hpp).
//
// Understood:
// - pre_tokenizer: ByteLevel (use_regex true = GPT-2's pattern; add_prefix_space false), Split
//   with a Regex or String pattern, behavior "Isolated", invert false, and a Sequence of these;
// - model: type BPE, vocab, merges as "a b" strings or ["a", "b"] pairs, ignore_merges (a word
//   that is itself a token is not merged: Llama 3); no dropout, unk token, byte_fallback or
//   subword prefix/suffix;
// - added_tokens: ids and contents. Special ones are never matched inside text (as tiktoken's
//   encode_ordinary: a corpus cannot forge a document boundary); non-special ones are, as HF
//   does, before pre-tokenization (in the text as given when "normalized" is false, in the
//   normalized text otherwise).
// - normalizer: null, "NFC" (Qwen2), or a "Sequence" of these; NFC needs utf8proc in the build
//   (unicode_nfc.hpp), and a tokenizer asking for it is refused by a build without. Bytes that
//   are not UTF-8 pass through unnormalized, so encoding stays lossless for NFC text.
// - the post_processor (BOS insertion) and decoder are ignored: tokens are decoded from their
//   bytes.
// Anything else is an Error naming the file and the JSON key.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.hpp"

namespace nexplain {

class HfTokenizer final : public Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding one.
  static HfTokenizer load(const std::filesystem::path& path);
  // From the JSON text; `source` names it in errors.
  static HfTokenizer from_json_text(const std::string& json_text, const std::string& source);

  std::vector<std::uint32_t> encode(std::string_view text) const override;
  void encode_append(std::string_view text, std::vector<std::uint32_t>& out) const;
  // Words as the pre-tokenizer cuts them (for tests and debugging).
  std::vector<std::string> pretokenize(std::string_view text) const;
  // A vocabulary token's raw bytes, an added token's content; Error for an unknown id.
  // decode() (Tokenizer) concatenates them.
  const std::string& token_bytes(std::uint32_t id) const override;

  std::uint32_t vocab_size() const override;  // max id + 1, added tokens included
  bool has_token(std::uint32_t id) const override;
  // The id of an added or vocabulary token given as text ("<|endoftext|>"), if any.
  std::optional<std::uint32_t> token_id(std::string_view content) const;
  const std::string& sha256() const;  // of the tokenizer.json bytes

  struct Tables;

 private:
  explicit HfTokenizer(std::shared_ptr<const Tables> t) : t_(std::move(t)) {}
  std::shared_ptr<const Tables> t_;
};

}  // namespace nexplain
