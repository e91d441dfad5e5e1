#include "test_support.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/h5file.hpp"
#include "io/sequences.hpp"

extern char** environ;

namespace nexplain::test {

namespace fs = std::filesystem;

namespace {
// The environment every test process (and what it spawns) runs in, unless the caller set it:
// one OpenBLAS thread (the machine's cores are shared by ctest -j), and Open MPI allowed to run
// as root and to oversubscribe (CI runs as root on 2 cores).
const bool kEnvironmentSet = [] {
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
  return true;
}();
}  // namespace

fs::path shared_dir() {
  const char* env = std::getenv("NEXPLAIN_SHARED_DIR");
  fs::path p = env ? fs::path(env) : fs::path(NEXPLAIN_SHARED_DIR);
  std::error_code ec;
  if (fs::is_regular_file(p / "DESIGN.md", ec) || fs::is_directory(p / "fixtures", ec)) return fs::weakly_canonical(p);
  return {};
}

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "test";
  for (auto& c : name) if (c == '/') c = '_';
  path_ = fs::path(NEXPLAIN_TEST_TMP) / (name + "." + std::to_string(getpid()) + "." + std::to_string(counter++));
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  if (!std::getenv("NEXPLAIN_KEEP_TMP")) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

fs::path write_random_sequences(const fs::path& path, std::uint64_t n, int T, std::uint32_t vocab, std::uint32_t seed,
                                std::uint32_t planted_token) {
  SequencesInfo info;
  info.seq_len = T;
  info.vocab_size = vocab;
  info.eot_id = vocab - 1;
  info.tokenizer_sha256 = "synthetic";
  SequencesWriter w(path, info);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::uint32_t> tok(0, vocab - 1);
  std::vector<std::uint32_t> ids(n * static_cast<std::uint64_t>(T));
  for (auto& t : ids) t = rng() % 50 == 0 ? planted_token : tok(rng);
  w.append(ids);
  w.finish({{"source", "synthetic"}});
  return path;
}

std::map<std::string, std::vector<std::uint8_t>> hdf5_dataset_bytes(const fs::path& file) {
  auto f = h5::File::open_read(file);
  std::map<std::string, std::vector<std::uint8_t>> out;
  for (const auto& name : f.list_datasets()) out[name] = f.open_dataset(name).read_raw_bytes();
  return out;
}

std::string errmsg(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

CliResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  TempDir io;
  const fs::path out = io / "stdout", err = io / "stderr";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  for (const auto& e : env) envs.push_back(e);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  CliResult r;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data()) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    r.err = "spawn failed: " + argv[0];
    return r;
  }
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

std::string gpt2_tokenizer_json(const fs::path& gpt2_dir, bool array_merges) {
  using nlohmann::json;
  std::istringstream bpe(read_file(gpt2_dir / "vocab.bpe"));
  json merges = json::array();
  for (std::string line; std::getline(bpe, line);) {
    if (line.empty() || line.starts_with("#version")) continue;
    if (array_merges) {
      const auto sp = line.find(' ');
      merges.push_back(json::array({line.substr(0, sp), line.substr(sp + 1)}));
    } else {
      merges.push_back(line);
    }
  }
  const json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       json::array({{{"id", 50256}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", true}, {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false},
        {"vocab", json::parse(read_file(gpt2_dir / "encoder.json"))}, {"merges", merges}}}};
  return j.dump();
}

CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  const char* cli = std::getenv("NEXPLAIN_CLI");
  std::vector<std::string> argv{cli ? cli : NEXPLAIN_CLI};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, env);
}

}  // namespace nexplain::test
