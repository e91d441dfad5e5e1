// Record splits (DESIGN.md: top stride 4 into train/calibration/valid/test, random stride 3 into
// calibration/valid/test) and the token strings shown to explainers.
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "explain/record_splits.hpp"

using namespace nexplain;

namespace {

using Ids = std::vector<std::uint64_t>;

NeuronRecord make_record(std::size_t n_top, std::size_t n_random) {
  NeuronRecord r;
  r.layer = 2;
  r.neuron = 7;
  for (std::size_t i = 0; i < n_top; ++i) {
    // Excerpt ids 100 + i; activations mark the id so a test can see they travel together.
    r.top.push_back({100 + i, static_cast<float>(50 - i), 0, {static_cast<float>(i), 0.0f, 1.0f}});
  }
  for (std::size_t i = 0; i < n_random; ++i) r.random.push_back({200 + i, 0.5f, 1000 + i, {0.0f, 0.5f, 0.0f}});
  return r;
}

// Tokens of excerpt id x: {x, x+1, x+2}.
std::vector<std::uint32_t> lookup(std::uint64_t id) {
  const auto x = static_cast<std::uint32_t>(id);
  return {x, x + 1, x + 2};
}

Ids ids(const std::vector<SplitExcerpt>& v) {
  Ids out;
  for (const auto& e : v) out.push_back(e.excerpt_id);
  return out;
}

}  // namespace

TEST(ExplainSplits, InterleavedIndices) {
  EXPECT_EQ(interleaved_indices(10, 4, 0), (std::vector<std::size_t>{0, 4, 8}));
  EXPECT_EQ(interleaved_indices(10, 4, 2), (std::vector<std::size_t>{2, 6}));
  EXPECT_EQ(interleaved_indices(10, 4, 3), (std::vector<std::size_t>{3, 7}));
  EXPECT_EQ(interleaved_indices(2, 4, 3), (std::vector<std::size_t>{}));
  EXPECT_EQ(interleaved_indices(20, 3, 1, 2), (std::vector<std::size_t>{1, 4}));
  EXPECT_THROW(interleaved_indices(10, 4, 4), Error);
  EXPECT_THROW(interleaved_indices(10, 0, 0), Error);
}

TEST(ExplainSplits, TopStride4RandomStride3) {
  const auto s = split_records(make_record(20, 20), lookup);
  EXPECT_EQ(s.layer, 2u);
  EXPECT_EQ(s.neuron, 7u);
  EXPECT_EQ(ids(s.train), (Ids{100, 104, 108, 112, 116}));
  EXPECT_EQ(ids(s.calibration_top), (Ids{101, 105, 109, 113, 117}));
  EXPECT_EQ(ids(s.valid_top), (Ids{102, 106, 110, 114, 118}));
  EXPECT_EQ(ids(s.test_top), (Ids{103, 107, 111, 115, 119}));
  EXPECT_EQ(ids(s.calibration_random), (Ids{200, 203, 206, 209, 212, 215, 218}));
  EXPECT_EQ(ids(s.valid_random), (Ids{201, 204, 207, 210, 213, 216, 219}));
  EXPECT_EQ(ids(s.test_random), (Ids{202, 205, 208, 211, 214, 217}));
  // Tokens and activations travel with their excerpt.
  EXPECT_EQ(s.valid_top[1].tokens, (std::vector<std::uint32_t>{106, 107, 108}));
  EXPECT_EQ(s.valid_top[1].acts, (std::vector<float>{6.0f, 0.0f, 1.0f}));
}

TEST(ExplainSplits, PerSplitCapAndShortLists) {
  auto s = split_records(make_record(20, 20), lookup, 2);
  EXPECT_EQ(ids(s.train), (Ids{100, 104}));
  EXPECT_EQ(ids(s.valid_random), (Ids{201, 204}));
  s = split_records(make_record(3, 1), lookup);
  EXPECT_EQ(ids(s.train), (Ids{100}));
  EXPECT_EQ(ids(s.valid_top), (Ids{102}));
  EXPECT_TRUE(s.test_top.empty());
  EXPECT_EQ(ids(s.calibration_random), (Ids{200}));
  EXPECT_TRUE(s.valid_random.empty());
}

TEST(ExplainSplits, TokenCountMustMatchActivations) {
  const auto bad = [](std::uint64_t) { return std::vector<std::uint32_t>{1, 2}; };
  try {
    split_records(make_record(4, 0), bad);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("L2.N7: excerpt 100 has 2 tokens but 3 activations"), std::string::npos) << e.what();
  }
}

TEST(ExplainSplits, SanitizeUtf8) {
  EXPECT_EQ(sanitize_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(sanitize_utf8("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");
  // Half of a 3-byte character (what a byte-level BPE token often holds): each byte replaced.
  EXPECT_EQ(sanitize_utf8("\xE2\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // Overlong encoding of '/' and a UTF-16 surrogate are invalid too.
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}
