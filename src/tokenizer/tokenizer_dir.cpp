#include "tokenizer/tokenizer_dir.hpp"

#include <cstdlib>
#include <vector>

#include <fmt/ranges.h>

#include "core/error.hpp"
#include "tokenizer/gpt2_tokenizer.hpp"
#include "tokenizer/hf_tokenizer.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLookedFor = "tokenizer.json, or GPT-2's vocab.json + merges.txt or encoder.json + vocab.bpe";

}  // namespace

std::optional<TokenizerFiles> find_tokenizer_files(const fs::path& dir_or_file) {
  std::error_code ec;
  if (fs::is_regular_file(dir_or_file, ec) && dir_or_file.extension() == ".json")
    return TokenizerFiles{TokenizerFiles::Kind::tokenizer_json, dir_or_file};
  if (!fs::is_directory(dir_or_file, ec)) return std::nullopt;
  if (fs::is_regular_file(dir_or_file / "tokenizer.json", ec))
    return TokenizerFiles{TokenizerFiles::Kind::tokenizer_json, dir_or_file / "tokenizer.json"};
  if (Gpt2Tokenizer::has_files(dir_or_file)) return TokenizerFiles{TokenizerFiles::Kind::gpt2_pair, dir_or_file};
  return std::nullopt;
}

TokenizerFiles require_tokenizer_files(const fs::path& dir_or_file) {
  if (auto files = find_tokenizer_files(dir_or_file)) return *files;
  std::error_code ec;
  if (!fs::exists(dir_or_file, ec))
    fail("{}: tokenizer directory does not exist (expected a directory with {})", dir_or_file.string(), kLookedFor);
  if (!fs::is_directory(dir_or_file, ec))
    fail("{}: not a tokenizer directory or a .json tokenizer file (expected a directory with {})", dir_or_file.string(),
         kLookedFor);
  // Half of GPT-2's pair: its loader names the file that is missing.
  for (const char* name : {"vocab.json", "merges.txt", "encoder.json", "vocab.bpe"})
    if (fs::exists(dir_or_file / name, ec)) Gpt2Tokenizer::load(dir_or_file);
  fail("{}: no tokenizer files: looked for {}", dir_or_file.string(), kLookedFor);
}

std::shared_ptr<const Tokenizer> load_tokenizer(const fs::path& dir_or_file) {
  const TokenizerFiles files = require_tokenizer_files(dir_or_file);
  if (files.kind == TokenizerFiles::Kind::tokenizer_json)
    return std::make_shared<const HfTokenizer>(HfTokenizer::load(files.path));
  return std::make_shared<const Gpt2Tokenizer>(Gpt2Tokenizer::load(files.path));
}

fs::path locate_tokenizer_dir(const fs::path& explicit_dir) {
  if (!explicit_dir.empty()) return explicit_dir;  // load_tokenizer() reports what is wrong with it
  if (const char* env = std::getenv("NEXPLAIN_TOKENIZER_DIR"); env && *env) {
    if (!find_tokenizer_files(env))
      fail("NEXPLAIN_TOKENIZER_DIR={}: no tokenizer files there ({}); run scripts/fetch-tokenizer.sh {} to download "
           "GPT-2's",
           env, kLookedFor, env);
    return env;
  }
  std::vector<std::string> tried;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = (exe.parent_path() / ".." / "share" / "nexplain" / "gpt2-tokenizer").lexically_normal();
    if (find_tokenizer_files(installed)) return installed;
    tried.push_back(installed.string());
  }
  const fs::path local = fs::current_path(ec) / "data" / "gpt2-tokenizer";
  if (find_tokenizer_files(local)) return local;
  tried.push_back(local.string());
  fail("no GPT-2 tokenizer found (looked in {}; NEXPLAIN_TOKENIZER_DIR is not set): run scripts/fetch-tokenizer.sh to "
       "download it into data/gpt2-tokenizer, or pass --tokenizer DIR",
       fmt::join(tried, ", "));
}

}  // namespace nexplain
