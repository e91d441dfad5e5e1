// `collect` under mpirun: records are byte-identical for every rank count and grid (data
// groups x pipeline stages), and checkpoints (signal, periodic, kill -9, a real SIGUSR1 sent to
// mpirun) resume to the same bytes, also with another rank count or number of stages.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "io/h5file.hpp"
#include "io/records_file.hpp"
#include "io/sequences.hpp"
#include "model/arch_config.hpp"
#include "model/transformer_weights.hpp"
#include "test_support.hpp"

using namespace nexplain;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

// 4 layers x 64 neurons, narrow and with a small vocabulary, so a rank loads and runs it in
// well under a second; 1100 excerpts = 5 moment blocks (the last one partial).
constexpr std::uint64_t kExcerpts = 1100;
constexpr int kSeqLen = 16;
constexpr std::uint32_t kVocab = 1000;

bool have_mpirun() { return test::run_process({"mpirun", "--version"}).exit_code == 0; }

fs::path make_model(const test::TempDir& dir) {
  const auto model = dir / "model";
  auto r = test::run_cli({"make-model", "--planted", "L0.N5=token:464;L3.N17=position:3", "--out", model.string(),
                          "--n-layer", "4", "--n-embd", "64", "--n-head", "4", "--n-inner", "64", "--n-positions", "64",
                          "--vocab-size", std::to_string(kVocab)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return model;
}

fs::path make_sequences(const test::TempDir& dir) {
  return test::write_random_sequences(dir / "seqs.h5", kExcerpts, kSeqLen, kVocab, 11);
}

class MpiCollect : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_mpirun()) GTEST_SKIP() << "mpirun is not installed (Open MPI or MPICH needed for the mpi tests)";
    model_ = make_model(dir_);
    seqs_ = make_sequences(dir_);
  }
  std::vector<std::string> collect_args(const fs::path& out, int batch, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a{NEXPLAIN_CLI, "collect", "--model", model_.string(), "--corpus", seqs_.string(), "--out",
                               out.string(), "--batch", std::to_string(batch), "--threads", std::to_string(threads_), "--top-k", "6",
                               "--random", "5", "--quantile-samples", "2", "--log-level", log_level_};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  test::CliResult mpirun(int np, const fs::path& out, int batch, const std::vector<std::string>& extra = {},
                         const std::vector<std::string>& env = {}) const {
    std::vector<std::string> argv{"mpirun", "--oversubscribe", "--allow-run-as-root", "-np", std::to_string(np)};
    for (const auto& e : env) argv.insert(argv.end(), {"-x", e});
    const auto a = collect_args(out, batch, extra);
    argv.insert(argv.end(), a.begin(), a.end());
    return test::run_process(argv, env);
  }
  // The same collect in one plain process (no mpirun).
  test::CliResult single(const fs::path& out, int batch, const std::vector<std::string>& extra = {}) const {
    auto a = collect_args(out, batch, extra);
    a.erase(a.begin());  // run_cli supplies the CLI's path
    return test::run_cli(a);
  }
  // The reference: a plain single-process collect.
  const std::map<std::string, std::vector<std::uint8_t>>& reference() {
    if (ref_.empty()) {
      const auto out = dir_ / "ref.h5";
      auto r = single(out, 64);
      EXPECT_EQ(r.exit_code, 0) << r.err;
      ref_ = test::hdf5_dataset_bytes(out);
    }
    return ref_;
  }
  void expect_identical(const fs::path& out, const std::string& what) {
    const auto& ref = reference();
    ASSERT_GT(ref.size(), 20u);
    auto ds = test::hdf5_dataset_bytes(out);
    ASSERT_EQ(ds.size(), ref.size()) << what;
    for (const auto& [name, bytes] : ref) EXPECT_TRUE(ds[name] == bytes) << name << " differs: " << what;
  }
  test::TempDir dir_;
  fs::path model_, seqs_;
  std::map<std::string, std::vector<std::uint8_t>> ref_;
  std::string log_level_ = "warn";
  int threads_ = 1;
};

}  // namespace

TEST_F(MpiCollect, RecordsAreIdenticalForEveryRankCount) {
  reference();
  for (auto [np, batch] : {std::pair{1, 64}, {2, 7}, {3, 100}, {4, 32}}) {
    const auto out = dir_ / ("np" + std::to_string(np) + ".h5");
    threads_ = np == 2 ? 3 : 1;  // -np 2 also folds the moments on 3 threads (neurons split 3 ways)
    auto r = mpirun(np, out, batch);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_identical(out, "-np " + std::to_string(np));
  }
}

TEST_F(MpiCollect, RecordsAreIdenticalForEveryPipelineGrid) {
  // {ranks, stages, batch}: D=1 x P=2, D=1 x P=3 (4 blocks: 1+1+2), D=2 x P=2, D=1 x P=4.
  for (auto [np, P, batch] : {std::tuple{2, 2, 16}, {3, 3, 50}, {4, 2, 7}, {4, 4, 64}}) {
    const std::string what = "-np " + std::to_string(np) + " --pipeline-stages " + std::to_string(P);
    const auto out = dir_ / ("np" + std::to_string(np) + "p" + std::to_string(P) + ".h5");
    auto r = mpirun(np, out, batch, {"--pipeline-stages", std::to_string(P)});
    ASSERT_EQ(r.exit_code, 0) << what << "\n" << r.err;
    expect_identical(out, what);
  }
}

// The stage roots write the records file in turn (docs/MPI.md, End): rank 0 creates it and
// appends its stage's layers, each further stage root appends its own, rank 0 adds the excerpts.
// The whole file, not only its datasets, is the one a single process writes by the same steps.
TEST_F(MpiCollect, StageRootsWriteTheFileInTurnByteForByteAsOneProcess) {
  log_level_ = "debug";  // the writers' log lines; the same option in every run keeps the command lines alike
  const auto out = dir_ / "rec.h5";
  // The command line is stored in the file: every run below has the same arguments but for the
  // digit of --pipeline-stages, so the files may differ in that one byte and nowhere else.
  auto r = single(out, 32, {"--pipeline-stages", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ref = dir_ / "one-process.h5";
  fs::rename(out, ref);
  const std::string want = test::read_file(ref);
  // {ranks, stages, the layers each stage root writes}: D=1 x P=3 (blocks 1+1+2), D=2 x P=2.
  for (auto [np, P, written] : {std::tuple{3, 3, std::vector<std::string>{"layer 0", "layer 1", "layers 2-3"}},
                                {4, 2, std::vector<std::string>{"layers 0-1", "layers 2-3"}}}) {
    const std::string what = "-np " + std::to_string(np) + " --pipeline-stages " + std::to_string(P);
    r = mpirun(np, out, 32, {"--pipeline-stages", std::to_string(P)});
    ASSERT_EQ(r.exit_code, 0) << what << "\n" << r.err;
    for (int s = 0; s < P; ++s)
      EXPECT_THAT(r.err, HasSubstr("rank " + std::to_string(s) + "/" + std::to_string(np) + " (data group 0, stage " +
                                   std::to_string(s) + "): wrote " + written[static_cast<std::size_t>(s)] + " to "))
          << what;
    for (int rank = P; rank < np; ++rank)  // the other data groups' ranks only send their states
      EXPECT_THAT(r.err, ::testing::Not(HasSubstr("rank " + std::to_string(rank) + "/" + std::to_string(np) + " (data group 1, stage " +
                                                  std::to_string(rank - P) + "): wrote")))
          << what;
    EXPECT_THAT(r.err, HasSubstr("rank 0/" + std::to_string(np) + " (data group 0, stage 0): wrote the tokens of")) << what;
    const std::string got = test::read_file(out);
    ASSERT_EQ(got.size(), want.size()) << what;
    std::vector<std::size_t> differ;
    for (std::size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i]) differ.push_back(i);
    ASSERT_EQ(differ.size(), 1u) << what << ": the files differ in more than the digit of --pipeline-stages";
    EXPECT_EQ(want[differ[0]], '1') << what;
    EXPECT_EQ(got[differ[0]], static_cast<char>('0' + P)) << what;
    fs::remove(out);
  }
}

// A stage root that fails while appending its layers (test hook) ends the whole job with a
// clear error; the temporary file is removed, and the checkpoint that was there stays as it was,
// whether the failed write was the final records or a newer checkpoint.
TEST_F(MpiCollect, AWriteErrorOnAStageRootEndsTheJobAndKeepsTheCheckpoint) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  const std::vector<std::string> grid{"--checkpoint", ck.string(), "--pipeline-stages", "2"};
  // 2 stages, one data group (rounds of one block): raised at 256, agreed at 512.
  auto r = mpirun(2, out, 64, grid, {"NEXPLAIN_TEST_STOP_AT=1"});
  ASSERT_EQ(r.exit_code, 75) << r.err;
  const std::string ck_bytes = test::read_file(ck);
  auto no_partial_files = [&](const std::string& what) {
    for (const auto& e : fs::directory_iterator(dir_.path()))
      EXPECT_EQ(e.path().filename().string().find(".partial-"), std::string::npos) << what << ": " << e.path();
  };
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), grid.begin(), grid.end());
    return extra;
  };
  const std::string hook = "NEXPLAIN_TEST_FAIL_WRITE_STAGE=1";
  for (const auto& [what, extra, target] :
       {std::tuple{std::string("the final records"), with({}), out},
        {std::string("a periodic checkpoint"), with({"--checkpoint-every", "256"}), ck}}) {
    r = mpirun(2, out, 64, extra, {hook});
    EXPECT_NE(r.exit_code, 0) << what << "\n" << r.err;
    EXPECT_NE(r.exit_code, 75) << what << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr("rank 1/2 (data group 0, stage 1): writing layers 2-3 of " + target.string() + ": "))
        << what;
    EXPECT_THAT(r.err, HasSubstr("NEXPLAIN_TEST_FAIL_WRITE_STAGE=1: failing after layer 2 (test hook)")) << what;
    EXPECT_THAT(r.err, HasSubstr("nothing was written to " + target.string())) << what;
    EXPECT_FALSE(fs::exists(out)) << what;
    no_partial_files(what);
    EXPECT_TRUE(test::read_file(ck) == ck_bytes) << what << ": the checkpoint changed";
  }
  // The checkpoint still resumes to the records of one uninterrupted process.
  r = mpirun(2, out, 64, grid);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "resumed after two failed writes");
  EXPECT_FALSE(fs::exists(ck));
}

namespace {

// A tiny Llama (grouped-query attention 4/2 heads, SwiGLU, RoPE, untied head) in bf16 shards of
// at most 24 KiB, so every pipeline stage loads its own blocks from a sharded checkpoint.
class MpiCollectLlama : public MpiCollect {
 protected:
  void SetUp() override {
    if (!have_mpirun()) GTEST_SKIP() << "mpirun is not installed (Open MPI or MPICH needed for the mpi tests)";
    model_ = dir_ / "llama";
    fs::create_directories(model_);
    const auto cfg = ArchConfig::from_json({{"model_type", "llama"}, {"hidden_size", 64}, {"num_hidden_layers", 4},
                                            {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                                            {"intermediate_size", 96}, {"vocab_size", kVocab},
                                            {"max_position_embeddings", 64}, {"tie_word_embeddings", false}});
    TransformerWeights::SaveOptions so;
    so.bf16 = true;
    so.max_shard_bytes = 24 * 1024;
    // stddev 0.2: activations spread widely enough that the samples are not all near-ties.
    TransformerWeights::random(cfg, 5, 0.2f).save(model_, so);
    seqs_ = make_sequences(dir_);
  }
};

}  // namespace

TEST_F(MpiCollectLlama, RecordsAreIdenticalForEveryPipelineGrid) {
  ASSERT_TRUE(fs::exists(model_ / "model.safetensors.index.json")) << "the test model should be sharded";
  reference();
  {
    const RecordsFile rf(dir_ / "ref.h5");
    EXPECT_EQ(rf.meta().model["config"]["model_type"], "llama");
    EXPECT_EQ(rf.meta().model["config"]["intermediate"], 96);
    // Provenance names the index and every shard with its sha256.
    const auto& files = rf.meta().model["files"];
    EXPECT_TRUE(files.contains("model.safetensors.index.json")) << files.dump();
    int shards = 0;
    for (const auto& [name, sha] : files.items())
      if (name.ends_with(".safetensors")) {
        ++shards;
        EXPECT_EQ(sha.get<std::string>().size(), 64u) << name;
      }
    EXPECT_GE(shards, 3) << files.dump();
  }
  // {ranks, stages, batch}: D=1 x P=2, D=1 x P=3 (4 blocks: 1+1+2), D=2 x P=2.
  for (auto [np, P, batch] : {std::tuple{2, 2, 16}, {3, 3, 50}, {4, 2, 7}}) {
    const std::string what = "llama -np " + std::to_string(np) + " --pipeline-stages " + std::to_string(P);
    const auto out = dir_ / ("llama-np" + std::to_string(np) + "p" + std::to_string(P) + ".h5");
    auto r = mpirun(np, out, batch, {"--pipeline-stages", std::to_string(P)});
    ASSERT_EQ(r.exit_code, 0) << what << "\n" << r.err;
    expect_identical(out, what);
  }
}

// The HF fixtures of the other families (GPT-NeoX's parallel residual and partial rotary,
// Qwen2's q/k/v biases, Llama's grouped-query attention), as HF saved them: two stages give the
// records of one process.
TEST_F(MpiCollect, HfFixturesOfEveryFamilyGiveIdenticalRecordsInTwoStages) {
  const auto shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared (the HF fixtures) is absent: set NEXPLAIN_SHARED_DIR";
  for (const char* name : {"hf-llama-tiny", "hf-neox-tiny", "hf-qwen2-tiny"}) {
    model_ = shared / "fixtures" / name;
    ref_.clear();
    fs::remove(dir_ / "ref.h5");
    reference();
    const auto out = dir_ / (std::string(name) + "-p2.h5");
    auto r = mpirun(2, out, 7, {"--pipeline-stages", "2"});
    ASSERT_EQ(r.exit_code, 0) << name << "\n" << r.err;
    expect_identical(out, std::string(name) + " -np 2 --pipeline-stages 2");
  }
}

TEST_F(MpiCollect, PipelineStagesWithoutCapturedLayersPassHiddenStatesOn) {
  // Layers 1 and 3 on 3 stages (blocks 0 | 1 | 2-3): stage 0 captures nothing, yet feeds the others.
  const auto ref = dir_ / "ref13.h5";
  auto r = single(ref, 64, {"--layers", "1,3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = dir_ / "p3.h5";
  log_level_ = "info";
  r = mpirun(3, out, 32, {"--layers", "1,3", "--pipeline-stages", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("stage 0: block 0, captures no layers"));
  EXPECT_THAT(r.err, HasSubstr("stage 1: block 1, captures layer 1"));
  EXPECT_THAT(r.err, HasSubstr("stage 2: blocks 2-3, captures layer 3"));
  EXPECT_THAT(r.err, HasSubstr("3 ranks = 1 data groups x 3 pipeline stages"));
  EXPECT_THAT(r.err, HasSubstr("time blocked in MPI up to"));
  const auto want = test::hdf5_dataset_bytes(ref);
  auto got = test::hdf5_dataset_bytes(out);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, bytes] : want) EXPECT_TRUE(got[name] == bytes) << name << " differs";
}

TEST_F(MpiCollect, SignalCheckpointsAndResumesWithAnotherRankCount) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // SIGUSR1 raised in the last rank after the first round (2 blocks = 512 excerpts); the ranks
  // agree on it at the next round boundary, 1024.
  auto r = mpirun(2, out, 32, {"--checkpoint", ck.string()}, {"NEXPLAIN_TEST_STOP_AT=512"});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_TRUE(fs::exists(ck));
  EXPECT_FALSE(fs::exists(out));
  auto f = h5::File::open_read(ck);
  EXPECT_EQ(f.attr_int("checkpoint_cursor"), 1024);
  // Resume on 3 ranks, without the hook: finishes, identical to the uninterrupted run.
  r = mpirun(3, out, 16, {"--checkpoint", ck.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "resumed on 3 ranks after SIGUSR1 on 2");
  EXPECT_FALSE(fs::exists(ck)) << "a finished run removes its checkpoint";
}

TEST_F(MpiCollect, SignalInAPipelineResumesOnTheSameGrid) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // 3 stages, one data group: rounds of one block. Raised at 512 on the last stage, agreed at 768.
  auto r = mpirun(3, out, 64, {"--checkpoint", ck.string(), "--pipeline-stages", "3"}, {"NEXPLAIN_TEST_STOP_AT=300"});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 768);
  r = mpirun(3, out, 64, {"--checkpoint", ck.string(), "--pipeline-stages", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "resumed on 3 stages");
}

TEST_F(MpiCollect, CheckpointResumesOnAnotherNumberOfStages) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // D=2 x P=2 stops at 1024; D=1 x P=3 finishes it.
  auto r = mpirun(4, out, 32, {"--checkpoint", ck.string(), "--pipeline-stages", "2"}, {"NEXPLAIN_TEST_STOP_AT=1"});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 1024);
  r = mpirun(3, out, 32, {"--checkpoint", ck.string(), "--pipeline-stages", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "2x2 grid resumed on 3 stages");
}

TEST_F(MpiCollect, KillNineLosesOnlyTheWorkSinceTheLastCheckpoint) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // Periodic checkpoints every 256 excerpts on 2 ranks (rounds of 512); the last rank SIGKILLs
  // itself right after the checkpoint at 512, and mpirun tears the rest of the job down.
  auto r = mpirun(2, out, 50, {"--checkpoint", ck.string(), "--checkpoint-every", "256"}, {"NEXPLAIN_TEST_KILL_AT=512"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 75);
  ASSERT_TRUE(fs::exists(ck));
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 512);
  EXPECT_FALSE(fs::exists(out));
  r = mpirun(3, out, 50, {"--checkpoint", ck.string(), "--checkpoint-every", "256"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "resumed on 3 ranks after kill -9");
}

TEST_F(MpiCollect, KillNineOfAPipelineStageResumesOnOneRank) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // 2 stages: the last stage dies right after the periodic checkpoint at 768.
  auto r = mpirun(2, out, 64, {"--checkpoint", ck.string(), "--checkpoint-every", "700", "--pipeline-stages", "2"},
                  {"NEXPLAIN_TEST_KILL_AT=700"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 75);
  ASSERT_TRUE(fs::exists(ck));
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 768);
  r = mpirun(1, out, 64, {"--checkpoint", ck.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "2 stages killed, resumed on 1 rank");
}

namespace {

// mpirun started in its own process group with output to files, for a test that signals it.
struct BackgroundJob {
  pid_t pid = -1;
  fs::path err;
  bool running() const { return pid > 0; }
  // Exit code, or -1 after `timeout` (then the whole process group is killed).
  int wait(std::chrono::seconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    pid = -1;
    return -1;
  }
  ~BackgroundJob() {
    if (running()) wait(std::chrono::seconds(0));
  }
};

BackgroundJob spawn_in_group(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err,
                             const std::vector<std::string>& env) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  envs.insert(envs.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  BackgroundJob job;
  job.err = err;
  if (posix_spawnp(&job.pid, args[0], &fa, &attr, args.data(), envp.data()) != 0) job.pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return job;
}

// `mpirun -np 2` of the collect `args` (collect_args: the CLI's path first), every
// rank held at excerpt 256 by NEXPLAIN_TEST_HOLD_AT until a real signal arrives; `mpirun_env`
// is mpirun's own environment on top of the hook. Output goes to dir/job.{out,err}.
BackgroundJob spawn_held_collect(const std::vector<std::string>& args, const fs::path& dir,
                                 std::vector<std::string> mpirun_env = {}) {
  const std::string hold = "NEXPLAIN_TEST_HOLD_AT=256";
  std::vector<std::string> argv{"mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2", "-x", hold};
  argv.insert(argv.end(), args.begin(), args.end());
  mpirun_env.insert(mpirun_env.begin(), hold);
  return spawn_in_group(argv, dir / "job.out", dir / "job.err", mpirun_env);
}

// Whether the held collect reached its hook within 60 s (rank 0 logs it).
bool wait_until_holding(const BackgroundJob& job) {
  for (int i = 0; i < 3000; ++i) {
    if (test::read_file(job.err).find("until a signal arrives") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

TEST_F(MpiCollect, RealSigusr1SentToMpirunCheckpointsAndExits75) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // 2 stages (one data group, rounds of 256 excerpts). The hook makes every rank wait at 256
  // until the signal has reached it; mpirun forwards SIGUSR1 to all ranks; they agree at 512.
  auto job = spawn_held_collect(collect_args(out, 64, {"--checkpoint", ck.string(), "--pipeline-stages", "2"}), dir_.path());
  ASSERT_TRUE(job.running()) << "could not start mpirun";
  ASSERT_TRUE(wait_until_holding(job)) << test::read_file(job.err);
  ASSERT_EQ(kill(job.pid, SIGUSR1), 0);
  EXPECT_EQ(job.wait(std::chrono::seconds(60)), 75) << test::read_file(job.err);
  ASSERT_TRUE(fs::exists(ck));
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 512);
  EXPECT_FALSE(fs::exists(out));
  auto r = mpirun(1, out, 64, {"--checkpoint", ck.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "resumed on 1 rank after a real SIGUSR1 to mpirun");
}

TEST_F(MpiCollect, RealSigtermToOpenMpiMpirunCheckpointsWithinTheSigkillTimeout) {
  if (test::run_process({"mpirun", "--version"}).out.find("Open MPI") == std::string::npos)
    GTEST_SKIP() << "odls_base_sigkill_timeout is an Open MPI parameter";
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // Open MPI's mpirun does not forward SIGTERM: it ends the job itself, sending the ranks
  // SIGCONT, then SIGTERM after odls_base_sigkill_timeout seconds and SIGKILL as many seconds
  // later (default 1: too short for most checkpoints; docs/MPI.md). With 10 s the ranks get
  // SIGTERM 10 s after mpirun, agree at the next round boundary (512) and write the checkpoint
  // before the SIGKILL. mpirun exits 1 (its status for a job it ended), not the ranks' 75.
  const int timeout_s = 10;
  auto job = spawn_held_collect(collect_args(out, 64, {"--checkpoint", ck.string(), "--pipeline-stages", "2"}), dir_.path(),
                                {"OMPI_MCA_odls_base_sigkill_timeout=" + std::to_string(timeout_s)});
  ASSERT_TRUE(job.running()) << "could not start mpirun";
  ASSERT_TRUE(wait_until_holding(job)) << test::read_file(job.err);
  const auto sent = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(job.pid, SIGTERM), 0);
  EXPECT_EQ(job.wait(std::chrono::seconds(90)), 1) << test::read_file(job.err);
  EXPECT_GE(std::chrono::steady_clock::now() - sent, std::chrono::seconds(timeout_s))
      << "the ranks should see SIGTERM only after the timeout";
  ASSERT_TRUE(fs::exists(ck)) << test::read_file(job.err);
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 512);
  EXPECT_FALSE(fs::exists(out));
  auto r = mpirun(1, out, 64, {"--checkpoint", ck.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "resumed on 1 rank after SIGTERM to mpirun with a 10 s sigkill timeout");
}

TEST_F(MpiCollect, MismatchedCheckpointIsRefused) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  auto r = mpirun(2, out, 64, {"--checkpoint", ck.string()}, {"NEXPLAIN_TEST_STOP_AT=256"});
  ASSERT_EQ(r.exit_code, 75) << r.err;
  r = single(out, 64, {"--checkpoint", ck.string(), "--seed", "9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("written by a collect with other parameters"));
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(MpiCollect, CheckpointAtTheOutputPathIsRefused) {
  // A finished run removes its checkpoint, which would be the records just written.
  const auto out = dir_ / "rec.h5";
  auto r = single(out, 64, {"--checkpoint", (dir_ / "." / "rec.h5").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("the same file as --out"));
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(MpiCollect, BadGridsAreRefused) {
  auto r = mpirun(3, dir_ / "rec.h5", 64, {"--pipeline-stages", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--pipeline-stages 2 does not divide the 3 MPI ranks"));
  r = mpirun(1, dir_ / "rec.h5", 64, {"--pipeline-stages", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--pipeline-stages 0: must be at least 1"));
  // Layers 0-1 run only 2 blocks: 4 stages cannot each get one.
  r = mpirun(4, dir_ / "rec.h5", 64, {"--pipeline-stages", "4", "--layers", "0-1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("collect runs only 2 transformer blocks"));
  EXPECT_FALSE(fs::exists(dir_ / "rec.h5"));
  // --device cuda runs under the driver (docs/MPI.md); on a machine without a device every rank
  // says why and nothing is written.
  r = mpirun(2, dir_ / "rec.h5", 64, {"--device", "cuda"});
  if (r.exit_code == 0) {
    EXPECT_TRUE(fs::exists(dir_ / "rec.h5")) << "a CUDA machine: the collect ran";
  } else {
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr("--device cuda: no CUDA device"));
    EXPECT_FALSE(fs::exists(dir_ / "rec.h5"));
  }
}

// ==================================================================== tiny Llama: stop and resume
// The checkpointed collect of the sharded bf16 Llama above, stopped by the NEXPLAIN_TEST_STOP_AT
// hook (SIGUSR1 raised in the last rank once the cursor passes the value; the ranks agree on it at
// the next round boundary and exit 75), resumes to the records of an uninterrupted run: on the
// same grid, and on another one (the checkpoint holds per-layer reduction state, not a grid).

TEST_F(MpiCollectLlama, StoppedCollectResumesToIdenticalRecordsOnTheSameGrid) {
  const auto ck = dir_ / "ck.h5";
  const auto out = dir_ / "rec.h5";
  // 3 stages, one data group: rounds of one block. Raised at 512 on the last stage, agreed at 768.
  auto r = mpirun(3, out, 64, {"--checkpoint", ck.string(), "--pipeline-stages", "3"}, {"NEXPLAIN_TEST_STOP_AT=300"});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  ASSERT_TRUE(fs::exists(ck));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 768);
  r = mpirun(3, out, 64, {"--checkpoint", ck.string(), "--pipeline-stages", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "llama resumed on the same 1 x 3 grid");
  EXPECT_FALSE(fs::exists(ck)) << "a finished run removes its checkpoint";
  EXPECT_EQ(RecordsFile(out).meta().model["config"]["model_type"], "llama");
}

TEST_F(MpiCollectLlama, StoppedCollectResumesToIdenticalRecordsOnAnotherGrid) {
  const auto ck = dir_ / "ck.h5";
  // D=2 x P=2 stops at the first round boundary (1024); D=1 x P=3 finishes it.
  auto out = dir_ / "rec-2x2-1x3.h5";
  auto r = mpirun(4, out, 32, {"--checkpoint", ck.string(), "--pipeline-stages", "2"}, {"NEXPLAIN_TEST_STOP_AT=1"});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 1024);
  r = mpirun(3, out, 50, {"--checkpoint", ck.string(), "--pipeline-stages", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "llama 2 x 2 grid resumed on 1 x 3");
  // Data-parallel only (2 ranks, rounds of 2 blocks), stopped at 1024; resumed on one rank.
  out = dir_ / "rec-2x1-1x1.h5";
  r = mpirun(2, out, 32, {"--checkpoint", ck.string()}, {"NEXPLAIN_TEST_STOP_AT=512"});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_EQ(h5::File::open_read(ck).attr_int("checkpoint_cursor"), 1024);
  r = mpirun(1, out, 16, {"--checkpoint", ck.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_identical(out, "llama 2 x 1 grid resumed on 1 rank");
  EXPECT_FALSE(fs::exists(ck));
}
