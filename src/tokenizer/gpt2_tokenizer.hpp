#pragma once
// GPT-2's byte-level BPE tokenizer (the one vocabulary shared by GPT-2 small to XL).
//
// - Special tokens: `<|endoftext|>` (id 50256) exists in the vocabulary, but text that spells it
//   is encoded as ordinary text (like tiktoken's encode_ordinary): documents are separated by
//   the caller inserting eot_id(), never by text inside a document.
// - Lossless for any bytes: decode(encode(s)) == s, whether s is valid UTF-8 or not (see
//   pretokenizer.hpp).
// - encode() is const and thread-safe; each thread keeps its own cache of frequent words.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.hpp"

namespace nexplain {

class BpeMerges;

class Gpt2Tokenizer final : public Tokenizer {
 public:
  // Loads `dir`/encoder.json + `dir`/vocab.bpe (OpenAI's names) or `dir`/vocab.json +
  // `dir`/merges.txt (Hugging Face's). Throws Error naming the file and line/column for missing
  // or corrupt files.
  static Gpt2Tokenizer load(const std::filesystem::path& dir);
  // Whether `dir` holds one of the two file pairs (used to look for a default directory).
  static bool has_files(const std::filesystem::path& dir);

  std::vector<std::uint32_t> encode(std::string_view text) const override;
  // Appends the tokens of `text` to `out` (saves a copy when building a long stream).
  void encode_append(std::string_view text, std::vector<std::uint32_t>& out) const;
  // The raw bytes of one token (not necessarily valid UTF-8 on its own); Error for an id outside
  // the vocabulary. decode() (Tokenizer) concatenates them.
  const std::string& token_bytes(std::uint32_t id) const override;

  std::uint32_t vocab_size() const override;
  bool has_token(std::uint32_t id) const override { return id < vocab_size(); }
  std::uint32_t eot_id() const;  // "<|endoftext|>"

  // sha256 over the two files' digests ("<vocab sha256>\n<merges sha256>\n"): names exactly the
  // files this tokenizer was loaded from. The file paths and their own digests are below.
  const std::string& files_sha256() const;
  const std::filesystem::path& vocab_file() const;
  const std::filesystem::path& merges_file() const;
  const std::string& vocab_file_sha256() const;
  const std::string& merges_file_sha256() const;

  // The merge table (for tests and benchmarks of the merge loop).
  const BpeMerges& merges() const;

  struct Tables;  // immutable after load(); shared by copies

 private:
  explicit Gpt2Tokenizer(std::shared_ptr<const Tables> t) : t_(std::move(t)) {}
  std::shared_ptr<const Tables> t_;
};

}  // namespace nexplain
