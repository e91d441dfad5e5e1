#pragma once
// Where the GPT-2 tokenizer files are when the user does not say: the files are not shipped
// in the repository (scripts/fetch-tokenizer.sh downloads them), so commands look in a few
// conventional places and, failing that, say how to get them.
#include <filesystem>
#include <string>

namespace nexplain {

// `explicit_dir` when non-empty; else $NEXPLAIN_TOKENIZER_DIR when set and non-empty; else
// <directory of the executable>/../share/nexplain/gpt2-tokenizer; else ./data/gpt2-tokenizer.
// Throws Error listing the places tried and pointing at scripts/fetch-tokenizer.sh.
std::filesystem::path locate_tokenizer_dir(const std::filesystem::path& explicit_dir = {});

}  // namespace nexplain
