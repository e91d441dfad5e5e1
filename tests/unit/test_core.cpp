#include <filesystem>

#include <gtest/gtest.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "test_support.hpp"

using namespace nexplain;

TEST(Progress, FormatsRateAndEta) {
  EXPECT_EQ(Progress::human(999), "999");
  EXPECT_EQ(Progress::human(1234567), "1.23M");
  EXPECT_EQ(Progress::duration(59), "59s");
  EXPECT_EQ(Progress::duration(3725), "1h02m");
  Progress p("collect", 1000, "tokens");
  p.update(500);
  EXPECT_NE(p.line().find("50.0%"), std::string::npos) << p.line();
}

TEST(AtomicOutput, NothingVisibleUntilCommit) {
  test::TempDir dir;
  const auto target = dir / "out.bin";
  {
    AtomicOutput out(target);
    test::write_file(out.temp_path(), "partial");
    EXPECT_FALSE(std::filesystem::exists(target));
  }  // not committed: the temporary disappears, nothing looks complete
  EXPECT_FALSE(std::filesystem::exists(target));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  write_file_atomic(target, "done");
  EXPECT_EQ(test::read_file(target), "done");
}

TEST(AtomicOutput, MissingDirectoryIsAClearError) {
  test::TempDir dir;
  try {
    AtomicOutput out(dir / "nope" / "x.h5");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

TEST(Cli, VersionAndHelp) {
  auto r = test::run_cli({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("nexplain"), std::string::npos);
  r = test::run_cli({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("tokenize"), std::string::npos);
  r = test::run_cli({"no-such-command"});
  EXPECT_NE(r.exit_code, 0);
}
