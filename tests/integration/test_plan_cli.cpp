// `nexplain plan` as a real process on the shipped Llama-3.1 shapes (jobs/models): the report,
// the JSON form, and usage errors.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {
const fs::path kModels = fs::path(NEXPLAIN_SOURCE_DIR) / "jobs" / "models";
}

TEST(PlanCli, Llama31On8Gpus) {
  const auto r8 = nexplain::test::run_cli({"plan", "--model", (kModels / "llama-3.1-8b").string(), "--gpus", "8"});
  ASSERT_EQ(r8.exit_code, 0) << r8.err;
  EXPECT_HAS(r8.out, "8,030,261,248 parameters");
  EXPECT_HAS(r8.out, "chosen split: 1 pipeline stage(s) x 8 data-parallel replica(s)");
  EXPECT_HAS(r8.out, "rates: bench/NOTES.md");

  const auto r70 = nexplain::test::run_cli(
      {"plan", "--model", (kModels / "llama-3.1-70b" / "config.json").string(), "--gpus", "8", "--gpu-mem", "80",
       "--excerpts", "2000000", "--json"});
  ASSERT_EQ(r70.exit_code, 0) << r70.err;
  const auto j = nlohmann::json::parse(r70.out);
  EXPECT_TRUE(j.at("fits").get<bool>());
  EXPECT_GT(j.at("stages").get<int>(), 1);
  EXPECT_EQ(j.at("stages").get<int>() * j.at("replicas").get<int>() + j.at("idle_gpus").get<int>(), 8);
  EXPECT_EQ(j.at("stage").size(), j.at("stages").get<std::size_t>());
  EXPECT_EQ(j.at("stage").back().at("last_layer").get<int>(), 79);
  EXPECT_NEAR(j.at("main_seconds").get<double>(), 2e6 * 64 / j.at("tokens_per_s").get<double>(),
              0.01 * j.at("main_seconds").get<double>());
}

TEST(PlanCli, Errors) {
  nexplain::test::TempDir dir;
  nexplain::test::write_file(dir / "config.json", R"({"model_type": "llama", "hidden_size": 64})");
  const auto bad = nexplain::test::run_cli({"plan", "--model", dir.path().string(), "--gpus", "2"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_HAS(bad.err, "config.json: missing field 'num_hidden_layers'");
  const auto usage = nexplain::test::run_cli({"plan", "--model", (kModels / "llama-3.1-8b").string()});
  EXPECT_EQ(usage.exit_code, 2);  // --gpus is required
  const auto prec = nexplain::test::run_cli(
      {"plan", "--model", (kModels / "llama-3.1-8b").string(), "--gpus", "1", "--precision", "int4"});
  EXPECT_EQ(prec.exit_code, 1);
  EXPECT_HAS(prec.err, "precision 'int4' has no measured rates");
}
