#include "tokenizer/tokenizer_dir.hpp"

#include <cstdlib>
#include <vector>

#include <fmt/ranges.h>

#include "core/error.hpp"
#include "tokenizer/gpt2_tokenizer.hpp"

namespace nexplain {

namespace fs = std::filesystem;

fs::path locate_tokenizer_dir(const fs::path& explicit_dir) {
  if (!explicit_dir.empty()) return explicit_dir;  // load() reports what is wrong with it
  if (const char* env = std::getenv("NEXPLAIN_TOKENIZER_DIR"); env && *env) {
    if (!Gpt2Tokenizer::has_files(env))
      fail("NEXPLAIN_TOKENIZER_DIR={}: no GPT-2 tokenizer files there (encoder.json + vocab.bpe, or vocab.json + "
           "merges.txt); run scripts/fetch-tokenizer.sh {} to download them",
           env, env);
    return env;
  }
  std::vector<std::string> tried;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = (exe.parent_path() / ".." / "share" / "nexplain" / "gpt2-tokenizer").lexically_normal();
    if (Gpt2Tokenizer::has_files(installed)) return installed;
    tried.push_back(installed.string());
  }
  const fs::path local = fs::current_path(ec) / "data" / "gpt2-tokenizer";
  if (Gpt2Tokenizer::has_files(local)) return local;
  tried.push_back(local.string());
  fail("no GPT-2 tokenizer found (looked in {}; NEXPLAIN_TOKENIZER_DIR is not set): run scripts/fetch-tokenizer.sh to "
       "download it into data/gpt2-tokenizer, or pass --tokenizer DIR",
       fmt::join(tried, ", "));
}

}  // namespace nexplain
