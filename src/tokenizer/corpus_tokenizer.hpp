#pragma once
// What `tokenize` needs of a tokenizer, for either kind of tokenizer directory: GPT-2's own files
// (encoder.json + vocab.bpe, or vocab.json + merges.txt: Gpt2Tokenizer) or a Hugging Face
// tokenizer.json (HfTokenizer: Llama 3, Pythia, Qwen2, ...). The corpus pipeline
// (io/corpus_tokenize.hpp) sees only this, so one code path joins and windows documents for both.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/gpt2_tokenizer.hpp"
#include "tokenizer/hf_tokenizer.hpp"

namespace nexplain {

struct CorpusTokenizer {
  std::function<std::vector<std::uint32_t>(std::string_view)> encode;  // thread-safe
  std::uint32_t vocab_size = 0;
  std::uint32_t eot_id = 0;   // the token put between documents
  std::string eot_text;       // its text ("<|endoftext|>")
  std::string sha256;         // names exactly the tokenizer file(s)
  nlohmann::json provenance;  // the sequences file's "tokenizer" entry
};

// GPT-2's files; documents are joined with <|endoftext|>. The tokenizer's tables are shared.
CorpusTokenizer corpus_tokenizer(const Gpt2Tokenizer& tok);
// A tokenizer.json (`file`, for provenance); documents are joined with `eot_token`, which must
// be a token of it (Error naming the file otherwise).
CorpusTokenizer corpus_tokenizer(const HfTokenizer& tok, const std::filesystem::path& file,
                                 const std::string& eot_token);

// What require_tokenizer_files (tokenizer_dir.hpp) finds in `dir`: a tokenizer.json (it wins
// over GPT-2's files beside it), or `dir` itself when it is a .json file -> HfTokenizer; else
// GPT-2's files -> Gpt2Tokenizer. `eot_token` "" means: tokenizer_config.json's `eos_token` next
// to a tokenizer.json when there is one, else "<|endoftext|>". Error naming the directory and
// the files looked for when it holds neither.
CorpusTokenizer load_corpus_tokenizer(const std::filesystem::path& dir, const std::string& eot_token = "");

}  // namespace nexplain
