// The pieces of `nexplain submit` that need no cluster: Slurm time limits, the [slurm] section's
// checks, script rendering, layer parts of a job array, the merge of per-layer records files,
// and the explain stage's exit 75 on SIGUSR1 (what the requeue relies on).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/config_file.hpp"
#include "core/error.hpp"
#include "slurm/sbatch_render.hpp"
#include "slurm/slurm_config.hpp"
#include "slurm/time_limit.hpp"
#include "sweep/merge_records.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/sweep_layers.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace nexplain;
using json = nlohmann::json;

extern char** environ;

TEST(SlurmTime, SbatchForms) {
  EXPECT_EQ(parse_slurm_time("30"), 1800);
  EXPECT_EQ(parse_slurm_time("5:30"), 330);
  EXPECT_EQ(parse_slurm_time("02:00:00"), 7200);
  EXPECT_EQ(parse_slurm_time("1-0"), 86400);
  EXPECT_EQ(parse_slurm_time("1-2:30"), 86400 + 2 * 3600 + 30 * 60);
  EXPECT_EQ(parse_slurm_time("2-01:00:05"), 2 * 86400 + 3600 + 5);
  EXPECT_HAS(test::errmsg([] { parse_slurm_time("UNLIMITED"); }), "UNLIMITED");
  EXPECT_HAS(test::errmsg([] { parse_slurm_time("1:2:3:4"); }), "1:2:3:4");
  EXPECT_HAS(test::errmsg([] { parse_slurm_time(""); }), "time limit");
}

TEST(SlurmConfig, DefaultsThenStageOverrides) {
  const auto c = SlurmConfig::from_json(json::parse(R"({"account": "a", "time": "01:00:00", "signal_margin": 120,
      "gpu_partitions": ["gpu"], "collect": {"partition": "gpu", "gpus_per_task": 1, "ntasks": 4, "array_layers": 6},
      "explain": {"time": "12:00:00", "ntasks": 16}})"),
                                        "x.toml");
  EXPECT_EQ(c.signal_margin, 120);
  EXPECT_EQ(c.tokenize.account, "a");
  EXPECT_EQ(c.tokenize.time_s, 3600);
  EXPECT_EQ(c.collect.account, "a");
  EXPECT_EQ(c.collect.gpus_per_task, 1);
  EXPECT_EQ(c.collect.array_layers, 6);
  EXPECT_EQ(c.explain.time_s, 12 * 3600);
  EXPECT_EQ(c.explain.ntasks, 16);
  EXPECT_EQ(c.tokenize.ntasks, 1);
}

TEST(SlurmConfig, RefusalsNameTheKey) {
  auto err = [](const char* text) { return test::errmsg([&] { SlurmConfig::from_json(json::parse(text), "x.toml"); }); };
  EXPECT_HAS(err(R"({"tokenize": {"array_layers": 2}})"), "[slurm.tokenize] has an unknown key 'array_layers'");
  EXPECT_HAS(err(R"({"explain": {"gpus_per_task": 1}})"), "[slurm.explain] gpus_per_task");
  EXPECT_HAS(err(R"({"gpu_partitions": ["gpu"], "explain": {"partition": "cpu", "gpus_per_task": 1}})"), "'cpu' is not a GPU partition");
  EXPECT_HAS(err(R"({"signal_margin": 300, "collect": {"time": "00:05:00"}})"), "[slurm.collect] time = '00:05:00' (300 s)");
  EXPECT_HAS(err(R"({"collect": {"time": "soon"}})"), "[slurm.collect] time");
  EXPECT_HAS(err(R"({"launcher": "pbs"})"), "launcher = 'pbs'");
  EXPECT_HAS(err(R"({"env": {"HF_TOKEN": "x"}})"), "HF_TOKEN");
  EXPECT_HAS(err(R"({"collect": {"extra": ["-x"]}})"), "[slurm.collect] extra");
  EXPECT_HAS(err(R"({"explain": {"ntasks": 0}})"), "[slurm.explain] ntasks = 0");
  EXPECT_HAS(err(R"({"x": 1})"), "x.toml: [slurm] has an unknown key 'x'");
}

TEST(SlurmRender, QuotesPathsAndFillsEveryPlaceholder) {
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  auto sweep = SweepConfig::load(fs::path(NEXPLAIN_SOURCE_DIR) / "jobs" / "demo.toml");
  const auto slurm = SlurmConfig::from_json(json::parse(R"({"env": {"OMP_NUM_THREADS": "4"}, "collect": {"array_layers": 1}})"), "x");
  RenderContext ctx{fs::path(NEXPLAIN_SOURCE_DIR) / "slurm", "/work dir", "/bin/nexplain", "/o/slurm/sweep.toml", "/o", ""};
  const auto text = render_stage_script("collect", sweep, slurm, ctx, sweep_layer_parts(sweep, 1));
  EXPECT_HAS(text, "cd '/work dir'");
  EXPECT_HAS(text, "export OMP_NUM_THREADS='4'");
  EXPECT_HAS(text, "#SBATCH --array=0-1\n");
  EXPECT_HAS(text, "#SBATCH --output=/o/slurm/collect-%A_%a.out");
  EXPECT_EQ(text.find("{{"), std::string::npos);
  // #SBATCH lines must precede the first command, or sbatch ignores them.
  EXPECT_LT(text.rfind("#SBATCH"), text.find("\nset -u"));
}

TEST(SweepLayers, PartsGroupTheSelectedLayers) {
  auto c = SweepConfig::from_json(json::parse(R"({"model": {"planted": "L0.N1=token:5", "n_layer": 12},
      "corpus": {"inputs": ["x"]}, "collect": {"layers": "0-5,8,10-11"}})"),
                                  "s");
  EXPECT_EQ(sweep_layer_parts(c, 3), (std::vector<std::string>{"0-2", "3-5", "8,10,11"}));
  EXPECT_EQ(sweep_layer_parts(c, 100), (std::vector<std::string>{"0,1,2,3,4,5,8,10,11"}));
  EXPECT_EQ(part_records_path(c, "8,10,11").filename(), "records.L8_10_11.h5");
  EXPECT_HAS(test::errmsg([&] { sweep_layer_parts(c, 0); }), "at least 1");
}

TEST(MergeRecords, RefusesOverlapsAndMixedRuns) {
  test::TempDir t;
  // Two tiny collects of a planted model, overlapping in layer 1.
  ASSERT_EQ(test::run_cli({"make-model", "--planted", "L0.N1=token:464", "--n-layer", "2", "--n-embd", "32", "--n-head", "2",
                           "--n-inner", "64", "--out", (t / "m").string()})
                .exit_code,
            0);
  test::write_random_sequences(t / "s.h5", 300, 16, 50257, 7);
  for (const auto& [name, layers] : {std::pair{"a", "0-1"}, std::pair{"b", "1"}, std::pair{"c", "0"}}) {
    const auto r = test::run_cli({"collect", "--model", (t / "m").string(), "--corpus", (t / "s.h5").string(), "--out",
                                  (t / (std::string(name) + ".h5")).string(), "--layers", layers, "--threads", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_HAS(test::errmsg([&] { merge_records({t / "a.h5", t / "b.h5"}, t / "m.h5", "x"); }), "layer 1 is also in");
  // A missing part (an array task that has not finished) is refused, not merged short.
  EXPECT_HAS(test::errmsg([&] { merge_records({t / "b.h5"}, t / "m.h5", "x", {0, 1}); }), "no part holds layers 0");
  EXPECT_FALSE(fs::exists(t / "m.h5"));
  // c + b == a, dataset for dataset.
  merge_records({t / "c.h5", t / "b.h5"}, t / "merged.h5", "x");
  EXPECT_EQ(test::hdf5_dataset_bytes(t / "merged.h5"), test::hdf5_dataset_bytes(t / "a.h5"));
  // A part from another collect (other seed) is refused, naming the field.
  ASSERT_EQ(test::run_cli({"collect", "--model", (t / "m").string(), "--corpus", (t / "s.h5").string(), "--out",
                           (t / "d.h5").string(), "--layers", "1", "--seed", "9", "--threads", "1"})
                .exit_code,
            0);
  EXPECT_HAS(test::errmsg([&] { merge_records({t / "c.h5", t / "d.h5"}, t / "m2.h5", "x"); }), "'seed' differs");
  EXPECT_FALSE(fs::exists(t / "m2.h5"));
}

// The explain stage on SIGUSR1, without Slurm: the neurons in flight are journaled, nothing new
// starts, exit 75 without results.jsonl; the rerun resumes and the results equal an
// uninterrupted run's.
TEST(ExplainStage, Usr1JournalsExits75AndResumes) {
  fs::path tok;
  for (const auto& d : {test::shared_dir().empty() ? fs::path() : test::shared_dir() / "data" / "gpt2-tokenizer",
                        fs::path(NEXPLAIN_SOURCE_DIR) / "data" / "gpt2-tokenizer"})
    if (tok.empty() && !d.empty() && fs::exists(d / "encoder.json")) tok = d;
  if (tok.empty()) GTEST_SKIP() << "no GPT-2 tokenizer (../shared/data or data/gpt2-tokenizer)";
  test::TempDir t;
  const auto demo = (fs::path(NEXPLAIN_SOURCE_DIR) / "jobs" / "demo.toml").string();
  auto sweep = [&](const fs::path& out, const std::string& stage) {
    return std::vector<std::string>{"sweep", demo, "--out", out.string(), "--tokenizer", tok.string(), "--stage", stage};
  };
  for (const char* stage : {"tokenize", "collect"}) ASSERT_EQ(test::run_cli(sweep(t / "a", stage)).exit_code, 0);
  fs::copy(t / "a", t / "b", fs::copy_options::recursive);

  // Run a's explain as a child process and signal it once some neurons are journaled.
  const char* cli = std::getenv("NEXPLAIN_CLI") ? std::getenv("NEXPLAIN_CLI") : NEXPLAIN_CLI;
  auto args = sweep(t / "a", "explain");
  args.insert(args.begin(), cli);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, (t / "explain.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, cli, &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  const fs::path journal = t / "a" / "explain" / "journal.jsonl";
  auto lines = [&] {
    std::ifstream in(journal);
    std::size_t n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n;
  };
  for (int i = 0; i < 600 && lines() < 20; ++i) usleep(50000);
  ASSERT_EQ(kill(pid, SIGUSR1), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << test::read_file(t / "explain.log");
  EXPECT_EQ(WEXITSTATUS(status), 75) << test::read_file(t / "explain.log");
  const auto journaled = lines();
  EXPECT_GE(journaled, 20u);
  EXPECT_LT(journaled, 512u) << "the signal came too late to test anything";
  EXPECT_FALSE(fs::exists(t / "a" / "explain" / "results.jsonl"));

  const auto resumed = test::run_cli(sweep(t / "a", "explain"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_HAS(resumed.out, fmt::format("512 neurons ({} resumed)", journaled));
  ASSERT_EQ(test::run_cli(sweep(t / "b", "explain")).exit_code, 0);
  EXPECT_EQ(test::read_file(t / "a" / "explain" / "results.jsonl"), test::read_file(t / "b" / "explain" / "results.jsonl"));
}
