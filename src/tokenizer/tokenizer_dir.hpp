#pragma once
// Where a tokenizer's files are and which kind they are.
//
// Where: the GPT-2 tokenizer files are not shipped in the repository (scripts/fetch-tokenizer.sh
// downloads them), so commands look in a few conventional places when the user does not say
// and, failing that, say how to get them.
//
// Which: a tokenizer directory (or a model directory: Llama, Pythia and Qwen2 ship their
// tokenizer next to the weights) holds a HuggingFace tokenizer.json, GPT-2's own pair, or both.
// tokenizer.json wins: it is the complete description (pre-tokenizer pattern, normalizer, added
// tokens), while Qwen2's vocab.json + merges.txt beside it lack its special tokens and its
// pattern; where both describe GPT-2 (openai-community/gpt2) they give the same tokens.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "tokenizer/tokenizer.hpp"

namespace nexplain {

struct TokenizerFiles {
  enum class Kind { tokenizer_json, gpt2_pair };
  Kind kind;
  // The tokenizer.json file, or the directory holding GPT-2's pair.
  std::filesystem::path path;
};

// What `dir_or_file` holds: a .json file itself -> tokenizer_json; else dir/tokenizer.json;
// else GPT-2's encoder.json + vocab.bpe or vocab.json + merges.txt; else nullopt.
std::optional<TokenizerFiles> find_tokenizer_files(const std::filesystem::path& dir_or_file);

// find_tokenizer_files, or an Error naming the directory and the files looked for (for half of
// GPT-2's pair: Gpt2Tokenizer::load's error naming the missing file).
TokenizerFiles require_tokenizer_files(const std::filesystem::path& dir_or_file);

// Loads what require_tokenizer_files finds (a bad file: the loader's Error naming the file and
// the position).
std::shared_ptr<const Tokenizer> load_tokenizer(const std::filesystem::path& dir_or_file);

// `explicit_dir` when non-empty; else $NEXPLAIN_TOKENIZER_DIR when set and non-empty; else
// <directory of the executable>/../share/nexplain/gpt2-tokenizer; else ./data/gpt2-tokenizer.
// A directory counts when find_tokenizer_files finds something in it. Throws Error listing the
// places tried and pointing at scripts/fetch-tokenizer.sh.
std::filesystem::path locate_tokenizer_dir(const std::filesystem::path& explicit_dir = {});

}  // namespace nexplain
