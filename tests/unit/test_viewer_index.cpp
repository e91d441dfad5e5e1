// The viewer's results index: reading results.jsonl and growing journals, filters, sorts, pages,
// neighbours, and the strict query parser.
#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "test_support.hpp"
#include "viewer/index_query.hpp"
#include "viewer/results_index.hpp"

using namespace nexplain;
using namespace nexplain::viewer;
using json = nlohmann::json;

namespace {

json result(std::uint32_t l, std::uint32_t n, const std::string& expl, json all, bool ok = true) {
  return {{"layer", l},
          {"neuron", n},
          {"status", ok ? "ok" : "failed"},
          {"error", ok ? "" : "timeout after 5 retries"},
          {"explanation", expl},
          {"explainer", "offline"},
          {"simulator", "offline"},
          {"scores", {{"all", all}, {"top", all}, {"random", nullptr}, {"squared_all", nullptr}, {"absolute_all", nullptr}}},
          {"simulated", json::array()},
          {"usage", {{"explain", {{"requests", 1}, {"prompt_tokens", 100}, {"completion_tokens", 10}, {"cost_usd", 0.5}}},
                     {"simulate", {{"requests", 2}, {"prompt_tokens", 200}, {"completion_tokens", 0}, {"cost_usd", 0.25}}}}}};
}

IndexEntry entry(std::uint32_t l, std::uint32_t n, const std::string& expl, double all, bool ok = true) {
  return index_entry_from_json_line(result(l, n, expl, std::isnan(all) ? json(nullptr) : json(all), ok).dump());
}

std::vector<std::string> keys(const IndexPage& p) {
  std::vector<std::string> out;
  for (const auto* e : p.rows) out.push_back(std::to_string(e->layer) + "/" + std::to_string(e->neuron));
  return out;
}

ResultsIndex sample() {
  return ResultsIndex({entry(1, 0, "the token \" The\"", 0.9), entry(0, 2, "commas", 0.1), entry(0, 0, "Water words", 0.5),
                       entry(0, 1, "nothing", NAN), entry(1, 1, "", NAN, false), entry(1, 2, "WATER and rain", -0.2)});
}

}  // namespace

TEST(ViewerIndex, EntryFromResultAndJournalLines) {
  const auto e = entry(3, 7, "x", 0.25);
  EXPECT_EQ(e.layer, 3u);
  EXPECT_EQ(e.neuron, 7u);
  EXPECT_TRUE(e.ok);
  EXPECT_DOUBLE_EQ(e.all, 0.25);
  EXPECT_TRUE(std::isnan(e.random));
  EXPECT_DOUBLE_EQ(e.cost_usd, 0.75);
  EXPECT_EQ(e.prompt_tokens, 300u);
  const auto j = index_entry_from_json_line(json{{"key", "3/7"}, {"value", result(3, 7, "Y", 1.0)}}.dump());
  EXPECT_EQ(j.explanation, "Y");
  // The simulated arrays are skipped unparsed, whatever the strings around them hold.
  auto tricky = result(1, 2, "\"simulated\":[ ] } { \\", 0.5);
  tricky["simulated"] = json::array({{{"excerpt_id", 1}, {"split", "valid_top]}"}, {"predicted", {1.0, 2.5}}}});
  tricky["status"] = "ok";
  const auto t = index_entry_from_json_line(tricky.dump());
  EXPECT_EQ(t.explanation, "\"simulated\":[ ] } { \\");
  EXPECT_DOUBLE_EQ(t.all, 0.5);
  EXPECT_DOUBLE_EQ(t.cost_usd, 0.75);  // "usage" comes after "simulated" in the line
  EXPECT_THROW(index_entry_from_json_line("{\"simulated\":[1,2"), Error);
  EXPECT_THROW(index_entry_from_json_line("{\"layer\": 1}"), Error);
  EXPECT_THROW(index_entry_from_json_line("[1,2]"), Error);
}

TEST(ViewerIndex, BuilderFollowsAGrowingJournal) {
  test::TempDir dir;
  const auto path = dir / "journal.jsonl";
  auto line = [](std::uint32_t n, const std::string& e, bool ok) {
    return json{{"key", "0/" + std::to_string(n)}, {"value", result(0, n, e, 0.5, ok)}}.dump() + "\n";
  };
  const std::string second = line(1, "second", false);
  test::write_file(path, line(0, "first", true) + second.substr(0, 20));  // a line being written
  IndexBuilder b(path);
  EXPECT_TRUE(b.update());
  ASSERT_EQ(b.entries().size(), 1u);
  EXPECT_FALSE(b.update());  // nothing complete was added
  {
    std::ofstream out(path, std::ios::app);
    out << second.substr(20) << line(1, "retried", true);  // the same neuron again: the later line wins
  }
  EXPECT_TRUE(b.update());
  ASSERT_EQ(b.entries().size(), 2u);
  EXPECT_EQ(b.entries()[1].explanation, "retried");
  EXPECT_TRUE(b.entries()[1].ok);
  // Offsets point at each neuron's full line.
  const auto text = test::read_file(path);
  EXPECT_EQ(json::parse(text.substr(b.entries()[1].offset, b.entries()[1].length))["value"]["explanation"], "retried");
  // A damaged line is an error naming the file and line.
  {
    std::ofstream out(path, std::ios::app);
    out << "{not json\n";
  }
  try {
    b.update();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "journal.jsonl: line 4");
  }
}

TEST(ViewerIndex, SortsWithUndefinedScoresLast) {
  const auto idx = sample();
  IndexQuery q;
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"0/0", "0/1", "0/2", "1/0", "1/1", "1/2"}));
  q.sort = SortKey::score;
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"1/2", "0/2", "0/0", "1/0", "0/1", "1/1"}));
  q.descending = true;
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"1/0", "0/0", "0/2", "1/2", "0/1", "1/1"}));
  q.sort = SortKey::neuron;
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"1/2", "1/1", "1/0", "0/2", "0/1", "0/0"}));
}

TEST(ViewerIndex, FiltersAndPages) {
  const auto idx = sample();
  IndexQuery q;
  q.text = "water";  // case-insensitive
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"0/0", "1/2"}));
  q.text = "e";  // many hits in one explanation count once
  EXPECT_EQ(idx.query(q).matched, 3u);
  q.text = "wordsnothing";  // never across two explanations
  EXPECT_EQ(idx.query(q).matched, 0u);
  q.text = std::string("words\0nothing", 13);
  EXPECT_EQ(idx.query(q).matched, 0u);
  q.text = "the token \" the\"";
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"1/0"}));
  q = {};
  q.layer = 1;
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"1/0", "1/1", "1/2"}));
  q.descending = true;
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"1/2", "1/1", "1/0"}));
  q = {};
  q.min_score = 0.0;
  q.max_score = 0.5;  // inclusive; undefined scores never match a range
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"0/0", "0/2"}));
  q = {};
  q.status = StatusFilter::failed;
  EXPECT_EQ(keys(idx.query(q)), (std::vector<std::string>{"1/1"}));
  q = {};
  q.per_page = 4;
  q.page = 2;
  auto p = idx.query(q);
  EXPECT_EQ(p.matched, 6u);
  EXPECT_EQ(p.pages, 2u);
  EXPECT_EQ(keys(p), (std::vector<std::string>{"1/1", "1/2"}));
  q.status = StatusFilter::ok;  // the filtered path pages the same way
  p = idx.query(q);
  EXPECT_EQ(p.matched, 5u);
  EXPECT_EQ(keys(p), (std::vector<std::string>{"1/2"}));
  q.page = 9;
  EXPECT_TRUE(idx.query(q).rows.empty());
}

TEST(ViewerIndex, NeighboursTotalsAndDuplicates) {
  const auto idx = sample();
  ASSERT_NE(idx.find(0, 2), nullptr);
  EXPECT_EQ(idx.find(0, 9), nullptr);
  EXPECT_EQ(idx.previous(0, 0), nullptr);
  EXPECT_EQ(idx.next(0, 2)->layer, 1u);
  EXPECT_EQ(idx.previous(1, 0)->neuron, 2u);
  EXPECT_EQ(idx.next(0, 5)->neuron, 0u);  // a neuron outside the index still has neighbours
  EXPECT_EQ(idx.next(1, 2), nullptr);
  EXPECT_EQ(idx.totals().ok, 5u);
  EXPECT_EQ(idx.totals().failed, 1u);
  EXPECT_EQ(idx.totals().scored, 4u);
  EXPECT_NEAR(idx.totals().mean_score, (0.9 + 0.1 + 0.5 - 0.2) / 4, 1e-12);
  EXPECT_DOUBLE_EQ(idx.totals().cost_usd, 6 * 0.75);
  EXPECT_EQ(idx.layers(), (std::vector<std::uint32_t>{0, 1}));
  EXPECT_THROW(ResultsIndex({entry(0, 0, "a", 1), entry(0, 0, "b", 1)}), Error);
}

TEST(ViewerIndexQuery, ParsesStrictly) {
  auto q = parse_index_query({{"layer", "3"}, {"min", "-0.5"}, {"max", "1"}, {"q", "a b"}, {"status", "ok"},
                              {"sort", "score"}, {"order", "desc"}, {"page", "2"}, {"per_page", "50"}});
  EXPECT_EQ(*q.layer, 3);
  EXPECT_DOUBLE_EQ(*q.min_score, -0.5);
  EXPECT_EQ(q.text, "a b");
  EXPECT_EQ(q.sort, SortKey::score);
  EXPECT_TRUE(q.descending);
  EXPECT_EQ(q.page, 2u);
  EXPECT_EQ(to_query_string(q), "?layer=3&min=-0.5&max=1&q=a%20b&status=ok&sort=score&order=desc&page=2&per_page=50");
  EXPECT_EQ(to_query_string(IndexQuery{}), "");
  EXPECT_FALSE(parse_index_query({{"layer", ""}}).layer);  // an empty form field is "not given"
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{{"layer", "-1"},
                                                                             {"layer", "1x"},
                                                                             {"min", "nan"},
                                                                             {"min", "abc"},
                                                                             {"page", "0"},
                                                                             {"per_page", "1001"},
                                                                             {"sort", "name"},
                                                                             {"order", "up"},
                                                                             {"status", "?"},
                                                                             {"bogus", "1"},
                                                                             {"bogus", ""}})
    EXPECT_THROW(parse_index_query({{k, v}}), Error) << k << "=" << v;
  EXPECT_THROW(parse_index_query({{"min", "1"}, {"max", "0"}}), Error);
  EXPECT_THROW(parse_index_query({{"page", "1"}, {"page", "2"}}), Error);
}
