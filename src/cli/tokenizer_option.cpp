#include "cli/tokenizer_option.hpp"

#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "core/error.hpp"

namespace nexplain::cli {

namespace fs = std::filesystem;

namespace {
std::vector<fs::path> candidates(const fs::path& given) {
  if (!given.empty()) return {given};
  std::vector<fs::path> c;
  if (const char* env = std::getenv("NEXPLAIN_TOKENIZER_DIR")) c.emplace_back(env);
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) c.push_back(exe.parent_path().parent_path() / "share/nexplain/gpt2-tokenizer");
  c.emplace_back("data/gpt2-tokenizer");
  return c;
}
}  // namespace

std::optional<fs::path> find_tokenizer_dir(const fs::path& given) {
  for (const auto& d : candidates(given))
    if (Gpt2Tokenizer::has_files(d)) return d;
  return std::nullopt;
}

Gpt2Tokenizer load_tokenizer(const fs::path& given) {
  if (auto d = find_tokenizer_dir(given)) return Gpt2Tokenizer::load(*d);
  std::string where;
  for (const auto& d : candidates(given)) where += (where.empty() ? "" : ", ") + d.string();
  fail("no GPT-2 tokenizer files (encoder.json + vocab.bpe, or vocab.json + merges.txt) in {}; "
       "run scripts/fetch-tokenizer.sh or pass --tokenizer DIR",
       where);
}

}  // namespace nexplain::cli
