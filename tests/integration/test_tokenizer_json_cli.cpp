// The commands that show tokens (inspect, export, explain) with a tokenizer that exists only as a
// HuggingFace tokenizer.json, as Llama, Pythia and Qwen2 ship theirs: no GPT-2 files anywhere
// near, the ids decoded by the tokenizer.json (a multi-byte vocabulary token, an added special
// token), given as a tokenizer directory or as the model directory holding it.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.hpp"
#include "tokenizer/byte_unicode.hpp"

using namespace nexplain;
using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::uint32_t kE = 256;    // "é": two bytes, one vocabulary token (merge of 0xC3 and 0xA9)
constexpr std::uint32_t kBot = 257;  // "<|begin_of_text|>": a special added token
constexpr std::uint32_t kVocab = 259;

// ids 0..255: the bytes; 256 "é"; 257, 258: special added tokens. GPT-2's files give these ids
// other texts (" t", "ĠĠĠ"... ), so the output tells which tokenizer decoded them.
std::string tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[gpt2_bytes_to_shown(std::string(1, static_cast<char>(b)))] = b;
  vocab[gpt2_bytes_to_shown("\xc3\xa9")] = kE;
  const json merges = json::array({json::array({gpt2_bytes_to_shown("\xc3"), gpt2_bytes_to_shown("\xa9")})});
  return json{{"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"added_tokens", json::array({{{"id", kBot}, {"content", "<|begin_of_text|>"}, {"special", true}},
                                            {{"id", kBot + 1}, {"content", "<|end_of_text|>"}, {"special", true}}})},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}}
      .dump();
}

class TokenizerJsonCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const auto model = *dir_ / "model";
    auto r = test::run_cli({"make-model", "--planted", "L0.N5=token:" + std::to_string(kBot) + ";L0.N9=token:" +
                            std::to_string(kE), "--out", model.string(), "--n-layer", "1", "--n-inner", "16",
                            "--vocab-size", std::to_string(kVocab)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // The tokenizer directory has tokenizer.json only; the model directory ships it too.
    fs::create_directories(*dir_ / "tok");
    test::write_file(*dir_ / "tok" / "tokenizer.json", tokenizer_json());
    fs::copy_file(*dir_ / "tok" / "tokenizer.json", model / "tokenizer.json");
    const auto seqs = test::write_random_sequences(*dir_ / "seqs.h5", 1500, 24, kVocab, 11, kBot);
    r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", records().string(),
                       "--top-k", "16"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path records() { return *dir_ / "records.h5"; }
  static std::string tok_dir() { return (*dir_ / "tok").string(); }
  static std::string model_dir() { return (*dir_ / "model").string(); }
  static inline test::TempDir* dir_ = nullptr;
};

}  // namespace

TEST_F(TokenizerJsonCli, InspectShowsTheTokenizerJsonTexts) {
  auto r = test::run_cli({"inspect", records().string(), "0/5", "--tokenizer", tok_dir(), "--top", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[[<|begin_of_text|>]]"));
  EXPECT_THAT(r.out, Not(HasSubstr(fmt::format("<{}>", kBot))));  // how a token without text shows
  r = test::run_cli({"inspect", records().string(), "0/9", "--tokenizer", model_dir(), "--top", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[[\xc3\xa9]]"));
  // A directory without any tokenizer is named, with what was looked for.
  fs::create_directories(*dir_ / "none");
  r = test::run_cli({"inspect", records().string(), "0/9", "--tokenizer", (*dir_ / "none").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr((*dir_ / "none").string() + ": no tokenizer files: looked for tokenizer.json"));
}

TEST_F(TokenizerJsonCli, ExportWritesTheTokenizerJsonTexts) {
  const auto out = *dir_ / "openai";
  const auto r = test::run_cli({"export", records().string(), "--out", out.string(), "--tokenizer", model_dir()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& [neuron, text] : {std::pair{5, "<|begin_of_text|>"}, {9, "\xc3\xa9"}}) {
    const auto j = json::parse(test::read_file(out / "0" / (std::to_string(neuron) + ".json")));
    const auto& top = j["most_positive_activation_records"][0];
    const auto& acts = top["activations"];
    std::size_t arg = 0;
    for (std::size_t t = 1; t < acts.size(); ++t)
      if (acts[t].get<double>() > acts[arg].get<double>()) arg = t;
    EXPECT_EQ(top["tokens"][arg], text) << "neuron " << neuron;
  }
}

TEST_F(TokenizerJsonCli, ExplainNamesTheTokenizerJsonTokens) {
  const auto out = *dir_ / "explain";
  const auto r = test::run_cli({"explain", "--records", records().string(), "--out", out.string(), "--tokenizer", tok_dir()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> results;
  std::ifstream f(out / "results.jsonl");
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) results.push_back(json::parse(line));
  ASSERT_EQ(results.size(), 16u);
  // The offline explainer quotes the token its neuron fires on, as the tokenizer.json spells it.
  EXPECT_THAT(results[5]["explanation"].get<std::string>(), HasSubstr("\"<|begin_of_text|>\""));
  EXPECT_THAT(results[9]["explanation"].get<std::string>(), HasSubstr("\"\xc3\xa9\""));
  EXPECT_GE(results[5]["scores"]["all"].get<double>(), 0.9);
  EXPECT_GE(results[9]["scores"]["all"].get<double>(), 0.9);
}
