// The records file's writing steps (io/records_file.hpp): write_records_file and the same steps
// taken one by one (as the MPI collect's stage roots take them) give the same bytes, also a
// second apart (datasets carry no modification times), and steps out of order are refused.
#include <chrono>
#include <cmath>
#include <thread>

#include <gtest/gtest.h>

#include "io/records_file.hpp"
#include "test_support.hpp"

using namespace nexplain;

namespace {

constexpr std::uint32_t kT = 4;

// A layer's state after 6 excerpts (ids first..first+5) of kT tokens x 5 neurons.
CaptureState observed_layer(std::uint32_t layer, std::uint64_t first) {
  CaptureParams p;
  p.T = kT;
  p.K = 3;
  p.R = 2;
  p.Q = 1;
  p.layer = layer;
  CaptureState s(p, 5);
  std::vector<float> acts(6 * kT * 5);
  for (std::size_t i = 0; i < acts.size(); ++i) acts[i] = std::sin(0.37f * static_cast<float>(i) + static_cast<float>(layer));
  std::vector<std::uint64_t> ids;
  for (std::uint64_t j = 0; j < 6; ++j) ids.push_back(first + j);
  s.update(acts, ids);
  return s;
}

RecordsMeta meta_of(const CaptureState& s, std::vector<int> layers) {
  RecordsMeta m;
  m.params = s.params();
  m.params.layer = 0;
  m.layers = std::move(layers);
  m.n_excerpts = 10;
  m.model = {{"files", nlohmann::json::object()}};
  m.corpus = {{"sha256", "0"}};
  m.backend = "cpu:fp32";
  m.command_line = "test";
  m.nexplain_version = "test";
  return m;
}

std::vector<std::uint32_t> tokens_of(std::uint64_t id) {
  return {static_cast<std::uint32_t>(id), 1, 2, static_cast<std::uint32_t>(id * 7)};
}

}  // namespace

TEST(RecordsFileSteps, OneCallAndTheStepsOneByOneGiveTheSameBytes) {
  test::TempDir dir;
  const CaptureState a = observed_layer(1, 0), b = observed_layer(3, 4);
  const RecordsMeta meta = meta_of(a, {1, 3});
  std::vector<std::uint64_t> ids;
  collect_referenced_ids(a.arrays(), ids);
  collect_referenced_ids(b.arrays(), ids);
  sort_unique_ids(ids);
  ASSERT_FALSE(ids.empty());
  std::map<std::uint64_t, std::vector<std::uint32_t>> by_id;
  std::vector<std::uint32_t> flat;
  for (auto id : ids) {
    by_id[id] = tokens_of(id);
    for (auto t : tokens_of(id)) flat.push_back(t);
  }
  write_records_file(dir / "one-call.h5", meta, {&a, &b}, by_id);
  // Over a second later: modification times, if any were stored, would differ.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const auto steps = dir / "steps.h5";
  create_records_file(steps, meta);
  append_records_layer(steps, a);
  append_records_layer(steps, b);
  append_records_excerpts(steps, ids, flat);
  EXPECT_TRUE(test::read_file(dir / "one-call.h5") == test::read_file(steps)) << "the files differ";

  const RecordsFile rf(steps);
  EXPECT_EQ(rf.meta().layers, (std::vector<int>{1, 3}));
  EXPECT_EQ(rf.layer_state(3).arrays().topk_ids, b.arrays().topk_ids);
  EXPECT_EQ(rf.layer_state(1).arrays().mom_m2, a.arrays().mom_m2);
  EXPECT_EQ(rf.excerpt_tokens(ids.back()), tokens_of(ids.back()));
}

TEST(RecordsFileSteps, StepsOutOfOrderAreRefused) {
  test::TempDir dir;
  const auto f = dir / "r.h5";
  const CaptureState a = observed_layer(1, 0), b = observed_layer(3, 4), c = observed_layer(2, 0);
  create_records_file(f, meta_of(a, {1, 3}));
  EXPECT_HAS(test::errmsg([&] { append_records_layer(f, b); }), "layer 3 is appended before layer 1");
  EXPECT_HAS(test::errmsg([&] { append_records_layer(f, c); }), "layer 2 is not among the file's layers [1,3]");
  append_records_layer(f, a);
  EXPECT_HAS(test::errmsg([&] { append_records_layer(f, a); }), "layer 1 is already written");
  EXPECT_HAS(test::errmsg([&] { append_records_excerpts(f, {}, {}); }), "the excerpts are appended before layer 3");
  append_records_layer(f, b);
  EXPECT_HAS(test::errmsg([&] { append_records_excerpts(f, {2, 1}, std::vector<std::uint32_t>(2 * kT)); }),
             "excerpt ids are not ascending and unique");
  EXPECT_HAS(test::errmsg([&] { append_records_excerpts(f, {1, 2}, std::vector<std::uint32_t>(kT)); }),
             "4 tokens for 2 excerpts of 4 tokens");
}
