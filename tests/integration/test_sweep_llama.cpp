// A planted Llama and a planted GPT-NeoX through `nexplain sweep`, end to end: make-model
// (family llama / gpt_neox) -> tokenize (GPT-2's tokenizer; the planted model has GPT-2's
// vocabulary size) -> collect on TransformerCpu -> offline explain/simulate/score. The planted
// neurons must be recovered (their top excerpts peak at the planted tokens) and explained by
// those tokens with high scores, as for GPT-2. The NeoX sweep reads GPT-2's tokenizer as a
// tokenizer.json only, as Pythia ships it, for both the tokenize and the explain stage.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/records_file.hpp"
#include "test_support.hpp"

using namespace nexplain;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// The position of the largest activation (the first one on ties).
std::size_t argmax(const std::vector<float>& a) {
  return static_cast<std::size_t>(std::max_element(a.begin(), a.end()) - a.begin());
}

// Runs the sweep for `family` (with `model_lines` added to [model]) and checks the model, the
// recovered neurons, their explanations and scores and the summary.
void check_planted_sweep(const fs::path& shared, const std::string& family, const std::string& model_lines,
                         const fs::path& tokenizer) {
  test::TempDir dir;
  const auto out = dir / "sweep";
  // 464 = "The", 11 = ",", 13 = "." in GPT-2's vocabulary; layer 1 reads a channel that layer 0's
  // blocks never write, so it detects the same tokens one block later.
  const std::string spec = "L0.N5=token:464;L1.N17=tokens:11,13";
  test::write_file(dir / "sweep.toml",
                   "[sweep]\nname = \"" + family + "\"\n"
                   "[model]\nfamily = \"" + family + "\"\nplanted = \"" + spec + "\"\n"
                   "n_layer = 2\nn_embd = 64\nn_head = 4\n" + model_lines + "n_inner = 32\nseed = 3\n"
                   "[corpus]\ninputs = [\"" + (shared / "data/corpora/tinyshakespeare.txt").string() + "\"]\n"
                   "format = \"txt\"\nseq_len = 32\n"
                   "[collect]\ntop_k = 20\nrandom = 20\nbatch = 32\nmax_excerpts = 1500\n"
                   "[explain]\nmode = \"offline\"\n");
  const auto r = test::run_cli({"sweep", (dir / "sweep.toml").string(), "--out", out.string(), "--tokenizer",
                                tokenizer.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The model is of the family, with its ground truth.
  const auto config = json::parse(test::read_file(out / "model" / "config.json"));
  EXPECT_EQ(config["model_type"], family);
  if (family == "llama") {
    EXPECT_EQ(config["num_key_value_heads"], 2);
  }
  const auto truth = json::parse(test::read_file(out / "model" / "planted.json"));
  ASSERT_EQ(truth["neurons"].size(), 2u);

  // Recovered: every top excerpt of a planted neuron peaks on a planted token.
  const RecordsFile rf(out / "records.h5");
  EXPECT_EQ(rf.meta().model["config"]["model_type"], family);
  EXPECT_EQ(rf.n_neurons(0), 32u);
  const std::vector<std::pair<int, std::vector<std::uint32_t>>> planted = {{5, {464}}, {17, {11, 13}}};
  for (int layer : {0, 1}) {
    const auto& [neuron, tokens] = planted[static_cast<std::size_t>(layer)];
    const auto rec = rf.neuron(layer, static_cast<std::uint32_t>(neuron));
    ASSERT_EQ(rec.top.size(), 20u) << "L" << layer << ".N" << neuron;
    for (const auto& e : rec.top) {
      EXPECT_GT(e.max, 3.0f) << "L" << layer << ".N" << neuron << " excerpt " << e.excerpt_id;
      const auto t = rf.excerpt_tokens(e.excerpt_id)[argmax(e.acts)];
      EXPECT_TRUE(std::find(tokens.begin(), tokens.end(), t) != tokens.end())
          << "L" << layer << ".N" << neuron << " excerpt " << e.excerpt_id << " peaks on token " << t;
    }
    // An ordinary neuron of the same layer stays far below the planted value.
    EXPECT_LT(rf.neuron(layer, 0).top.front().max, 3.0f) << "layer " << layer;
  }

  // Scored: the offline explainer names the tokens and the simulation matches.
  const auto results = read_jsonl(out / "explain" / "results.jsonl");
  ASSERT_EQ(results.size(), 64u);
  int seen = 0;
  for (const auto& res : results) {
    const int layer = res["layer"], neuron = res["neuron"];
    if (layer == 0 && neuron == 5) {
      EXPECT_THAT(res["explanation"].get<std::string>(), HasSubstr("\"The\""));
      EXPECT_GE(res["scores"]["all"].get<double>(), 0.9);
      ++seen;
    }
    if (layer == 1 && neuron == 17) {
      EXPECT_THAT(res["explanation"].get<std::string>(), HasSubstr("\",\""));
      EXPECT_GE(res["scores"]["all"].get<double>(), 0.9);
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2);
  // The summary sets each planted neuron's ground truth next to its explanation.
  const auto summary = test::read_file(out / "sweep-summary.txt");
  EXPECT_THAT(summary, HasSubstr("planted neurons"));
  EXPECT_THAT(summary, HasSubstr("0/5"));
  EXPECT_THAT(summary, HasSubstr("1/17"));
}

}  // namespace

TEST(SweepLlama, PlantedNeuronsAreRecoveredAndScored) {
  const auto shared = test::shared_dir();
  if (shared.empty() || !fs::exists(shared / "data/gpt2-tokenizer/encoder.json"))
    GTEST_SKIP() << "../shared (corpus and GPT-2 tokenizer) is absent: set NEXPLAIN_SHARED_DIR to run this test";
  check_planted_sweep(shared, "llama", "n_kv_head = 2\n", shared / "data/gpt2-tokenizer");
}

// GPT-NeoX: LayerNorm with bias, parallel residual, partial rotary, plain GELU MLP; the tokenizer
// a tokenizer.json alone.
TEST(SweepNeox, PlantedNeuronsAreRecoveredAndScored) {
  const auto shared = test::shared_dir();
  if (shared.empty() || !fs::exists(shared / "data/gpt2-tokenizer/encoder.json"))
    GTEST_SKIP() << "../shared (corpus and GPT-2 tokenizer) is absent: set NEXPLAIN_SHARED_DIR to run this test";
  test::TempDir tok;
  test::write_file(tok / "tokenizer.json", test::gpt2_tokenizer_json(shared / "data/gpt2-tokenizer"));
  check_planted_sweep(shared, "gpt_neox", "", tok.path());
}
