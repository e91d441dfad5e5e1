// The collect stage end to end through the real CLI: determinism across batch sizes and thread
// counts, planted ground truth on a real corpus, bad input, the h5py view and the exports.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/h5file.hpp"
#include "io/records_file.hpp"
#include "io/sequences.hpp"
#include "test_support.hpp"
#ifdef NEXPLAIN_HAVE_CUDA
#include "device_info.hpp"
#endif

using namespace nexplain;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

// A small planted model (2 layers x 256 neurons, GPT-2 vocabulary) made by the CLI.
fs::path make_planted(const test::TempDir& dir, const std::string& spec, const std::vector<std::string>& extra = {}) {
  const auto model = dir / "model";
  std::vector<std::string> args{"make-model", "--planted", spec, "--out", model.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = test::run_cli(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return model;
}

fs::path make_sequences(const test::TempDir& dir, std::uint64_t n, int T, std::uint32_t vocab, std::uint32_t seed,
                        const std::string& name = "seqs.h5") {
  return test::write_random_sequences(dir / name, n, T, vocab, seed);
}

bool exists_with_prefix(const fs::path& dir, const std::string& prefix) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(prefix)) return true;
  return false;
}

}  // namespace

TEST(CollectCli, RecordsDoNotDependOnBatchSizeOrThreads) {
  test::TempDir dir;
  const auto model = make_planted(dir, "L0.N5=token:464;L1.N17=position:3");
  const auto seqs = make_sequences(dir, 150, 32, 50257, 7);
  std::map<std::string, std::vector<std::uint8_t>> first;
  for (auto [batch, threads] : {std::pair{1, 1}, {7, 2}, {64, 1}, {64, 2}}) {
    const auto out = dir / ("rec-b" + std::to_string(batch) + "-t" + std::to_string(threads) + ".h5");
    auto r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", out.string(),
                            "--batch", std::to_string(batch), "--threads", std::to_string(threads), "--top-k", "8",
                            "--random", "6", "--quantile-samples", "2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto ds = test::hdf5_dataset_bytes(out);
    ASSERT_GT(ds.size(), 20u);
    if (first.empty()) {
      first = ds;
      continue;
    }
    ASSERT_EQ(ds.size(), first.size());
    for (const auto& [name, bytes] : first) EXPECT_TRUE(ds[name] == bytes) << name << " differs at batch " << batch << ", threads " << threads;
  }
}

TEST(CollectCli, PlantedDetectorsOnTinyShakespeare) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  // 464 = "The", 11 = ",", 198 = "\n"; a position detector on positions 0-1.
  const auto model = make_planted(dir, "L0.N5=token:464;L1.N17=tokens:11,198;L0.N3=position:0-1;L1.N40=token:314");
  const auto seqs = dir / "shakespeare.h5";
  auto r = test::run_cli({"tokenize", (shared / "data/corpora/tinyshakespeare.txt").string(), "--out", seqs.string(),
                          "--tokenizer", (shared / "data/gpt2-tokenizer").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rec = dir / "rec.h5";
  r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", rec.string(), "--batch", "64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RecordsFile rf(rec);
  EXPECT_EQ(rf.meta().n_excerpts, 338025u / 64u);
  struct Planted {
    int layer;
    std::uint32_t neuron;
    std::vector<std::uint32_t> tokens;
  };
  for (const auto& p : {Planted{0, 5, {464}}, Planted{1, 17, {11, 198}}, Planted{1, 40, {314}}}) {
    const auto nr = rf.neuron(p.layer, p.neuron);
    ASSERT_EQ(nr.top.size(), 20u);
    for (const auto& e : nr.top) {
      const auto tokens = rf.excerpt_tokens(e.excerpt_id);
      const auto arg = static_cast<std::size_t>(std::max_element(e.acts.begin(), e.acts.end()) - e.acts.begin());
      EXPECT_THAT(p.tokens, ::testing::Contains(tokens[arg]))
          << "layer " << p.layer << " neuron " << p.neuron << " excerpt " << e.excerpt_id << " argmax token " << tokens[arg];
      EXPECT_GT(e.max, 5.0f);
    }
    // A random excerpt's activation is high exactly where the token is.
    for (const auto& e : nr.random) {
      const auto tokens = rf.excerpt_tokens(e.excerpt_id);
      for (std::size_t t = 0; t < tokens.size(); ++t) {
        const bool on = std::find(p.tokens.begin(), p.tokens.end(), tokens[t]) != p.tokens.end();
        if (on) EXPECT_GT(e.acts[t], 2.0f) << "excerpt " << e.excerpt_id << " position " << t;
        else EXPECT_LT(e.acts[t], 1.0f) << "excerpt " << e.excerpt_id << " position " << t;
      }
    }
  }
  const auto pos = rf.neuron(0, 3);
  for (const auto& e : pos.top) {
    const auto arg = std::max_element(e.acts.begin(), e.acts.end()) - e.acts.begin();
    EXPECT_LE(arg, 1) << "position detector peaks at position " << arg;
  }
  // The inspect view marks the max token.
  r = test::run_cli({"inspect", rec.string(), "0/5", "--tokenizer", (shared / "data/gpt2-tokenizer").string(), "--top", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("[[The]]"));
}

TEST(CollectCli, ExportsOpenAiNeuronRecords) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto model = make_planted(dir, "L0.N5=token:464", {"--n-layer", "1", "--n-inner", "16"});
  const auto seqs = make_sequences(dir, 60, 16, 50257, 3);
  const auto rec = dir / "rec.h5";
  auto r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", rec.string(), "--top-k", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = dir / "openai";
  r = test::run_cli({"export", rec.string(), "--format", "openai-json", "--out", out.string(), "--tokenizer",
                     (shared / "data/gpt2-tokenizer").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(out)) files += e.is_regular_file();
  EXPECT_EQ(files, 16);
  const auto j = nlohmann::json::parse(test::read_file(out / "0" / "5.json"));
  EXPECT_EQ(j["neuron_id"]["layer_index"], 0);
  EXPECT_EQ(j["neuron_id"]["neuron_index"], 5);
  ASSERT_EQ(j["most_positive_activation_records"].size(), 4u);
  const auto& top = j["most_positive_activation_records"][0];
  EXPECT_EQ(top["tokens"].size(), 16u);
  EXPECT_EQ(top["activations"].size(), 16u);
  bool has_the = false;
  for (const auto& t : top["tokens"]) has_the |= t == "The";
  EXPECT_TRUE(has_the);
  for (const char* k : {"random_sample", "random_sample_by_quantile", "quantile_boundaries", "mean", "variance", "skewness", "kurtosis"})
    EXPECT_TRUE(j.contains(k)) << k;
  // Exporting again onto an existing directory is refused.
  r = test::run_cli({"export", rec.string(), "--out", out.string(), "--tokenizer", (shared / "data/gpt2-tokenizer").string()});
  EXPECT_NE(r.exit_code, 0);
}

TEST(CollectCli, RecordsAreReadableWithH5py) {
  if (!fs::exists("/usr/bin/python3") || test::run_process({"/usr/bin/python3", "-c", "import h5py"}).exit_code != 0)
    GTEST_SKIP() << "python3-h5py is not installed";
  test::TempDir dir;
  const auto model = make_planted(dir, "L0.N5=token:464", {"--n-layer", "1", "--n-inner", "16"});
  const auto seqs = make_sequences(dir, 40, 16, 50257, 5);
  const auto rec = dir / "rec.h5";
  ASSERT_EQ(test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", rec.string(), "--top-k", "3"}).exit_code, 0);
  // The snippet in docs/FORMAT.md.
  const std::string py =
      "import h5py, sys\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "L = f['layers/0']\n"
      "ids, acts = L['topk_ids'][5], L['topk_acts'][5]\n"
      "tokens = dict(zip(f['excerpts/ids'][:], f['excerpts/tokens'][:]))[ids[0]]\n"
      "print(f.attrs['format'], int(f.attrs['K']), acts.shape, len(tokens), float(acts[0].max()))\n";
  auto r = test::run_process({"/usr/bin/python3", "-c", py, rec.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("nexplain-records 3 (3, 16) 16"));
}

// ------------------------------------------------------------------ bad input

class CollectBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = make_planted(dir_, "L0.N5=token:464", {"--n-layer", "2", "--n-inner", "16"});
    seqs_ = make_sequences(dir_, 20, 16, 50257, 1);
  }
  // Runs collect with extra args; expects failure with `message`, and no output left behind.
  void expect_failure(std::vector<std::string> args, const std::string& message, const fs::path& out_dir = {},
                      const fs::path& corpus = {}) {
    const fs::path out = (out_dir.empty() ? dir_.path() : out_dir) / "rec.h5";
    std::vector<std::string> all{"collect", "--model", model_.string(), "--corpus", (corpus.empty() ? seqs_ : corpus).string(),
                                 "--out", out.string()};
    all.insert(all.end(), args.begin(), args.end());
    auto r = test::run_cli(all);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_FALSE(fs::exists(out));
    if (fs::exists(out.parent_path())) {
      EXPECT_FALSE(exists_with_prefix(out.parent_path(), "rec.h5.partial"));
    }
  }
  test::TempDir dir_;
  fs::path model_, seqs_;
};

TEST_F(CollectBadInput, TokenIdsBeyondTheVocabulary) {
  const auto small = make_sequences(dir_, 20, 16, 60000, 2, "big-ids.h5");
  expect_failure({}, "is not below the model's vocab_size 50257", {}, small);
}

TEST_F(CollectBadInput, LayersOutOfRange) { expect_failure({"--layers", "0-5"}, "layer 5 is out of range: the model has 2 layers"); }

TEST_F(CollectBadInput, TopKLargerThanTheCorpus) { expect_failure({"--top-k", "21"}, "--top-k 21 is larger than the number of excerpts (20)"); }

TEST_F(CollectBadInput, UnwritableOutput) { expect_failure({}, "does not exist", dir_ / "no" / "such" / "dir"); }

TEST_F(CollectBadInput, ModelTensorsDoNotMatchConfig) {
  auto cfg = nlohmann::json::parse(test::read_file(model_ / "config.json"));
  cfg["n_inner"] = 32;
  test::write_file(model_ / "config.json", cfg.dump());
  expect_failure({}, "mlp.c_fc.weight");
}

TEST_F(CollectBadInput, NotASequencesFile) {
  expect_failure({}, "config.json", {}, model_ / "config.json");
}

// Other families collect on either backend: --device cuda runs a Llama on a GPU (without one it
// fails as for GPT-2, before any work) and --device auto uses the GPU when there is one.
TEST(CollectCli, LlamaCollectsOnEveryBackend) {
  test::TempDir dir;
  const auto model = make_planted(dir, "L1.N5=token:464",
                                  {"--family", "llama", "--n-layer", "2", "--n-inner", "32", "--n-kv-head", "2",
                                   "--vocab-size", "1000"});
  ASSERT_EQ(nlohmann::json::parse(test::read_file(model / "config.json"))["model_type"], "llama");
  const auto seqs = make_sequences(dir, 120, 16, 1000, 5);
  std::vector<std::string> base{"collect", "--model", model.string(), "--corpus", seqs.string(), "--top-k", "8",
                                "--threads", "1"};
  auto args = [&](const std::string& out, const std::string& device) {
    auto a = base;
    a.insert(a.end(), {"--out", (dir / out).string(), "--device", device});
    return a;
  };
  bool have_gpu = false;
#ifdef NEXPLAIN_HAVE_CUDA
  have_gpu = cuda::query_device().available;
#endif
  auto r = test::run_cli(args("cuda.h5", "cuda"));
  if (have_gpu) {
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(RecordsFile(dir / "cuda.h5").meta().backend, "cuda:fp32");
  } else {
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("--device cuda: no CUDA device"));
    EXPECT_FALSE(fs::exists(dir / "cuda.h5"));
  }

  r = test::run_cli(args("auto.h5", "auto"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli(args("cpu.h5", "cpu"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RecordsFile(dir / "auto.h5").meta().backend, have_gpu ? "cuda:fp32" : "cpu:fp32");
  if (!have_gpu) {
    EXPECT_TRUE(test::hdf5_dataset_bytes(dir / "auto.h5") == test::hdf5_dataset_bytes(dir / "cpu.h5"));
  }
  // The planted neuron is found by every backend that ran: its top excerpts peak at 10 on token
  // 464 (or nothing planted appears in the random corpus and the neuron stays 0: exactly on the
  // CPU, within the device forward's rounding on the GPU).
  for (const char* file : {"cpu.h5", "cuda.h5"}) {
    if (!fs::exists(dir / file)) continue;
    SCOPED_TRACE(file);
    const RecordsFile rf(dir / file);
    EXPECT_EQ(rf.meta().model["config"]["model_type"], "llama");
    const auto rec = rf.neuron(1, 5);
    ASSERT_FALSE(rec.top.empty());
    const float zero_slack = std::string(file) == "cpu.h5" ? 0.0f : 1e-3f;
    for (const auto& e : rec.top) {
      const auto toks = rf.excerpt_tokens(e.excerpt_id);
      const bool has = std::find(toks.begin(), toks.end(), 464u) != toks.end();
      if (has) EXPECT_NEAR(e.max, 10.0f, 0.5f) << "excerpt " << e.excerpt_id;
      else EXPECT_LE(std::fabs(e.max), zero_slack) << "excerpt " << e.excerpt_id;
    }
  }
}

TEST(MakeModelCli, UnsupportedFamiliesAndPositionFeaturesAreRefused) {
  test::TempDir dir;
  auto r = test::run_cli({"make-model", "--family", "gptj", "--planted", "", "--out", (dir / "m").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("family 'gptj' has no planted-model builder (gpt2, llama, qwen2, gpt_neox)"));
  r = test::run_cli({"make-model", "--family", "gpt_neox", "--planted", "L0.N3=position:0-1", "--out", (dir / "m").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("RoPE"));
  r = test::run_cli({"make-model", "--family", "llama", "--planted", "L0.N3=position:0-1", "--out", (dir / "m").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("RoPE"));
  r = test::run_cli({"make-model", "--family", "gpt2", "--n-kv-head", "2", "--out", (dir / "m").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("n_kv_head 2 must equal n_head 4"));
}
