#pragma once
// Helpers shared by the tests: where ../shared is (skip when absent), scratch directories, and
// running the nexplain CLI as a real process.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace nexplain::test {

// The shared fixtures directory, or "" when absent (env NEXPLAIN_SHARED_DIR overrides).
std::filesystem::path shared_dir();

// Use as: NEXPLAIN_REQUIRE_SHARED(path) -> skips the test, saying why, when ../shared is absent.
#define NEXPLAIN_REQUIRE_SHARED(var)                                                            \
  const std::filesystem::path var = ::nexplain::test::shared_dir();                            \
  if (var.empty()) GTEST_SKIP() << "../shared (fixtures and corpora) is absent: set "           \
                                   "NEXPLAIN_SHARED_DIR to run this test"

// A fresh empty directory for this test, removed at the end unless NEXPLAIN_KEEP_TMP is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs the nexplain binary with `args` (no shell), capturing stdout and stderr.
CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {});
// Runs any program (argv[0] is looked up in PATH).
CliResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

// A sequences file of n random excerpts of T tokens from [0, vocab), about one token in 50
// replaced by `planted_token` (what planted detectors fire on); written with the library's
// writer, so no tokenizer is needed.
std::filesystem::path write_random_sequences(const std::filesystem::path& path, std::uint64_t n, int T,
                                             std::uint32_t vocab, std::uint32_t seed,
                                             std::uint32_t planted_token = 464);

// Every dataset of an HDF5 file as its stored bytes, by path: for byte-for-byte comparisons of
// records files (attributes, which hold command lines, are not compared).
std::map<std::string, std::vector<std::uint8_t>> hdf5_dataset_bytes(const std::filesystem::path& file);

// The message of the nexplain::Error that f throws, or "(no error)".
std::string errmsg(const std::function<void()>& f);
// EXPECT_HAS(errmsg(...), "what the message must say")
#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg)

std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& data);

// GPT-2's tokenizer.json as HF publishes it for openai-community/gpt2, rebuilt from OpenAI's
// encoder.json + vocab.bpe in `gpt2_dir`: ByteLevel pre-tokenizer with GPT-2's regex, the same
// vocabulary, the merges in file order (as "a b" strings or, with `array_merges`, as ["a", "b"]
// pairs, as tokenizers >= 0.20 writes them), <|endoftext|> as a special added token. The JSON text.
std::string gpt2_tokenizer_json(const std::filesystem::path& gpt2_dir, bool array_merges = false);

}  // namespace nexplain::test
