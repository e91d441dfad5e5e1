// The explain stage through the real CLI: offline baseline, resume, crash safety under kill -9
// against the loopback test server, rank-count independence, and clear errors before any work.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../servers/openai_test_server.hpp"
#include "io/sequences.hpp"
#include "test_support.hpp"

using namespace nexplain;
using nexplain::test::OpenAiTestServer;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
using json = nlohmann::json;

extern char** environ;

namespace {

// A planted model, a synthetic corpus and its records, made once for the whole file.
class ExplainFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto shared = test::shared_dir();
    if (shared.empty()) return;
    dir_ = new test::TempDir();
    const auto model = *dir_ / "model";
    ASSERT_EQ(test::run_cli({"make-model", "--planted", "L0.N5=token:464;L0.N9=tokens:11,13", "--out", model.string(),
                             "--n-layer", "1", "--n-inner", "24"})
                  .exit_code,
              0);
    const auto seqs = *dir_ / "seqs.h5";
    auto r = test::run_cli({"tokenize", (shared / "data/corpora/tinyshakespeare.txt").string(), "--out", seqs.string(),
                            "--tokenizer", (shared / "data/gpt2-tokenizer").string(), "--seq-len", "32"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", records().string(),
                       "--max-excerpts", "2000"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "../shared (corpus and tokenizer) is absent: set NEXPLAIN_SHARED_DIR to run this test";
  }
  static fs::path records() { return *dir_ / "records.h5"; }
  static std::string tokenizer() { return (test::shared_dir() / "data/gpt2-tokenizer").string(); }

  std::vector<std::string> explain_args(const fs::path& out, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a{"explain", "--records", records().string(), "--out", out.string(), "--tokenizer", tokenizer()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  static fs::path write_config(const fs::path& path, const std::string& base_url, const std::string& extra_endpoint = "",
                               const std::string& model = "test-model") {
    std::ofstream f(path);
    f << "simulator_kind = \"all_at_once\"\ninflight_neurons = 4\n";
    for (const char* stage : {"explainer", "simulator"})
      f << "[" << stage << "]\nbase_url = \"" << base_url << "\"\nmodel = \"" << model << "\"\nmax_retries = 8\n"
        << "backoff_base_s = 0.05\nbackoff_max_s = 0.5\n" << extra_endpoint;
    return path;
  }

  static inline test::TempDir* dir_ = nullptr;
};

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::set<std::string> cached_hashes(const fs::path& cache) {
  std::set<std::string> s;
  if (!fs::exists(cache)) return s;
  for (const auto& e : fs::recursive_directory_iterator(cache))
    if (e.is_regular_file() && e.path().extension() == ".json") s.insert(e.path().stem().string());
  return s;
}

pid_t spawn_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv{NEXPLAIN_CLI};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

}  // namespace

TEST_F(ExplainFixture, OfflineBaselineWritesResultsAndResumes) {
  test::TempDir out;
  auto r = test::run_cli(explain_args(out.path()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("explained 24 neurons: 24 ok"));
  const auto results = read_jsonl(out / "results.jsonl");
  ASSERT_EQ(results.size(), 24u);
  for (std::size_t i = 0; i < results.size(); ++i) EXPECT_EQ(results[i]["neuron"], i);
  // The planted detectors are explained by their tokens and score high.
  EXPECT_THAT(results[5]["explanation"].get<std::string>(), HasSubstr("\"The\""));
  EXPECT_GE(results[5]["scores"]["all"].get<double>(), 0.9);
  EXPECT_GE(results[9]["scores"]["all"].get<double>(), 0.9);
  const auto summary = json::parse(test::read_file(out / "summary.json"));
  EXPECT_EQ(summary["neurons"], 24);
  // A rerun resumes: nothing left to do, identical results.
  const auto before = test::read_file(out / "results.jsonl");
  r = test::run_cli(explain_args(out.path()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("24 already in the journal, 0 to do"));
  EXPECT_EQ(test::read_file(out / "results.jsonl"), before);
}

TEST_F(ExplainFixture, KillNineAtRandomMomentsLosesNothingAndResendsNothingCached) {
  test::TempDir work;
  OpenAiTestServer server(work / "server.log", {"--models", "test-model", "--rpm", "900", "--burst-seconds", "1"});
  const auto config = write_config(work / "llm.toml", server.base_url(), "requests_per_minute = 900\n");
  const std::vector<std::string> opts{"--config", config.string(), "--neurons-per-layer", "10"};

  // The uninterrupted reference (its own cache).
  const auto ref = work / "ref";
  auto r = test::run_cli(explain_args(ref, opts));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::size_t ref_requests = server.log().size();
  ASSERT_GT(ref_requests, 50u);

  // Killed five times at random moments, resumed each time; a fresh cache of its own.
  const auto out = work / "killed";
  std::mt19937 rng(20261126);
  std::uniform_int_distribution<int> ms(150, 1500);
  std::set<std::string> cached_before_kill;
  for (int k = 0; k < 5; ++k) {
    const std::size_t log_before = server.log().size();
    const pid_t pid = spawn_cli(explain_args(out, opts));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng)));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    // Whatever this run's requests were, none was already answered in the cache before it.
    const auto log = server.log();
    for (std::size_t i = log_before; i < log.size(); ++i)
      EXPECT_EQ(cached_before_kill.count(log[i]["hash"].get<std::string>()), 0u) << "re-sent a cached request " << log[i]["hash"];
    cached_before_kill = cached_hashes(out / "cache");
  }
  const std::size_t log_before = server.log().size();
  r = test::run_cli(explain_args(out, opts));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto log = server.log();
  for (std::size_t i = log_before; i < log.size(); ++i)
    EXPECT_EQ(cached_before_kill.count(log[i]["hash"].get<std::string>()), 0u) << "re-sent a cached request";
  EXPECT_EQ(test::read_file(out / "results.jsonl"), test::read_file(ref / "results.jsonl"));
  std::printf("kill -9 x5: %zu cached answers survived the last kill; final results identical to the uninterrupted run\n",
              cached_before_kill.size());
}

TEST_F(ExplainFixture, MpiPoolGivesTheSameResultsAsOneProcess) {
  if (test::run_process({"mpirun", "--version"}).exit_code != 0) GTEST_SKIP() << "mpirun is not installed";
  test::TempDir work;
  OpenAiTestServer server(work / "server.log", {"--models", "test-model"});
  const auto config = write_config(work / "llm.toml", server.base_url());
  for (const auto& mode : {std::vector<std::string>{"--offline"}, std::vector<std::string>{"--config", config.string()}}) {
    auto opts = mode;
    opts.insert(opts.end(), {"--neurons-per-layer", "12"});
    const auto one = work / ("one" + std::to_string(mode.size()));
    const auto three = work / ("three" + std::to_string(mode.size()));
    auto r = test::run_cli(explain_args(one, opts));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> mpi{"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3", NEXPLAIN_CLI};
    for (const auto& a : explain_args(three, opts)) mpi.push_back(a);
    r = test::run_process(mpi);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(test::read_file(three / "results.jsonl"), test::read_file(one / "results.jsonl")) << mode[0];
  }
}

TEST_F(ExplainFixture, ClearErrorsBeforeAnyWorkAndTheKeyNeverLeaks) {
  test::TempDir work;
  const std::string key = "sk-test-SECRET-0123456789";
  OpenAiTestServer server(work / "server.log", {"--models", "test-model", "--api-key", key, "--echo-key-in-errors"});
  // No key for a remote API.
  auto cfg = write_config(work / "remote.toml", "https://api.openai.invalid/v1", "api_key_env = \"NEXPLAIN_TEST_NO_SUCH_KEY\"\n");
  auto r = test::run_cli(explain_args(work / "o1", {"--config", cfg.string()}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("NEXPLAIN_TEST_NO_SUCH_KEY"));
  EXPECT_FALSE(fs::exists(work / "o1" / "results.jsonl"));
  // Nobody listening.
  cfg = write_config(work / "dead.toml", "http://127.0.0.1:9/v1", "max_retries = 0\n");
  r = test::run_cli(explain_args(work / "o2", {"--config", cfg.string()}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(fs::exists(work / "o2" / "results.jsonl"));
  // A model the server does not serve.
  cfg = write_config(work / "model.toml", server.base_url(), "api_key_env = \"NEXPLAIN_TEST_KEY\"\n", "no-such-model");
  r = test::run_cli(explain_args(work / "o3", {"--config", cfg.string()}), {"NEXPLAIN_TEST_KEY=" + key});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no-such-model"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr(key)));
  // A wrong key: the server quotes it back in its error; nexplain must not repeat it.
  cfg = write_config(work / "wrong.toml", server.base_url(), "api_key_env = \"NEXPLAIN_TEST_KEY\"\n");
  r = test::run_cli(explain_args(work / "o4", {"--config", cfg.string()}), {"NEXPLAIN_TEST_KEY=sk-wrong-key-987"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("sk-wrong-key-987")));
  // The right key: it works, and the key is nowhere in the outputs or the logs.
  r = test::run_cli(explain_args(work / "o5", {"--config", cfg.string(), "--neurons-per-layer", "3", "--log-level", "trace"}),
                    {"NEXPLAIN_TEST_KEY=" + key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err + r.out, ::testing::Not(HasSubstr(key)));
  for (const auto& e : fs::recursive_directory_iterator(work / "o5"))
    if (e.is_regular_file()) {
      EXPECT_THAT(test::read_file(e.path()), ::testing::Not(HasSubstr(key))) << e.path();
    }
}
