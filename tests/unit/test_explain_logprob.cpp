// Expected value over "0".."10" from logprobs (DESIGN.md simulators (a) and (b)).
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "explain/logprob_parse.hpp"

using namespace nexplain;

namespace {
constexpr double kTol = 1e-12;
const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

TokenLogprob tok(std::string text, std::vector<TopLogprob> top = {}, double lp = 0.0) {
  TokenLogprob t;
  t.token = std::move(text);
  t.logprob = lp;
  t.top = std::move(top);
  return t;
}
}  // namespace

TEST(ExplainLogprob, ActivationTokenValue) {
  for (int v = 0; v <= 10; ++v) EXPECT_EQ(activation_token_value(std::to_string(v)), v);
  EXPECT_EQ(activation_token_value(" 7"), 7);
  EXPECT_EQ(activation_token_value("\t7"), 7);
  EXPECT_EQ(activation_token_value("7\n"), 7);
  EXPECT_EQ(activation_token_value(" 10 "), 10);
  EXPECT_EQ(activation_token_value("\xE2\x96\x81" "3"), 3);  // sentencepiece's space marker
  for (const char* bad : {"11", "07", "-1", "+3", "3.0", "", " ", "unknown", "1 0", "ten", "10%"})
    EXPECT_FALSE(activation_token_value(bad).has_value()) << bad;
}

TEST(ExplainLogprob, ExpectedValueRenormalisesOverDigits) {
  // Probabilities 0.1 on "2" and 0.3 on "4" (the rest on words): (0.1*2 + 0.3*4) / 0.4 = 3.5.
  const std::map<std::string, double> top{{"2", std::log(0.1)}, {"4", std::log(0.3)}, {" the", std::log(0.6)}};
  EXPECT_NEAR(expected_activation(top), 3.5, kTol);
  EXPECT_NEAR(expected_activation(std::map<std::string, double>{{"10", -0.5}}), 10.0, kTol);
  EXPECT_NEAR(expected_activation(std::map<std::string, double>{{"0", -0.1}}), 0.0, kTol);
}

TEST(ExplainLogprob, NoDigitsGivesZero) {
  EXPECT_EQ(expected_activation(std::map<std::string, double>{}), 0.0);
  EXPECT_EQ(expected_activation(std::map<std::string, double>{{"unknown", -0.1}, {"high", -2.0}}), 0.0);
  EXPECT_EQ(expected_activation(std::map<std::string, double>{{"5", -kInf}, {"6", kNaN}}), 0.0);
}

TEST(ExplainLogprob, SpacedDuplicatesAddUp) {
  // " 8" and "8" both 0.25, "0" 0.5 -> (0.5*8) / 1.0 = 4.
  const std::vector<TopLogprob> top{{" 8", std::log(0.25)}, {"8", std::log(0.25)}, {"0", std::log(0.5)}};
  EXPECT_NEAR(expected_activation(top), 4.0, kTol);
}

TEST(ExplainLogprob, StableForVeryNegativeLogprobs) {
  // Both would underflow to 0 if exponentiated directly.
  const std::vector<TopLogprob> top{{"1", -1000.0}, {"2", -1001.0}};
  const double e = std::exp(-1.0);
  EXPECT_NEAR(expected_activation(top), (1.0 + 2.0 * e) / (1.0 + e), kTol);
}

TEST(ExplainLogprob, TokenItselfCountsWhenNotInTop) {
  // The sampled "3" (p 0.5) is missing from the alternatives, which hold "5" (p 0.5): 4.
  EXPECT_NEAR(expected_activation(tok("3", {{"5", std::log(0.5)}}, std::log(0.5))), 4.0, kTol);
  // Listed once only when present in both.
  EXPECT_NEAR(expected_activation(tok("3", {{"3", std::log(0.5)}, {"5", std::log(0.5)}}, std::log(0.5))), 4.0, kTol);
  // An echoed "unknown" is not a value; its alternatives are.
  EXPECT_NEAR(expected_activation(tok("unknown", {{"6", -0.2}}, -9.0)), 6.0, kTol);
  EXPECT_EQ(expected_activation(tok("unknown", {}, -9.0)), 0.0);
}

TEST(ExplainLogprob, OffsetsAndCoveringToken) {
  const std::vector<TokenLogprob> t{tok("ab"), tok(""), tok("cde"), tok("\t"), tok("7", {{"7", -0.1}, {"9", -2.3}})};
  const auto starts = token_start_offsets(t);
  EXPECT_EQ(starts, (std::vector<std::size_t>{0, 2, 2, 5, 6, 7}));
  EXPECT_EQ(joined_token_text(t), "abcde\t7");
  EXPECT_EQ(token_covering(starts, 0), 0u);
  EXPECT_EQ(token_covering(starts, 1), 0u);
  EXPECT_EQ(token_covering(starts, 2), 2u);  // the empty token covers nothing
  EXPECT_EQ(token_covering(starts, 6), 4u);
  EXPECT_FALSE(token_covering(starts, 7).has_value());
  EXPECT_FALSE(token_covering(std::vector<std::size_t>{0}, 0).has_value());
  const std::vector<std::size_t> offsets{6, 0, 99};
  const auto ev = expected_activations_at(t, offsets);
  ASSERT_EQ(ev.size(), 3u);
  const double p7 = std::exp(-0.1), p9 = std::exp(-2.3);
  EXPECT_NEAR(ev[0], (7 * p7 + 9 * p9) / (p7 + p9), kTol);
  EXPECT_EQ(ev[1], 0.0);
  EXPECT_EQ(ev[2], 0.0);
}
