// `nexplain tokenize` as a real process: the shakespeare corpus end to end, provenance
// attributes, failing runs leave no output, and the output does not depend on --threads.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/h5file.hpp"
#include "io/sequences.hpp"
#include "test_support.hpp"

using namespace nexplain;
namespace fs = std::filesystem;

namespace {

std::vector<std::uint32_t> all_tokens(const fs::path& path) {
  SequencesReader r(path);
  std::vector<std::uint32_t> out(r.size() * static_cast<std::uint64_t>(r.seq_len()));
  r.read(0, r.size(), out.data());
  return out;
}

bool no_partial_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".partial-") != std::string::npos) return false;
  return true;
}

}  // namespace

TEST(TokenizeCli, ShakespeareEndToEnd) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto corpus = shared / "data" / "corpora" / "tinyshakespeare.txt";
  const auto out = dir / "seqs.h5";
  const auto r = test::run_cli({"tokenize", corpus.string(), "--out", out.string(), "--tokenizer",
                                (shared / "data" / "gpt2-tokenizer").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sequences: 5281 x 64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dropped:   41"), std::string::npos) << r.out;

  SequencesReader seqs(out);
  EXPECT_EQ(seqs.size(), 338025u / 64);
  EXPECT_EQ(seqs.seq_len(), 64);
  EXPECT_EQ(seqs.vocab_size(), 50257u);
  EXPECT_EQ(seqs.eot_id(), 50256u);
  std::vector<std::uint32_t> first(64);
  seqs.read(0, 1, first.data());
  EXPECT_EQ(first[0], 5962u);  // "First"
  const auto& prov = seqs.provenance();
  EXPECT_EQ(prov.at("tokens_total"), 338025);
  EXPECT_EQ(prov.at("tokens_dropped"), 41);
  EXPECT_EQ(prov.at("documents"), 1);
  ASSERT_EQ(prov.at("sources").size(), 1u);
  EXPECT_EQ(prov["sources"][0]["bytes"], fs::file_size(corpus));
  EXPECT_EQ(prov["sources"][0]["format"], "txt");
  EXPECT_EQ(prov["sources"][0]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(prov["tokenizer"]["vocab_sha256"], "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783");
  EXPECT_EQ(prov["tokenizer"]["merges_sha256"], "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5");
  EXPECT_NE(prov.at("command_line").get<std::string>().find("tokenize"), std::string::npos);
  EXPECT_EQ(prov.at("nexplain_version").get<std::string>().empty(), false);

  // The attributes h5py users see, read through the generic HDF5 layer.
  const auto f = h5::File::open_read(out);
  EXPECT_EQ(f.attr_string("format"), "nexplain-sequences");
  EXPECT_EQ(f.attr_int("format_version"), 1);
  EXPECT_EQ(f.attr_int("seq_len"), 64);
  EXPECT_EQ(f.attr_int("n_sequences"), 5281);
  EXPECT_EQ(f.attr_int("vocab_size"), 50257);
  EXPECT_EQ(f.attr_int("eot_id"), 50256);
  EXPECT_EQ(f.attr_string("tokenizer_sha256"), seqs.tokenizer_sha256());
  EXPECT_EQ(f.attr_string("tokenizer_sha256"), prov["tokenizer"]["sha256"]);
  const auto ds = f.open_dataset("tokens");
  EXPECT_EQ(ds.shape(), (std::vector<hsize_t>{5281, 64}));
  hid_t type = H5Dget_type(ds.id());
  EXPECT_EQ(H5Tget_size(type), 2u);  // uint16 for GPT-2's 50257 tokens
  H5Tclose(type);
}

TEST(TokenizeCli, FailingRunLeavesNoOutput) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  test::write_file(dir / "bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": oops}\n");
  const auto out = dir / "seqs.h5";
  auto r = test::run_cli({"tokenize", (dir / "bad.jsonl").string(), "--out", out.string(), "--tokenizer",
                          (shared / "data" / "gpt2-tokenizer").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad.jsonl:2: invalid JSON"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(no_partial_files(dir.path()));

  // An existing output is not replaced by a failed run.
  test::write_file(out, "previous");
  r = test::run_cli({"tokenize", (dir / "bad.jsonl").string(), "--out", out.string(), "--tokenizer",
                     (shared / "data" / "gpt2-tokenizer").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(test::read_file(out), "previous");
  EXPECT_TRUE(no_partial_files(dir.path()));
}

TEST(TokenizeCli, ThreadCountDoesNotChangeTheOutput) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto corpora = shared / "data" / "corpora";
  // Wikitext cut into documents at blank-line separators, plus shakespeare as one document.
  std::vector<std::vector<std::uint32_t>> results;
  for (const char* threads : {"1", "2"}) {
    const auto out = dir / (std::string("t") + threads + ".h5");
    const auto r = test::run_cli({"tokenize", (corpora / "wikitext2-valid.txt").string(), (corpora / "tinyshakespeare.txt").string(),
                                  "--separator", "\\n \\n", "--out", out.string(), "--threads", threads, "--tokenizer",
                                  (shared / "data" / "gpt2-tokenizer").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    results.push_back(all_tokens(out));
    EXPECT_EQ(SequencesReader(out).provenance().at("separator"), "\n \n");
  }
  EXPECT_GT(results[0].size(), 500000u);
  EXPECT_TRUE(results[0] == results[1]);
}

TEST(TokenizeCli, MissingTokenizerSaysHowToGetIt) {
  test::TempDir dir;
  test::write_file(dir / "a.txt", "some text");
  // Only meaningful when no default location holds a tokenizer (the test's working directory).
  if (fs::exists("data/gpt2-tokenizer")) GTEST_SKIP() << "./data/gpt2-tokenizer exists here";
  const auto r = test::run_cli({"tokenize", (dir / "a.txt").string(), "--out", (dir / "o.h5").string()},
                               {"NEXPLAIN_TOKENIZER_DIR="});
  if (r.exit_code == 0) GTEST_SKIP() << "a tokenizer is installed next to the binary";
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("scripts/fetch-tokenizer.sh"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "o.h5"));
}

TEST(TokenizeCli, UsageErrors) {
  test::TempDir dir;
  test::write_file(dir / "a.txt", "some text");
  auto r = test::run_cli({"tokenize", (dir / "a.txt").string(), "--out", (dir / "o.h5").string(), "--format", "csv"});
  EXPECT_EQ(r.exit_code, 2);
  r = test::run_cli({"tokenize", (dir / "a.txt").string()});
  EXPECT_EQ(r.exit_code, 2);  // --out is required
  r = test::run_cli({"tokenize", (dir / "missing.txt").string(), "--out", (dir / "o.h5").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.txt: no such file"), std::string::npos) << r.err;
}

namespace {

// GPT-2's tokenizer as a HF tokenizer.json (what openai-community/gpt2 publishes), rebuilt from
// OpenAI's encoder.json + vocab.bpe: the same tokens through the other loader.
void write_gpt2_tokenizer_json(const fs::path& gpt2_dir, const fs::path& out_dir) {
  fs::create_directories(out_dir);
  test::write_file(out_dir / "tokenizer.json", test::gpt2_tokenizer_json(gpt2_dir));
}

}  // namespace

// `--tokenizer DIR` with a tokenizer.json (no GPT-2 files): the same windows as GPT-2's own files
// give, the tokenizer.json named in the provenance, documents joined with the eos token.
TEST(TokenizeCli, HfTokenizerJsonDirectory) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto gpt2 = shared / "data" / "gpt2-tokenizer";
  const auto hf = dir / "hf";
  write_gpt2_tokenizer_json(gpt2, hf);
  test::write_file(hf / "tokenizer_config.json", R"({"eos_token": {"content": "<|endoftext|>", "special": true}})");
  std::string text;
  for (int i = 0; i < 40; ++i) text += "{\"text\": \"Document " + std::to_string(i) + ": the river rose, and the town watched.\"}\n";
  test::write_file(dir / "docs.jsonl", text);
  auto tokenize = [&](const fs::path& tok, const std::string& out, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a{"tokenize", (dir / "docs.jsonl").string(), "--out", (dir / out).string(), "--seq-len",
                               "16", "--tokenizer", tok.string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return test::run_cli(a);
  };
  auto r = tokenize(gpt2, "gpt2.h5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = tokenize(hf, "hf.h5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("documents joined with <|endoftext|>"), std::string::npos) << r.out;
  const auto a = test::hdf5_dataset_bytes(dir / "gpt2.h5"), b = test::hdf5_dataset_bytes(dir / "hf.h5");
  ASSERT_TRUE(a.count("tokens") && b.count("tokens"));
  EXPECT_GT(a.at("tokens").size(), 100u);
  EXPECT_TRUE(a.at("tokens") == b.at("tokens")) << "tokenizer.json and GPT-2's files tokenize differently";
  SequencesReader seqs(dir / "hf.h5");
  EXPECT_EQ(seqs.eot_id(), 50256u);
  EXPECT_EQ(seqs.vocab_size(), 50257u);
  EXPECT_EQ(seqs.provenance()["tokenizer"]["name"], "tokenizer.json");
  EXPECT_EQ(seqs.provenance()["tokenizer"]["eot_token"], "<|endoftext|>");
  EXPECT_EQ(seqs.provenance()["documents"], 40);
  // The tokenizer.json file itself works too; an end-of-text token it lacks is named.
  r = tokenize(hf / "tokenizer.json", "file.h5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(test::hdf5_dataset_bytes(dir / "file.h5").at("tokens") == a.at("tokens"));
  r = tokenize(hf, "bad.h5", {"--eot-token", "</s>"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find((hf / "tokenizer.json").string() + ": no token '</s>' to put between documents"),
            std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "bad.h5"));
}
