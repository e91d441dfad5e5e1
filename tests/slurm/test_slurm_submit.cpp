// `nexplain submit` against a real Slurm (the single-node cluster .ci/run brings up with
// scripts/slurm-local.sh): the chained jobs give exactly the results of `nexplain sweep`, also
// when the collect and explain jobs are signalled (USR1 -> checkpoint -> requeue -> resume),
// when a job is killed outright and the sweep resubmitted, and as a job array over layer ranges.
// Skipped, with the reason, when no Slurm controller answers. The dry-run checks of bad
// configs need no cluster and always run.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "slurm/process.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace nexplain;
using namespace std::chrono_literals;

namespace {

const fs::path kSource = NEXPLAIN_SOURCE_DIR;

std::string demo_toml() { return test::read_file(kSource / "jobs" / "demo.toml"); }

// The demo sweep with `from` replaced by `to` (each must occur exactly once).
std::string edited(std::string text, const std::vector<std::pair<std::string, std::string>>& edits) {
  for (const auto& [from, to] : edits) {
    const auto p = text.find(from);
    EXPECT_NE(p, std::string::npos) << "not in jobs/demo.toml: " << from;
    if (p != std::string::npos) text.replace(p, from.size(), to);
  }
  return text;
}

// The GPT-2 tokenizer: ../shared's copy, else the one scripts/fetch-tokenizer.sh puts in data/;
// "" when neither is there.
fs::path tokenizer_dir() {
  for (const auto& d : {test::shared_dir().empty() ? fs::path() : test::shared_dir() / "data" / "gpt2-tokenizer",
                        kSource / "data" / "gpt2-tokenizer"})
    if (!d.empty() && fs::exists(d / "encoder.json") && fs::exists(d / "vocab.bpe")) return d;
  return {};
}

test::CliResult submit(const fs::path& toml, const fs::path& out, bool dry_run = false) {
  std::vector<std::string> args = {"submit", toml.string(), "--out", out.string(), "--templates", (kSource / "slurm").string()};
  if (!tokenizer_dir().empty()) args.insert(args.end(), {"--tokenizer", tokenizer_dir().string()});
  if (dry_run) args.push_back("--dry-run");
  return test::run_cli(args);
}

// scontrol's one-line records of a job (an array: one per task).
std::vector<std::string> job_lines(const std::string& id) {
  const auto r = test::run_process({"scontrol", "-o", "show", "job", id});
  std::vector<std::string> out;
  std::istringstream ss(r.out);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

std::string field(const std::string& line, const std::string& key) {
  const std::regex re("(^| )" + key + "=(\\S*)");
  std::smatch m;
  return std::regex_search(line, m, re) ? m[2].str() : std::string();
}

std::string job_state(const std::string& id) {
  const auto l = job_lines(id);
  return l.empty() ? std::string("(gone)") : field(l.front(), "JobState");
}

// Waits until `pred` holds, polling every 200 ms; false after `limit`.
bool wait_for(const std::function<bool()>& pred, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return pred();
}

bool in_queue(const std::string& id) { return !test::run_process({"squeue", "-h", "-j", id, "-o", "%i"}).out.empty(); }

// A requeued job waits ~2 min (Slurm's BeginTime after a requeue); start it sooner. Not at once:
// slurmd refuses to launch a job whose credential was revoked (by the requeue) in the same
// second, and the job would then fail ("Job credential revoked").
void release_when_requeued(const std::string& id) {
  ASSERT_TRUE(wait_for([&] { return job_state(id) == "PENDING"; }, 120s)) << "job " << id << " not requeued: " << job_state(id);
  std::this_thread::sleep_for(3s);
  test::run_process({"scontrol", "update", "JobId=" + id, "StartTime=now"});
}

// Job ids by stage, from `nexplain submit`'s output lines "<stage> job <id> ...".
std::map<std::string, std::string> job_ids(const std::string& out) {
  std::map<std::string, std::string> ids;
  const std::regex re("^(tokenize|collect|explain)\\s+job (\\d+)");
  std::istringstream ss(out);
  for (std::string l; std::getline(ss, l);) {
    std::smatch m;
    if (std::regex_search(l, m, re)) ids[m[1]] = m[2];
  }
  return ids;
}

void wait_chain(const std::map<std::string, std::string>& ids, std::chrono::seconds limit = 600s) {
  for (const auto& [stage, id] : ids) ASSERT_TRUE(wait_for([&] { return !in_queue(id); }, limit)) << stage << " job " << id << " still queued";
}

std::string slurm_log(const fs::path& out, const std::string& stage) {
  std::string all;
  for (const auto& e : fs::directory_iterator(out / "slurm"))
    if (e.path().filename().string().rfind(stage + "-", 0) == 0) all += test::read_file(e.path());
  return all;
}

std::size_t lines_in(const fs::path& p) {
  std::ifstream in(p);
  std::size_t n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

// The records datasets byte for byte (attributes hold paths and command lines) and the
// explain results line for line.
void expect_same_results(const fs::path& ref, const fs::path& got) {
  ASSERT_TRUE(fs::exists(got / "records.h5"));
  ASSERT_TRUE(fs::exists(got / "explain" / "results.jsonl"));
  const auto a = test::hdf5_dataset_bytes(ref / "records.h5");
  const auto b = test::hdf5_dataset_bytes(got / "records.h5");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, bytes] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(bytes == b.at(name)) << "dataset " << name << " differs";
  }
  EXPECT_EQ(test::read_file(ref / "explain" / "results.jsonl"), test::read_file(got / "explain" / "results.jsonl"));
}

// The demo sweep made slower to collect (the corpus three times, one thread per rank) so that
// a signal lands mid-run, with a checkpoint every 256 excerpts.
std::string slow_toml() {
  return edited(demo_toml(), {{"inputs = [\"/usr/share/common-licenses/*\"]",
                               "inputs = [\"/usr/share/common-licenses/*\", \"/usr/share/common-licenses/*\", "
                               "\"/usr/share/common-licenses/*\"]"},
                              {"batch = 32", "batch = 16\nthreads = 1"}});
}

// Direct `nexplain sweep` references of the demo and the slow sweep. CTest runs every test in
// its own process, possibly two at once, so they are made once per binary build into a shared
// directory, under a lock.
class SlurmSweep : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tokenizer_dir().empty())
      GTEST_SKIP() << "no GPT-2 tokenizer: neither ../shared/data/gpt2-tokenizer (NEXPLAIN_SHARED_DIR) nor data/gpt2-tokenizer "
                      "(scripts/fetch-tokenizer.sh)";
    if (!slurm_reachable())
      GTEST_SKIP() << "no Slurm controller answers `scontrol ping`: .ci/run brings one up (scripts/slurm-local.sh)";
    const fs::path cli = std::getenv("NEXPLAIN_CLI") ? fs::path(std::getenv("NEXPLAIN_CLI")) : fs::path(NEXPLAIN_CLI);
    const auto stamp = fs::last_write_time(cli).time_since_epoch().count();
    refs_ = fs::path(NEXPLAIN_TEST_TMP) / ("slurm-ref-" + std::to_string(stamp));
    fs::create_directories(refs_);
    const int fd = ::open((refs_ / "lock").c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(fd, 0);
    ::flock(fd, LOCK_EX);
    test::write_file(refs_ / "slow.toml", slow_toml());
    for (const auto& [name, toml] : {std::pair{"demo", kSource / "jobs" / "demo.toml"}, std::pair{"slow", refs_ / "slow.toml"}}) {
      if (fs::exists(ref(name) / "explain" / "results.jsonl")) continue;
      const auto r = test::run_cli({"sweep", toml.string(), "--out", ref(name).string(), "--tokenizer", tokenizer_dir().string()});
      if (r.exit_code != 0) {
        ::close(fd);
        FAIL() << "reference sweep " << name << ": " << r.err;
      }
    }
    ::close(fd);
  }
  fs::path ref(const std::string& name) const { return refs_ / ("ref-" + name); }
  fs::path refs_;
};

}  // namespace

TEST(SlurmDryRun, RejectsBadConfigsNamingTheKey) {
  test::TempDir t;
  struct Case {
    const char* what;
    std::vector<std::pair<std::string, std::string>> edits;
    std::vector<std::string> expect;  // parts of the message
  };
  const std::vector<Case> cases = {
      {"unknown key", {{"[slurm.collect]\n", "[slurm.collect]\ngpu_per_task = 1\n"}}, {"[slurm.collect]", "unknown key 'gpu_per_task'"}},
      {"unknown [slurm] key", {{"signal_margin = 60", "signal_margin = 60\npartiton = \"debug\""}}, {"[slurm]", "unknown key 'partiton'"}},
      {"missing model",
       {{"planted = \"L0.N5=token:383;L1.N17=tokens:11,13;L0.N3=position:0-1;L1.N40=token:262\"", "dir = \"/nonexistent/gpt2\""},
        {"n_layer = 2\nn_embd = 64\nn_head = 4\nn_inner = 256\nseed = 1\n", ""}},
       {"[model] dir", "/nonexistent/gpt2"}},
      {"GPUs on a CPU partition", {{"[slurm.explain]\n", "[slurm.explain]\npartition = \"debug\"\ngpus_per_task = 1\n"}},
       {"[slurm.explain]", "gpus_per_task", "'debug'", "gpu_partitions"}},
      {"time limit under the margin", {{"[slurm.collect]\n", "[slurm.collect]\ntime = \"00:00:50\"\n"}},
       {"[slurm.collect]", "time", "signal_margin"}},
      {"secret in env", {{"signal_margin = 60", "signal_margin = 60\nenv = { OPENAI_API_KEY = \"sk-x\" }"}}, {"env", "OPENAI_API_KEY"}},
      {"unknown sweep key", {{"[collect]\n", "[collect]\ntopk = 3\n"}}, {"[collect]", "unknown key 'topk'"}},
  };
  for (const auto& c : cases) {
    const auto toml = t / "bad.toml";
    test::write_file(toml, edited(demo_toml(), c.edits));
    const auto r = submit(toml, t / "out", /*dry_run=*/true);
    EXPECT_EQ(r.exit_code, 1) << c.what << ": " << r.out;
    for (const auto& part : c.expect) EXPECT_NE(r.err.find(part), std::string::npos) << c.what << ": " << r.err;
    EXPECT_NE(r.err.find("bad.toml"), std::string::npos) << c.what << ": the message names the file: " << r.err;
    EXPECT_EQ(r.err.find("sk-x"), std::string::npos) << "a secret must never be printed";
  }
  EXPECT_FALSE(fs::exists(t / "out" / "slurm" / "jobs.jsonl"));
}

TEST(SlurmDryRun, PrintsPreemptionSafeScriptsAndSubmitsNothing) {
  test::TempDir t;
  const auto r = submit(kSource / "jobs" / "demo.toml", t / "out", /*dry_run=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* part : {"#SBATCH --signal=B:USR1@60", "#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --ntasks=2",
                           "#SBATCH --time=00:20:00", "scontrol requeue", "--stage tokenize", "--stage collect", "--stage explain",
                           "--kill-on-invalid-dep=yes", "srun --mpi=pmix", "mpirun"})
    EXPECT_NE(r.out.find(part), std::string::npos) << part;
  EXPECT_FALSE(fs::exists(t / "out" / "slurm" / "jobs.jsonl"));
  // A job array over layer ranges when [slurm.collect] asks for it.
  test::write_file(t / "array.toml", edited(demo_toml(), {{"[slurm.collect]\n", "[slurm.collect]\narray_layers = 1\n"}}));
  const auto a = submit(t / "array.toml", t / "out2", true);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_NE(a.out.find("#SBATCH --array=0-1"), std::string::npos);
  EXPECT_NE(a.out.find("NX_PARTS=('0' '1')"), std::string::npos);
  // The other shipped sweeps are valid as far as they can be without their model on disk.
  for (const char* job : {"gpt2-small.toml", "gpt2-xl.toml"}) {
    const auto x = submit(kSource / "jobs" / job, t / job, true);
    EXPECT_EQ(x.exit_code, 1) << job;
    EXPECT_NE(x.err.find("[model] dir"), std::string::npos) << job << ": " << x.err;
  }
}

TEST_F(SlurmSweep, SubmitDemoMatchesTheDirectSweep) {
  test::TempDir t;
  const auto r = submit(kSource / "jobs" / "demo.toml", t / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ids = job_ids(r.out);
  ASSERT_EQ(ids.size(), 3u) << r.out;
  wait_chain(ids);
  for (const auto& [stage, id] : ids) EXPECT_EQ(job_state(id), "COMPLETED") << stage << "\n" << slurm_log(t / "out", stage);
  expect_same_results(ref("demo"), t / "out");
  const auto s = test::run_cli({"status", (t / "out").string()});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("explain   done     512/512"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("COMPLETED"), std::string::npos) << s.out;
  // Everything done: a second submit has nothing to do.
  const auto again = submit(kSource / "jobs" / "demo.toml", t / "out");
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("nothing to submit"), std::string::npos) << again.out;
}

TEST_F(SlurmSweep, CollectAndExplainSignalledMidRunRequeueAndResume) {
  test::TempDir t;
  test::write_file(t / "slow.toml", slow_toml());
  const fs::path out = t / "out";
  const auto r = submit(t / "slow.toml", out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ids = job_ids(r.out);
  ASSERT_EQ(ids.size(), 3u) << r.out;

  // Collect: USR1 to the batch shell once a periodic checkpoint shows it is mid-run.
  ASSERT_TRUE(wait_for([&] { return fs::exists(out / "records.ckpt.h5"); }, 300s)) << slurm_log(out, "collect");
  ASSERT_EQ(test::run_process({"scancel", "--signal=USR1", "--batch", ids.at("collect")}).exit_code, 0);
  release_when_requeued(ids.at("collect"));

  // Explain: USR1 once some neurons are journaled.
  ASSERT_TRUE(wait_for([&] { return lines_in(out / "explain" / "journal.jsonl") >= 40; }, 300s)) << slurm_log(out, "explain");
  ASSERT_EQ(test::run_process({"scancel", "--signal=USR1", "--batch", ids.at("explain")}).exit_code, 0);
  release_when_requeued(ids.at("explain"));

  wait_chain(ids);
  for (const auto& [stage, id] : ids) EXPECT_EQ(job_state(id), "COMPLETED") << stage << "\n" << slurm_log(out, stage);
  EXPECT_EQ(field(job_lines(ids.at("collect")).front(), "Restarts"), "1");
  EXPECT_EQ(field(job_lines(ids.at("explain")).front(), "Restarts"), "1");
  const auto clog = slurm_log(out, "collect");
  EXPECT_NE(clog.find("got SIGUSR1"), std::string::npos) << clog;
  EXPECT_NE(clog.find("resumed at"), std::string::npos) << clog;
  const auto elog = slurm_log(out, "explain");
  EXPECT_NE(elog.find("stopped by a signal"), std::string::npos) << elog;
  EXPECT_NE(elog.find("resumed)"), std::string::npos) << elog;
  EXPECT_EQ(elog.find("(0 resumed)"), std::string::npos) << "the requeued explain run resumed nothing:\n" << elog;
  expect_same_results(ref("slow"), out);
}

TEST_F(SlurmSweep, KilledCollectJobResumesWhenResubmitted) {
  test::TempDir t;
  test::write_file(t / "slow.toml", slow_toml());
  const fs::path out = t / "out";
  const auto r = submit(t / "slow.toml", out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ids = job_ids(r.out);
  ASSERT_EQ(ids.size(), 3u) << r.out;
  ASSERT_TRUE(wait_for([&] { return fs::exists(out / "records.ckpt.h5"); }, 300s)) << slurm_log(out, "collect");
  // Killed outright: no requeue; the explain job, waiting on it, is cancelled with it.
  ASSERT_EQ(test::run_process({"scancel", ids.at("collect")}).exit_code, 0);
  wait_chain(ids, 120s);
  EXPECT_EQ(job_state(ids.at("collect")), "CANCELLED");
  EXPECT_EQ(job_state(ids.at("explain")), "CANCELLED");
  ASSERT_TRUE(fs::exists(out / "records.ckpt.h5"));
  EXPECT_FALSE(fs::exists(out / "records.h5"));

  const auto again = submit(t / "slow.toml", out);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const auto ids2 = job_ids(again.out);
  ASSERT_EQ(ids2.size(), 2u) << "tokenize is done; collect and explain remain:\n" << again.out;
  EXPECT_TRUE(ids2.count("collect") && ids2.count("explain"));
  wait_chain(ids2);
  for (const auto& [stage, id] : ids2) EXPECT_EQ(job_state(id), "COMPLETED") << stage << "\n" << slurm_log(out, stage);
  EXPECT_NE(slurm_log(out, "collect").find("resumed at"), std::string::npos) << slurm_log(out, "collect");
  expect_same_results(ref("slow"), out);
}

TEST_F(SlurmSweep, JobArrayOverLayerRangesMatchesOneJob) {
  test::TempDir t;
  test::write_file(t / "array.toml", edited(demo_toml(), {{"[slurm.collect]\n", "[slurm.collect]\narray_layers = 1\nntasks = 1\n"},
                                                         {"ntasks = 2                # 2 data-parallel", "# ntasks = 2 data-parallel"}}));
  const fs::path out = t / "out";
  const auto r = submit(t / "array.toml", out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ids = job_ids(r.out);
  ASSERT_EQ(ids.size(), 3u) << r.out;
  EXPECT_NE(r.out.find("array of 2 layer ranges"), std::string::npos) << r.out;
  wait_chain(ids);
  const auto tasks = job_lines(ids.at("collect"));
  EXPECT_EQ(tasks.size(), 2u);
  for (const auto& l : tasks) EXPECT_EQ(field(l, "JobState"), "COMPLETED") << l;
  EXPECT_EQ(job_state(ids.at("explain")), "COMPLETED") << slurm_log(out, "explain");
  EXPECT_TRUE(fs::exists(out / "parts" / "records.L0.h5"));
  EXPECT_TRUE(fs::exists(out / "parts" / "records.L1.h5"));
  expect_same_results(ref("demo"), out);
}
