#pragma once
// Helpers shared by the tests: where ../shared is (skip when absent), scratch directories, and
// running the nexplain CLI as a real process.
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace nexplain::test {

// The shared fixtures directory, or "" when absent (env NEXPLAIN_SHARED_DIR overrides).
std::filesystem::path shared_dir();

// Use as: NEXPLAIN_REQUIRE_SHARED(path) -> skips the test, saying why, when ../shared is absent.
#define NEXPLAIN_REQUIRE_SHARED(var)                                                            \
  const std::filesystem::path var = ::nexplain::test::shared_dir();                            \
  if (var.empty()) GTEST_SKIP() << "../shared (fixtures and corpora) is absent: set "           \
                                   "NEXPLAIN_SHARED_DIR to run this test"

// A fresh empty directory for this test, removed at the end unless NEXPLAIN_KEEP_TMP is set.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs the nexplain binary with `args` (no shell), capturing stdout and stderr.
CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {});
// Runs any program (argv[0] is looked up in PATH).
CliResult run_process(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& data);

}  // namespace nexplain::test
