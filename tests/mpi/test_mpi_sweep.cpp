// `nexplain sweep` under mpirun: one job tokenizes on rank 0, runs the checkpointed MPI collect
// on the collect role's communicator and then the explain pool on the explain role's, with the
// same records (byte for byte) and results.jsonl as the single-process sweep; with [mpi]
// explain_ranks the last ranks skip the collect and only explain; a signal during the collect
// checkpoints, every rank exits 75, and the rerun resumes.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/h5file.hpp"
#include "sweep/sweep_config.hpp"
#include "test_support.hpp"

using namespace nexplain;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

bool have_mpirun() { return test::run_process({"mpirun", "--version"}).exit_code == 0; }

// jobs/demo.toml's planted model and offline explainer on a small corpus: 1300 excerpts of 16
// tokens = 6 moment blocks (the last one partial), so two collect ranks run three rounds and a
// signal after the first one checkpoints at excerpt 1024.
std::string job_toml(const fs::path& corpus, const fs::path& tokenizer, const std::string& extra) {
  return "[sweep]\nname = \"mpi\"\n"
         "[model]\nplanted = \"L0.N5=token:383;L1.N17=tokens:11,13;L0.N3=position:0-1;L1.N40=token:262\"\n"
         "n_layer = 2\nn_embd = 64\nn_head = 4\nn_inner = 256\nseed = 1\n"
         "[corpus]\ninputs = [\"" + corpus.string() + "\"]\nformat = \"txt\"\nseq_len = 16\n"
         "tokenizer = \"" + tokenizer.string() + "\"\n"
         "[collect]\ntop_k = 20\nrandom = 20\nbatch = 32\nthreads = 1\nmax_excerpts = 1300\n"
         "[explain]\nmode = \"offline\"\nneurons_per_layer = 48\n" + extra;
}

class MpiSweep : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_mpirun()) GTEST_SKIP() << "mpirun is not installed (Open MPI or MPICH needed for the mpi tests)";
    const auto shared = test::shared_dir();
    if (shared.empty() || !fs::exists(shared / "data/gpt2-tokenizer/encoder.json"))
      GTEST_SKIP() << "../shared (corpus and GPT-2 tokenizer) is absent: set NEXPLAIN_SHARED_DIR to run this test";
    // The first 120 kB of Shakespeare (about 1900 excerpts of 16 tokens), so tokenizing is quick.
    std::string text = test::read_file(shared / "data/corpora/tinyshakespeare.txt");
    ASSERT_GT(text.size(), 120000u);
    text.resize(120000);
    test::write_file(dir_ / "corpus.txt", text);
    tokenizer_ = shared / "data/gpt2-tokenizer";
    write_job("job.toml", "");
  }
  fs::path write_job(const std::string& name, const std::string& extra) const {
    test::write_file(dir_ / name, job_toml(dir_ / "corpus.txt", tokenizer_, extra));
    return dir_ / name;
  }
  // `mpirun -np N nexplain sweep JOB --out OUT ARGS...`
  test::CliResult mpirun(int np, const std::string& out, const std::vector<std::string>& args = {},
                         const std::vector<std::string>& env = {}, const std::string& job = "job.toml") const {
    std::vector<std::string> argv{"mpirun", "--oversubscribe", "--allow-run-as-root", "-np", std::to_string(np)};
    for (const auto& e : env) argv.insert(argv.end(), {"-x", e});
    argv.insert(argv.end(), {NEXPLAIN_CLI, "sweep", (dir_ / job).string(), "--out", (dir_ / out).string()});
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_process(argv, env);
  }
  // The reference: the single-process sweep (plain collect, the explain pool of one process).
  void reference() {
    if (fs::exists(dir_ / "ref" / "explain" / "results.jsonl")) return;
    const auto r = test::run_cli({"sweep", (dir_ / "job.toml").string(), "--out", (dir_ / "ref").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ref_records_ = test::hdf5_dataset_bytes(dir_ / "ref" / "records.h5");
    ref_results_ = test::read_file(dir_ / "ref" / "explain" / "results.jsonl");
    ASSERT_GT(ref_records_.size(), 10u);
    // 2 layers x 48 neurons, one line each; the planted " The" detector is explained by it.
    ASSERT_EQ(std::count(ref_results_.begin(), ref_results_.end(), '\n'), 96);
    ASSERT_THAT(ref_results_, HasSubstr("\\\" The\\\""));
  }
  void expect_same_as_reference(const std::string& out, const std::string& what) {
    const auto records = test::hdf5_dataset_bytes(dir_ / out / "records.h5");
    ASSERT_EQ(records.size(), ref_records_.size()) << what;
    for (const auto& [name, bytes] : ref_records_) {
      auto it = records.find(name);
      ASSERT_NE(it, records.end()) << name << " missing: " << what;
      EXPECT_TRUE(it->second == bytes) << name << " differs: " << what;
    }
    EXPECT_EQ(test::read_file(dir_ / out / "explain" / "results.jsonl"), ref_results_) << what;
  }
  test::TempDir dir_;
  fs::path tokenizer_;
  std::map<std::string, std::vector<std::uint8_t>> ref_records_;
  std::string ref_results_;
};

}  // namespace

TEST_F(MpiSweep, ThreeRanksCollectThenExplainLikeOneProcess) {
  reference();
  const auto r = mpirun(3, "np3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The MPI collect ran on all three ranks, the explain pool on all three (two workers).
  EXPECT_THAT(r.err, HasSubstr("on 3 rank(s)"));
  EXPECT_THAT(r.err, HasSubstr("2 worker(s)"));
  expect_same_as_reference("np3", "mpirun -np 3");
  const auto summary = test::read_file(dir_ / "np3" / "sweep-summary.txt");
  EXPECT_THAT(summary, HasSubstr("(3 ranks)"));
  EXPECT_THAT(summary, HasSubstr("planted neurons"));
  EXPECT_FALSE(fs::exists(dir_ / "np3" / "records.ckpt.h5")) << "a finished collect removes its checkpoint";
}

TEST_F(MpiSweep, ExplainOnlyRanksSkipTheCollectAndJoinThePool) {
  reference();
  // [mpi] explain_ranks = 1 in the sweep file: ranks 0-1 collect, rank 2 waits, all 3 explain.
  write_job("job-k1.toml", "[mpi]\nexplain_ranks = 1\n");
  auto r = mpirun(3, "k1", {}, {}, "job-k1.toml");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("on 2 rank(s)"));
  EXPECT_THAT(r.err, HasSubstr("world rank 2 waits for the records"));
  EXPECT_THAT(r.err, HasSubstr("2 worker(s)"));
  expect_same_as_reference("k1", "mpirun -np 3, explain_ranks = 1");
  // --explain-ranks overrides the file: one collect rank, two explain-only ranks.
  r = mpirun(3, "k2", {"--explain-ranks", "2"}, {}, "job-k1.toml");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("on 1 rank(s)"));
  EXPECT_THAT(r.err, HasSubstr("world ranks 1-2 wait for the records"));
  expect_same_as_reference("k2", "mpirun -np 3 --explain-ranks 2");
}

TEST_F(MpiSweep, SignalDuringTheCollectCheckpointsAndTheRerunResumes) {
  reference();
  // Two collect ranks: rounds of 512 excerpts. SIGUSR1 raised in the last collect rank after
  // the first round; the ranks agree at the next boundary and checkpoint at 1024 of 1300.
  auto r = mpirun(2, "sig", {}, {"NEXPLAIN_TEST_STOP_AT=512"});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  const auto ck = dir_ / "sig" / "records.ckpt.h5";
  ASSERT_TRUE(fs::exists(ck)) << r.err;
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 1024);
  EXPECT_FALSE(fs::exists(dir_ / "sig" / "records.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "sig" / "explain")) << "the explain pool must not start after a checkpoint";
  EXPECT_THAT(r.out, HasSubstr("collect checkpointed to"));
  // The same command again, without the hook: resumes at 1024 and finishes.
  r = mpirun(2, "sig");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("(resumed at 1024)"));
  expect_same_as_reference("sig", "-np 2 stopped by a signal, resumed on -np 2");
  EXPECT_FALSE(fs::exists(ck));
}

TEST_F(MpiSweep, SignalWithAnExplainOnlyRankExits75OnEveryRank) {
  reference();
  // Each rank reports its own exit status through a wrapper that itself exits 0, so that
  // mpirun does not end the other ranks when the first one exits 75.
  const auto codes = dir_ / "codes.txt";
  std::vector<std::string> argv{"mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "3",
                                "-x", "NEXPLAIN_TEST_STOP_AT=512", "sh", "-c",
                                "\"$0\" \"$@\"; echo \"${OMPI_COMM_WORLD_RANK:-$PMI_RANK} $?\" >> " + codes.string(),
                                NEXPLAIN_CLI, "sweep", (dir_ / "job.toml").string(), "--out", (dir_ / "k1sig").string(),
                                "--explain-ranks", "1"};
  auto r = test::run_process(argv, {"NEXPLAIN_TEST_STOP_AT=512"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::string> by_rank;
  std::ifstream in(codes);
  for (std::string rank, code; in >> rank >> code;) by_rank[rank] = code;
  const std::map<std::string, std::string> want{{"0", "75"}, {"1", "75"}, {"2", "75"}};
  EXPECT_EQ(by_rank, want) << test::read_file(codes) << r.err;
  EXPECT_EQ(h5::File::open_read(dir_ / "k1sig" / "records.ckpt.h5").attr_int("checkpoint_cursor"), 1024);
  // Resumed on another layout of roles: three collect ranks this time.
  r = mpirun(3, "k1sig");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_as_reference("k1sig", "stopped with an explain-only rank, resumed on 3 collect ranks");
}

TEST_F(MpiSweep, BadRoleSplitsAreRefused) {
  auto r = mpirun(2, "bad", {"--explain-ranks", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("explain_ranks = 2 (--explain-ranks) leaves no rank for the collect: the job has 2 rank(s)"));
  EXPECT_FALSE(fs::exists(dir_ / "bad" / "sequences.h5")) << "refused before any work";
  r = test::run_cli({"sweep", (dir_ / "job.toml").string(), "--out", (dir_ / "bad").string(), "--stage", "collect",
                     "--explain-ranks", "1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("it needs --stage all"));
}

TEST(SweepConfigMpi, ExplainRanksIsReadAndChecked) {
  const auto base = nlohmann::json::parse(R"({"model": {"planted": "L0.N1=token:5"}, "corpus": {"inputs": ["x.txt"]}})");
  EXPECT_EQ(SweepConfig::from_json(base, "x.toml").explain_ranks, 0);
  auto j = base;
  j["mpi"] = {{"explain_ranks", 3}};
  EXPECT_EQ(SweepConfig::from_json(j, "x.toml").explain_ranks, 3);
  j["mpi"] = {{"explain_ranks", -1}};
  EXPECT_HAS(test::errmsg([&] { SweepConfig::from_json(j, "x.toml"); }), "x.toml: [mpi] explain_ranks = -1: must be 0 or more");
  j["mpi"] = {{"explain_rank", 1}};
  EXPECT_HAS(test::errmsg([&] { SweepConfig::from_json(j, "x.toml"); }),
             "x.toml: [mpi] has an unknown key 'explain_rank' (expected one of: explain_ranks)");
}
