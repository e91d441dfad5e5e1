// The offline baseline: the explanation grammar shared by the offline explainer and simulator,
// the explainer's clause fitting on hand-made excerpts, and (with ../shared) the end-to-end
// check on a planted model over tinyshakespeare: token detectors must score >= 0.9.
#include <cmath>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "explain/offline_explainer.hpp"
#include "explain/offline_simulator.hpp"
#include "explain/record_splits.hpp"
#include "explain/scoring.hpp"
#include "io/records_file.hpp"
#include "test_support.hpp"
#include "tokenizer/gpt2_tokenizer.hpp"

using namespace nexplain;
namespace fs = std::filesystem;

namespace {

using Tokens = std::vector<std::string>;
using Preds = std::vector<double>;

TokenClause tc(std::string token, bool exact = false, bool weak = false) { return TokenClause{std::move(token), std::nullopt, exact, weak}; }
TokenClause ctx(std::string token, std::string after, bool exact = false) { return TokenClause{std::move(token), std::move(after), exact, false}; }

// Correlation of simulated vs true activations over all tokens of `excerpts`.
double simulated_correlation(const std::string& explanation, const std::vector<ActivationExcerpt>& excerpts) {
  std::vector<std::vector<std::string>> tokens;
  for (const auto& e : excerpts) tokens.push_back(e.tokens);
  OfflineSimulator sim;
  const auto pred = sim.simulate(explanation, tokens);
  std::vector<double> t, p;
  for (std::size_t i = 0; i < excerpts.size(); ++i) {
    for (float a : excerpts[i].activations) t.push_back(a);
    p.insert(p.end(), pred[i].begin(), pred[i].end());
  }
  return correlation(t, p);
}

}  // namespace

// ---------------------------------------------------------------- grammar

TEST(ExplainOfflineGrammar, RenderAndParseBack) {
  OfflineExplanation e;
  e.tokens = {tc("The", true), tc(","), tc("\n", false, true), ctx(" bank", " river")};
  e.positions = {{0, 1}, {7, 7}};
  const std::string text = render_offline_explanation(e);
  EXPECT_EQ(text,
            "the tokens \"The\" (exact), \",\" and \"\\n\" (weak); \" bank\" after \" river\"; the tokens at positions 0-1 "
            "(the start of the excerpt); the token at position 7");
  EXPECT_EQ(parse_offline_explanation(text), e);
  // One token, exact and weak together.
  OfflineExplanation one;
  one.tokens = {tc(" cat", true, true)};
  EXPECT_EQ(render_offline_explanation(one), "the token \" cat\" (exact, weak)");
  EXPECT_EQ(parse_offline_explanation(render_offline_explanation(one)), one);
  EXPECT_EQ(render_offline_explanation({}), "nothing in particular");
  EXPECT_EQ(parse_offline_explanation("nothing in particular"), OfflineExplanation{});
}

TEST(ExplainOfflineGrammar, OddTokensRoundTrip) {
  OfflineExplanation e;
  e.tokens = {tc("\""), tc("\\"), tc("\t"), tc("\x01"), tc(" caf\xC3\xA9"), tc("(x)", true), tc("after"), tc(" position 7")};
  const std::string text = render_offline_explanation(e);
  EXPECT_EQ(parse_offline_explanation(text), e) << text;
  EXPECT_TRUE(parse_offline_explanation(text).positions.empty());  // digits inside quotes are tokens
}

TEST(ExplainOfflineGrammar, FreeTextFromAnLlm) {
  // Curly quotes, a parenthesis that is not a modifier, JSON escapes.
  const auto e = parse_offline_explanation(
      "words like \"water\" and \xE2\x80\x9Crain\xE2\x80\x9D (in the context of weather), and \"\\u00e9t\\u00e9\".");
  EXPECT_EQ(e.tokens, (std::vector<TokenClause>{tc("water"), tc("rain"), tc("\xC3\xA9t\xC3\xA9")}));
  EXPECT_TRUE(e.positions.empty());
  // Connectors for context.
  EXPECT_EQ(parse_offline_explanation("\"York\" when preceded by \" New\"").tokens, (std::vector<TokenClause>{ctx("York", " New")}));
  EXPECT_EQ(parse_offline_explanation("\"York\" following \" New\"").tokens, (std::vector<TokenClause>{ctx("York", " New")}));
  // Duplicates collapse; an empty quote names nothing; an unterminated quote ends the tokens.
  EXPECT_EQ(parse_offline_explanation("\"a\", \"a\", \"\" and \"b").tokens, (std::vector<TokenClause>{tc("a")}));
}

TEST(ExplainOfflineGrammar, Positions) {
  using P = std::vector<PositionClause>;
  EXPECT_EQ(parse_offline_explanation("fires at position 3").positions, (P{{3, 3}}));
  EXPECT_EQ(parse_offline_explanation("tokens at positions 2 to 5").positions, (P{{2, 5}}));
  EXPECT_EQ(parse_offline_explanation("Positions 9-4").positions, (P{{4, 9}}));
  EXPECT_EQ(parse_offline_explanation("the first token").positions, (P{{0, 0}}));
  EXPECT_EQ(parse_offline_explanation("the first 3 tokens").positions, (P{{0, 2}}));
  EXPECT_EQ(parse_offline_explanation("anything at the start of the excerpt").positions, (P{{0, 0}}));
  EXPECT_EQ(parse_offline_explanation("the tokens at positions 0-3 (the start of the excerpt)").positions, (P{{0, 3}}));
  EXPECT_TRUE(parse_offline_explanation("the first word of a sentence").positions.empty());
}

TEST(ExplainOfflineGrammar, Predictions) {
  const Tokens t{"The", " the", "THE", "\n", "\n\n", " The"};
  OfflineExplanation e;
  e.tokens = {tc("The")};
  EXPECT_EQ(predict_offline(e, t), (Preds{10, 4, 4, 0, 0, 4}));
  e.tokens = {tc("The", true)};
  EXPECT_EQ(predict_offline(e, t), (Preds{10, 0, 0, 0, 0, 0}));
  e.tokens = {tc("The", false, true)};
  EXPECT_EQ(predict_offline(e, t), (Preds{5, 2, 2, 0, 0, 2}));
  // Whitespace-only tokens have no loose form.
  e.tokens = {tc("\n")};
  EXPECT_EQ(predict_offline(e, t), (Preds{0, 0, 0, 10, 0, 0}));
  // Context: only after " river"; at position 0 there is no previous token.
  e.tokens = {ctx(" bank", " river")};
  EXPECT_EQ(predict_offline(e, Tokens{" bank", " river", " bank", " the", " bank", " River", " bank"}),
            (Preds{0, 0, 10, 0, 0, 0, 4}));
  // Positions, clipped to the excerpt; the maximum over clauses.
  e.tokens = {tc("b", false, true)};
  e.positions = {{1, 2}, {3, 99}};
  EXPECT_EQ(predict_offline(e, Tokens{"a", "b", "c", "b"}), (Preds{0, 10, 10, 10}));
  e.positions = {{1, 1}};
  EXPECT_EQ(predict_offline(e, Tokens{"a", "b", "c", "b"}), (Preds{0, 10, 0, 5}));
  EXPECT_TRUE(predict_offline(e, Tokens{}).empty());
}

TEST(ExplainOfflineGrammar, SimulatorUsesTheTextOnly) {
  OfflineSimulator sim;
  const auto p = sim.simulate("the tokens \",\" and \".\"", {{"a", ",", "b", "."}, {}, {"."}});
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0], (Preds{0, 10, 0, 10}));
  EXPECT_TRUE(p[1].empty());
  EXPECT_EQ(p[2], (Preds{10}));
  EXPECT_EQ(sim.name(), "offline");
}

// ---------------------------------------------------------------- explainer on hand-made excerpts

TEST(ExplainOfflineExplainer, SingleTokenDetector) {
  // Fires on " cat" only; " Cat" and "cat" appear without firing, so the match must be exact.
  const std::vector<ActivationExcerpt> train{
      {{"The", " cat", " sat", " on", " the", " mat", "."}, {0.1f, 9.5f, 0.2f, 0.0f, 0.1f, 0.3f, 0.0f}},
      {{"A", " Cat", " and", " a", " cat", " played", "."}, {0.0f, 0.1f, 0.0f, 0.2f, 10.0f, 0.1f, 0.0f}},
      {{"My", " cat", "!", " cat", "alog", " of", " dogs"}, {0.2f, 8.7f, 0.1f, 9.1f, 0.0f, 0.0f, 0.3f}},
  };
  OfflineExplainer ex;
  double r = 0.0;
  const auto fit = ex.fit(train, &r);
  EXPECT_EQ(fit.tokens, (std::vector<TokenClause>{tc(" cat", true)}));
  EXPECT_TRUE(fit.positions.empty());
  EXPECT_GT(r, 0.99);
  const auto res = ex.explain(train);
  EXPECT_EQ(res.explanation, "the token \" cat\" (exact)");
  EXPECT_NE(res.raw.find("train correlation"), std::string::npos);
  // Held-out excerpts scored from the text alone.
  const std::vector<ActivationExcerpt> valid{
      {{" cat", "s", " and", " a", " cat"}, {9.0f, 0.1f, 0.0f, 0.0f, 9.8f}},
      {{"No", " Cat", " here", "."}, {0.0f, 0.2f, 0.0f, 0.1f}},
  };
  EXPECT_GT(simulated_correlation(res.explanation, valid), 0.99);
  EXPECT_EQ(ex.name(), "offline");
}

TEST(ExplainOfflineExplainer, TokenSetDetector) {
  const std::vector<ActivationExcerpt> train{
      {{"Stay", ",", " friend", ".", " Go"}, {0.0f, 7.0f, 0.0f, 7.2f, 0.0f}},
      {{"Yes", ",", " my", " lord", ".", "\n"}, {0.1f, 6.9f, 0.0f, 0.0f, 7.1f, 0.0f}},
  };
  const auto fit = OfflineExplainer().fit(train);
  std::set<std::string> names;
  for (const auto& c : fit.tokens) names.insert(c.token);
  EXPECT_EQ(names, (std::set<std::string>{",", "."}));
  EXPECT_TRUE(fit.positions.empty());
}

TEST(ExplainOfflineExplainer, ContextDetector) {
  // " bank" fires only after " river"; after " the" it stays silent.
  const std::vector<ActivationExcerpt> train{
      {{"By", " the", " river", " bank", " we", " sat"}, {0.0f, 0.0f, 0.5f, 9.0f, 0.0f, 0.0f}},
      {{"The", " bank", " was", " closed", " by", " the", " river", " bank"}, {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.3f, 10.0f}},
      {{"A", " river", " bank", " and", " the", " bank"}, {0.0f, 0.2f, 8.5f, 0.0f, 0.0f, 0.0f}},
  };
  const auto fit = OfflineExplainer().fit(train);
  ASSERT_FALSE(fit.tokens.empty());
  EXPECT_EQ(fit.tokens[0].token, " bank");
  EXPECT_EQ(fit.tokens[0].after, std::optional<std::string>(" river"));
  const auto text = render_offline_explanation(fit);
  EXPECT_NE(text.find("\" bank\""), std::string::npos) << text;
  EXPECT_NE(text.find("after \" river\""), std::string::npos) << text;
}

TEST(ExplainOfflineExplainer, PositionDetector) {
  std::vector<ActivationExcerpt> train;
  for (int k = 0; k < 4; ++k) {
    ActivationExcerpt e;
    for (int i = 0; i < 8; ++i) {
      e.tokens.push_back(" w" + std::to_string(k * 8 + i));  // all distinct: no token explains it
      e.activations.push_back(i <= 1 ? 9.0f + 0.1f * static_cast<float>(k) : 0.05f * static_cast<float>(i));
    }
    train.push_back(e);
  }
  const auto fit = OfflineExplainer().fit(train);
  EXPECT_TRUE(fit.tokens.empty());
  EXPECT_EQ(fit.positions, (std::vector<PositionClause>{{0, 1}}));
  EXPECT_EQ(render_offline_explanation(fit), "the tokens at positions 0-1 (the start of the excerpt)");
}

TEST(ExplainOfflineExplainer, DegenerateInputs) {
  OfflineExplainer ex;
  // Nothing positive: nothing to explain.
  const std::vector<ActivationExcerpt> dead{{{"a", "b"}, {0.0f, -0.1f}}};
  EXPECT_EQ(ex.explain(dead).explanation, "nothing in particular");
  EXPECT_EQ(ex.explain({}).explanation, "nothing in particular");
  // NaN activations are ignored rather than poisoning the fit.
  const std::vector<ActivationExcerpt> nan{{{"a", "b", "a"}, {std::nanf(""), 5.0f, 0.0f}}};
  EXPECT_EQ(ex.explain(nan).explanation, "the token \"b\"");
  const std::vector<ActivationExcerpt> bad{{{"a", "b"}, {1.0f}}};
  EXPECT_THROW(ex.explain(bad), Error);
}

// ---------------------------------------------------------------- planted model, end to end

namespace {

struct NeuronScore {
  int layer;
  std::uint32_t neuron;
  std::string explanation;
  ScoreSet score;
};

NeuronScore explain_and_score(const RecordsFile& rf, const Gpt2Tokenizer& tok, int layer, std::uint32_t neuron) {
  const NeuronSplits s = load_splits(rf, layer, neuron);
  OfflineExplainer explainer;
  OfflineSimulator simulator;
  const auto train = to_activation_excerpts(s.train, tok);
  const std::string explanation = explainer.explain(train).explanation;
  const auto score_split = [&](const std::vector<SplitExcerpt>& split) {
    std::vector<std::vector<std::string>> tokens;
    for (const auto& e : split) tokens.push_back(display_tokens(tok, e.tokens));
    const auto pred = simulator.simulate(explanation, tokens);  // the text and the tokens only
    std::vector<ScoredExcerpt> out;
    for (std::size_t i = 0; i < split.size(); ++i)
      out.push_back({std::vector<double>(split[i].acts.begin(), split[i].acts.end()), pred[i]});
    return out;
  };
  const auto top = score_split(s.valid_top);
  const auto random = score_split(s.valid_random);
  return {layer, neuron, explanation, score_neuron(top, random)};
}

}  // namespace

TEST(ExplainOfflinePlanted, TokenDetectorsScoreHighOnTinyShakespeare) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  // Single tokens: "The", " I", " king"; sets: {",", "\n"}, {" thou", " thee", " thy"},
  // {".", "?", "!"}; and a position detector on positions 0-1.
  const std::string spec =
      "L0.N5=token:464;L1.N40=token:314;L0.N9=token:5822;L1.N17=tokens:11,198;L0.N21=tokens:14210,17903,11906;"
      "L1.N33=tokens:13,30,0;L0.N3=position:0-1";
  const auto model = dir / "model";
  auto r = test::run_cli({"make-model", "--planted", spec, "--out", model.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto tokdir = shared / "data/gpt2-tokenizer";
  const auto seqs = dir / "shakespeare.h5";
  r = test::run_cli({"tokenize", (shared / "data/corpora/tinyshakespeare.txt").string(), "--out", seqs.string(),
                     "--tokenizer", tokdir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rec = dir / "records.h5";
  r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", rec.string(), "--batch", "64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const RecordsFile rf(rec);
  const auto tok = Gpt2Tokenizer::load(tokdir);
  struct Planted {
    int layer;
    std::uint32_t neuron;
    const char* kind;
  };
  const std::vector<Planted> planted{{0, 5, "token"},   {1, 40, "token"},  {0, 9, "token"},   {1, 17, "tokens"},
                                     {0, 21, "tokens"}, {1, 33, "tokens"}, {0, 3, "position"}};
  for (const auto& p : planted) {
    const auto s = explain_and_score(rf, tok, p.layer, p.neuron);
    std::cout << fmt::format("planted {:8} L{}.N{:<3} all {:.4f} top {:.4f} random {:.4f}  | {}\n", p.kind, s.layer,
                             s.neuron, s.score.all, s.score.top, s.score.random, s.explanation);
    EXPECT_GE(s.score.all, 0.9) << "L" << p.layer << ".N" << p.neuron << ": " << s.explanation;
  }
  // The other neurons of this model are no control: the planted channels are large embedding
  // directions that many random neurons read, so they genuinely respond to the planted tokens.
  // The control is OrdinaryNeuronsScoreLow below, on a model with nothing planted.
}

TEST(ExplainOfflinePlanted, OrdinaryNeuronsScoreLow) {
  NEXPLAIN_REQUIRE_SHARED(shared);
  test::TempDir dir;
  const auto model = dir / "model";
  auto r = test::run_cli({"make-model", "--planted", "", "--out", model.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto tokdir = shared / "data/gpt2-tokenizer";
  const auto seqs = dir / "shakespeare.h5";
  r = test::run_cli({"tokenize", (shared / "data/corpora/tinyshakespeare.txt").string(), "--out", seqs.string(),
                     "--tokenizer", tokdir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rec = dir / "records.h5";
  r = test::run_cli({"collect", "--model", model.string(), "--corpus", seqs.string(), "--out", rec.string(), "--batch", "64",
                     "--max-excerpts", "2500"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const RecordsFile rf(rec);
  const auto tok = Gpt2Tokenizer::load(tokdir);
  std::vector<double> scores;
  for (int layer = 0; layer < 2; ++layer) {
    for (std::uint32_t n = 0; n < 256; n += 16) {
      const auto s = explain_and_score(rf, tok, layer, n);
      std::cout << fmt::format("ordinary L{}.N{:<3} all {:.4f} top {:.4f} random {:.4f}  | {}\n", layer, n, s.score.all,
                               s.score.top, s.score.random, s.explanation);
      if (std::isfinite(s.score.all)) scores.push_back(s.score.all);
    }
  }
  ASSERT_FALSE(scores.empty());
  double mean = 0.0;
  for (double x : scores) mean += x;
  mean /= static_cast<double>(scores.size());
  std::cout << fmt::format("ordinary neurons: mean all-tokens score {:.4f} over {} scored\n", mean, scores.size());
  EXPECT_LT(mean, 0.5);
}
