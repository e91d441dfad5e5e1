// Scoring formulas against values worked out by hand (the derivations are in the comments).
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "explain/scoring.hpp"

using namespace nexplain;

namespace {
constexpr double kTol = 1e-12;
using V = std::vector<double>;
}  // namespace

TEST(Scoring, HandCheckedPositive) {
  // t = 1,2,3 (mean 2), p = 1,2,4 (mean 7/3). Centred: dt = -1,0,1; dp = -4/3,-1/3,5/3.
  // sum dt*dp = 3, sum dt^2 = 2, sum dp^2 = 42/9 -> r = 3/sqrt(28/3) = sqrt(27/28).
  const V t{1, 2, 3}, p{1, 2, 4};
  EXPECT_NEAR(correlation(t, p), std::sqrt(27.0 / 28.0), kTol);
  // mean((t-p)^2) = 1/3, mean(t^2) = 14/3 -> 1 - 1/14.
  EXPECT_NEAR(score_squared(t, p), 13.0 / 14.0, kTol);
  // mean|t-p| = 1/3, mean|t| = 2 -> 1 - 1/6.
  EXPECT_NEAR(score_absolute(t, p), 5.0 / 6.0, kTol);
}

TEST(Scoring, HandCheckedNegative) {
  // Perfect anti-correlation; (t-p)^2 = 4,0,4 over t^2 = 1,0,1 -> 1 - 8/2; |t-p| 2,0,2 over 1,0,1.
  const V t{-1, 0, 1}, p{1, 0, -1};
  EXPECT_NEAR(correlation(t, p), -1.0, kTol);
  EXPECT_NEAR(score_squared(t, p), -3.0, kTol);
  EXPECT_NEAR(score_absolute(t, p), -1.0, kTol);
  // Negative values on both sides with a perfect linear relation.
  EXPECT_NEAR(correlation(V{-3, -2, -1}, V{-6, -4, -2}), 1.0, kTol);
}

TEST(Scoring, ConstantSideIsNaNForCorrelationOnly) {
  // Constant truth: correlation undefined, the error-based scores are not.
  // (t-p)^2 = 1,0,1 over t^2 = 4,4,4 -> 1 - 2/12; |t-p| = 1,0,1 over 2,2,2 -> 1 - 2/6.
  const V t{2, 2, 2}, p{1, 2, 3};
  EXPECT_TRUE(std::isnan(correlation(t, p)));
  EXPECT_NEAR(score_squared(t, p), 5.0 / 6.0, kTol);
  EXPECT_NEAR(score_absolute(t, p), 2.0 / 3.0, kTol);
  // Constant prediction: (t-p)^2 = 16,9,4 over 14 -> 1 - 29/14; |t-p| = 4,3,2 over 6 -> 1 - 9/6.
  const V t2{1, 2, 3}, p2{5, 5, 5};
  EXPECT_TRUE(std::isnan(correlation(t2, p2)));
  EXPECT_NEAR(score_squared(t2, p2), -15.0 / 14.0, kTol);
  EXPECT_NEAR(score_absolute(t2, p2), -0.5, kTol);
  // A constant that is not exactly representable: its computed mean is not exactly 0.1, so a
  // variance test would see noise; the result must still be NaN.
  EXPECT_TRUE(std::isnan(correlation(V{0.1, 0.1, 0.1}, V{1, 2, 3})));
  EXPECT_TRUE(std::isnan(correlation(V{1, 2, 3}, V{0.7, 0.7, 0.7})));
}

TEST(Scoring, AllZero) {
  const V z{0, 0, 0}, p{1, 2, 3};
  EXPECT_TRUE(std::isnan(correlation(z, p)));
  EXPECT_TRUE(std::isnan(score_squared(z, p)));   // mean(t^2) = 0
  EXPECT_TRUE(std::isnan(score_absolute(z, p)));  // mean|t| = 0
  // All-zero prediction against a real truth: errors equal the norms -> exactly 0.
  EXPECT_TRUE(std::isnan(correlation(p, z)));
  EXPECT_NEAR(score_squared(p, z), 0.0, kTol);
  EXPECT_NEAR(score_absolute(p, z), 0.0, kTol);
}

TEST(Scoring, SingleElementAndEmpty) {
  EXPECT_TRUE(std::isnan(correlation(V{3}, V{3})));
  EXPECT_NEAR(score_squared(V{3}, V{3}), 1.0, kTol);
  EXPECT_NEAR(score_squared(V{2}, V{1}), 0.75, kTol);  // 1 - 1/4
  EXPECT_NEAR(score_absolute(V{2}, V{1}), 0.5, kTol);  // 1 - 1/2
  EXPECT_NEAR(score_absolute(V{-2}, V{1}), -0.5, kTol);  // 1 - 3/2
  EXPECT_TRUE(std::isnan(correlation(V{}, V{})));
  EXPECT_TRUE(std::isnan(score_squared(V{}, V{})));
  EXPECT_TRUE(std::isnan(score_absolute(V{}, V{})));
}

TEST(Scoring, LargeOffsetDoesNotCancel) {
  // Same shape as HandCheckedPositive, shifted by 1e9: the two-pass formula keeps 1e-12.
  const V t{1e9 + 1, 1e9 + 2, 1e9 + 3}, p{1, 2, 4};
  EXPECT_NEAR(correlation(t, p), std::sqrt(27.0 / 28.0), kTol);
}

TEST(Scoring, MismatchedLengthsAreAnError) {
  EXPECT_THROW(correlation(V{1, 2}, V{1}), Error);
  EXPECT_THROW(score_squared(V{1, 2}, V{1}), Error);
  EXPECT_THROW(score_absolute(V{1}, V{}), Error);
  const std::vector<ScoredExcerpt> bad{{V{1, 2}, V{1}}};
  EXPECT_THROW(score_neuron(bad, {}), Error);
}

TEST(Scoring, NeuronConcatenatesExcerpts) {
  // Each excerpt alone correlates perfectly (top: 0,2 vs 0,1; random: 0,1 vs 0,3), but over the
  // concatenation t = 0,2,0,1 and p = 0,1,0,3: means 3/4 and 1, dt = -3/4,5/4,-3/4,1/4,
  // dp = -1,0,-1,2; sum dt*dp = 2, sum dt^2 = 11/4, sum dp^2 = 6 -> r = 2/sqrt(16.5).
  const std::vector<ScoredExcerpt> top{{V{0, 2}, V{0, 1}}};
  const std::vector<ScoredExcerpt> rnd{{V{0, 1}, V{0, 3}}};
  const ScoreSet s = score_neuron(top, rnd);
  EXPECT_NEAR(s.top, 1.0, kTol);
  EXPECT_NEAR(s.random, 1.0, kTol);
  EXPECT_NEAR(s.all, 2.0 / std::sqrt(16.5), kTol);
  // (t-p)^2 = 0,1,0,4 over t^2 = 0,4,0,1 -> 1 - 5/5; |t-p| = 0,1,0,2 over 0,2,0,1 -> 1 - 3/3.
  EXPECT_NEAR(s.squared_all, 0.0, kTol);
  EXPECT_NEAR(s.absolute_all, 0.0, kTol);
}

TEST(Scoring, NeuronWithoutRandomExcerpts) {
  const std::vector<ScoredExcerpt> top{{V{1, 2, 3}, V{1, 2, 4}}};
  const ScoreSet s = score_neuron(top, {});
  EXPECT_NEAR(s.all, std::sqrt(27.0 / 28.0), kTol);
  EXPECT_NEAR(s.top, s.all, kTol);
  EXPECT_TRUE(std::isnan(s.random));
  EXPECT_NEAR(s.squared_all, 13.0 / 14.0, kTol);
  EXPECT_NEAR(s.absolute_all, 5.0 / 6.0, kTol);
}

// ---------------------------------------------------------------- activation format
// (kept in this file because it is the explain-side half of the same issue's scoring contract)
#include "explain/activation_format.hpp"

TEST(ActivationFormat, NormalisesToZeroToTen) {
  // m = 4: 10*x/4 -> 0, 2.5->2, 5, 7.5->7, 10; negatives clamp to 0; above m clamps to 10.
  EXPECT_EQ(normalize_activations(std::vector<float>{0.f, 1.f, 2.f, 3.f, 4.f}, 4.0), (std::vector<int>{0, 2, 5, 7, 10}));
  EXPECT_EQ(normalize_activation(-3.f, 4.0), 0);
  EXPECT_EQ(normalize_activation(9.f, 4.0), 10);
  EXPECT_EQ(normalize_activation(0.39f, 4.0), 0);  // 0.975 -> 0
  // x == m is exactly 10 even where 10*m/m would round below 10.
  for (float m : {0.1f, 0.3f, 0.7f, 1e-7f, 3.3f, 123.456f}) EXPECT_EQ(normalize_activation(m, m), 10) << m;
  // m <= 0: everything is 0.
  EXPECT_EQ(normalize_activations(std::vector<float>{-1.f, 0.f, 2.f}, 0.0), (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(normalize_activations(std::vector<float>{-1.f, -2.f}, -1.0), (std::vector<int>{0, 0}));
}

TEST(ActivationFormat, MaxIsOverAllShownExcerpts) {
  const std::vector<ActivationExcerpt> ex{{{"a", "b"}, {1.f, 2.f}}, {{"c"}, {8.f}}};
  EXPECT_DOUBLE_EQ(max_activation(ex), 8.0);
  const std::vector<ActivationExcerpt> neg{{{"a", "b"}, {-1.f, -2.f}}};
  EXPECT_DOUBLE_EQ(max_activation(neg), -1.0);
  EXPECT_DOUBLE_EQ(max_activation({}), 0.0);
}

TEST(ActivationFormat, DenseRecordsHaveNoRepeat) {
  // 3 of 4 values non-zero: no sparse repeat. m = 4 over both excerpts.
  const std::vector<ActivationExcerpt> ex{{{"The", " cat"}, {0.f, 4.f}}, {{" sat", "!"}, {2.f, 1.f}}};
  EXPECT_EQ(format_activation_records(ex),
            "<start>\nThe\t0\n cat\t10\n<end>\n"
            "\n"
            "<start>\n sat\t5\n!\t2\n<end>\n");
}

TEST(ActivationFormat, SparseRecordsRepeatWithoutZeros) {
  // 1 of 6 values non-zero (< 20%): the blocks are repeated with zero lines removed.
  const std::vector<ActivationExcerpt> ex{{{"a", "b", "c"}, {0.f, 0.f, 2.f}}, {{"d", "e", "f"}, {0.f, -1.f, 0.f}}};
  ActivationFormatOptions o;
  o.sparse_intro = "NONZERO:";
  EXPECT_EQ(format_activation_records(ex, o),
            "<start>\na\t0\nb\t0\nc\t10\n<end>\n\n<start>\nd\t0\ne\t0\nf\t0\n<end>\n"
            "\nNONZERO:\n"
            "<start>\nc\t10\n<end>\n\n<start>\n<end>\n");
  // Exactly 20% non-zero is not "under 20%".
  EXPECT_FALSE(needs_sparse_repeat(1, 5, 0.2));
  EXPECT_TRUE(needs_sparse_repeat(1, 6, 0.2));
  EXPECT_FALSE(needs_sparse_repeat(0, 0, 0.2));
}

TEST(ActivationFormat, ExplicitMaxAndAllZero) {
  const std::vector<ActivationExcerpt> ex{{{"x", "y"}, {1.f, 2.f}}};
  ActivationFormatOptions o;
  o.max = 20.0;  // a shared scale from another group: 10*2/20 = 1, 10*1/20 = 0
  o.sparse_fraction = 0.0;
  EXPECT_EQ(format_activation_records(ex, o), "<start>\nx\t0\ny\t1\n<end>\n");
  const std::vector<ActivationExcerpt> dead{{{"x"}, {-0.5f}}};
  o.max = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(format_activation_records(dead, o), "<start>\nx\t0\n<end>\n");
}

TEST(ActivationFormat, TokensAreEscapedAndRoundTrip) {
  const std::vector<std::string> toks{"\n", "\t", "a\\b", " plain"};
  EXPECT_EQ(format_excerpt(toks, std::vector<int>{1, 2, 3, 4}), "<start>\n\\n\t1\n\\t\t2\na\\\\b\t3\n plain\t4\n<end>\n");
  for (const auto& t : toks) EXPECT_EQ(unescape_token(escape_token(t)), t);
  EXPECT_EQ(unescape_token("x\\q"), "x\\q");  // unknown escapes stay literal
  EXPECT_EQ(format_excerpt_for_simulation({"a", "\n"}), "<start>\na\tunknown\n\\n\tunknown\n<end>\n");
}

TEST(ActivationFormat, MismatchedLengthsAreAnError) {
  const std::vector<ActivationExcerpt> bad{{{"a", "b"}, {1.f}}};
  EXPECT_THROW(format_activation_records(bad), Error);
  EXPECT_THROW(format_excerpt({"a"}, std::vector<int>{}), Error);
}
