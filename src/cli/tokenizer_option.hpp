#pragma once
// Where a subcommand finds the GPT-2 tokenizer files when --tokenizer is not given:
// $NEXPLAIN_TOKENIZER_DIR, then <exe>/../share/nexplain/gpt2-tokenizer, then ./data/gpt2-tokenizer.
#include <filesystem>
#include <optional>

#include "tokenizer/gpt2_tokenizer.hpp"

namespace nexplain::cli {

// The directory to use, or nullopt when none holds tokenizer files.
std::optional<std::filesystem::path> find_tokenizer_dir(const std::filesystem::path& given);
// Loads it, or throws Error saying where it looked and to run scripts/fetch-tokenizer.sh.
Gpt2Tokenizer load_tokenizer(const std::filesystem::path& given);

}  // namespace nexplain::cli
