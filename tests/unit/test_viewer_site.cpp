// The viewer's routes without a network: pages and JSON for a results file, 4xx for bad requests,
// untrusted text escaped, neuron pages from records (heatmaps, real vs simulated), sweep progress,
// and the static report's files and links.
#include <cmath>
#include <fstream>
#include <regex>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.hpp"
#include "viewer/neuron_data.hpp"
#include "viewer/pages.hpp"
#include "viewer/site.hpp"
#include "viewer/static_report.hpp"
#include "viewer/sweep_status.hpp"

using namespace nexplain;
using namespace nexplain::viewer;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kXss = "<script>document.title='pwned'</script>\"'</span>\x01";

json result(std::uint32_t l, std::uint32_t n, const std::string& expl, json all, bool ok = true) {
  return {{"layer", l},
          {"neuron", n},
          {"status", ok ? "ok" : "failed"},
          {"error", ok ? "" : "HTTP 429 after 8 retries <b>"},
          {"explanation", expl},
          {"explainer", "gpt-4o"},
          {"simulator", "all_at_once:llama"},
          {"scores", {{"all", all}, {"top", 0.5}, {"random", nullptr}, {"squared_all", 0.1}, {"absolute_all", 0.2}}},
          {"simulated", json::array({{{"excerpt_id", 7}, {"split", "valid_top"}, {"predicted", {0.0, 10.0, 2.0}}}})},
          {"usage", {{"explain", {{"requests", 1}, {"prompt_tokens", 1000}, {"completion_tokens", 20}, {"cost_usd", 0.0125}}},
                     {"simulate", {{"requests", 1}, {"prompt_tokens", 500}, {"completion_tokens", 1}, {"cost_usd", 0.0005}}}}}};
}

// A run made of a results.jsonl only (no records file, no tokenizer).
class ViewerSite : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto explain = dir_ / "explain";
    fs::create_directories(explain);
    std::string lines;
    lines += result(0, 0, "the token \" The\"", 0.9).dump() + "\n";
    lines += result(0, 1, kXss, 0.4).dump() + "\n";
    lines += result(1, 3, "", nullptr, false).dump() + "\n";
    test::write_file(explain / "results.jsonl", lines);
    std::vector<std::unique_ptr<ViewerRun>> runs;
    runs.push_back(std::make_unique<ViewerRun>(resolve_run(explain), nullptr));
    site_ = std::make_unique<Site>(std::move(runs));
  }
  Response get(const std::string& path, std::multimap<std::string, std::string> params = {}) {
    return site_->handle(path, params);
  }
  test::TempDir dir_;
  std::unique_ptr<Site> site_;
};

}  // namespace

TEST_F(ViewerSite, IndexPageAndJson) {
  EXPECT_EQ(get("/").status, 302);
  EXPECT_EQ(get("/").location, "/run/0/");
  const auto page = get("/run/0/");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("<td class=\"expl\">the token &quot; The&quot;</td>"), std::string::npos) << page.body;
  EXPECT_NE(page.body.find("3 neurons explained (2 ok, 1 failed)"), std::string::npos);
  EXPECT_NE(page.body.find("href=\"/run/0/neuron/0/1\""), std::string::npos);
  const auto api = get("/api/run/0/neurons", {{"sort", "score"}, {"order", "desc"}, {"per_page", "2"}});
  ASSERT_EQ(api.status, 200);
  EXPECT_EQ(api.content_type, "application/json");
  const auto j = json::parse(api.body);
  EXPECT_EQ(j["matched"], 3);
  EXPECT_EQ(j["pages"], 2);
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][0]["neuron"], 0);
  EXPECT_EQ(j["rows"][1]["explanation"], kXss);  // JSON carries the text as it is
  const auto search = json::parse(get("/api/run/0/neurons", {{"q", "SCRIPT"}}).body);
  EXPECT_EQ(search["matched"], 1);
  const auto runs = json::parse(get("/api/runs").body);
  EXPECT_EQ(runs[0]["summary"]["neurons"], 3);
  EXPECT_EQ(runs[0]["summary"]["explainer"], "gpt-4o");
}

TEST_F(ViewerSite, UntrustedTextIsEscapedEverywhere) {
  for (const auto& path : {std::string("/run/0/"), std::string("/run/0/neuron/0/1")}) {
    const auto r = get(path);
    ASSERT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.body.find("<script"), std::string::npos) << path;
    EXPECT_EQ(r.body.find("document.title='"), std::string::npos) << path;
    EXPECT_NE(r.body.find("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;&quot;&#39;&lt;/span&gt;\xE2\x90\x81"),
              std::string::npos)
        << path;
  }
  const auto sweep = get("/run/0/sweep");
  EXPECT_NE(sweep.body.find("HTTP 429 after 8 retries &lt;b&gt;"), std::string::npos) << sweep.body;
}

TEST_F(ViewerSite, NeuronPageWithoutRecords) {
  const auto r = get("/run/0/neuron/0/1");
  EXPECT_NE(r.body.find("id=\"score-all\">0.4000<"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("href=\"/run/0/neuron/0/0\" id=\"prev\""), std::string::npos);
  EXPECT_NE(r.body.find("href=\"/run/0/neuron/1/3\" id=\"next\""), std::string::npos);
  EXPECT_NE(r.body.find("simulator <b>all_at_once:llama</b>"), std::string::npos);
  EXPECT_NE(r.body.find("$0.0130"), std::string::npos);  // total cost of the two stages
  EXPECT_NE(r.body.find("no records file"), std::string::npos);
  const auto j = json::parse(get("/api/run/0/neuron/1/3").body);
  EXPECT_EQ(j["result"]["status"], "failed");
  EXPECT_TRUE(j["next"].is_null());
}

TEST_F(ViewerSite, BadRequestsAre4xx) {
  EXPECT_EQ(get("/run/0/neuron/0/99").status, 404);
  EXPECT_EQ(get("/api/run/0/neuron/0/99").status, 404);
  EXPECT_EQ(json::parse(get("/api/run/0/neuron/0/99").body)["status"], 404);
  EXPECT_EQ(get("/run/0/neuron/0/x").status, 404);
  EXPECT_EQ(get("/run/0/neuron/0/99999999999").status, 404);
  EXPECT_EQ(get("/run/1/").status, 404);
  EXPECT_EQ(get("/run/0/neuron/0").status, 404);
  EXPECT_EQ(get("/nope").status, 404);
  EXPECT_EQ(get("/api/nope").status, 404);
  EXPECT_EQ(get("/run/0//neuron/0/0").status, 404);
  EXPECT_EQ(get("/../etc/passwd").status, 400);
  EXPECT_EQ(get("/run/0/../../etc/passwd").status, 400);
  EXPECT_EQ(get("/api/run/0/./sweep").status, 400);
  EXPECT_EQ(get("relative").status, 400);
  EXPECT_EQ(get("/run/0/", {{"page", "0"}}).status, 400);
  EXPECT_EQ(get("/run/0/", {{"sort", "<script>"}}).status, 400);
  EXPECT_EQ(get("/run/0/", {{"sort", "<script>"}}).body.find("<script>"), std::string::npos);
  EXPECT_EQ(get("/api/run/0/neurons", {{"min", "x"}}).status, 400);
  EXPECT_EQ(get("/run/0/neuron/0/0", {{"x", "1"}}).status, 400);
}

TEST(ViewerNeuronPage, HeatmapsAndRealVersusSimulated) {
  NeuronRecord r;
  r.layer = 2;
  r.neuron = 5;
  r.top = {{7, 3.0f, 0, {0.0f, 3.0f, 1.5f}}, {9, 1.0f, 0, {1.0f, -0.1f, 0.0f}}};
  r.random = {{11, 0.5f, 42, {0.5f, 0.0f, 0.0f}}};
  r.histogram.assign(82, 0);
  r.histogram[40] = 3;
  r.histogram[45] = 1;
  r.stats.count = 9;
  r.stats.mean = 0.6;
  r.stats.variance = 1.2;
  r.stats.skewness = NAN;
  const ExcerptTokens tokens = [](std::uint64_t id) { return std::vector<std::uint32_t>{static_cast<std::uint32_t>(id), 1, 2}; };
  const TokenText text = [](std::uint32_t id) { return id == 1 ? kXss : fmt::format("t{}", id); };
  const auto j = build_neuron_json(2, 5, result(2, 5, "ones", 0.75), r, tokens, text, {{{2, 4}}, std::nullopt});
  ASSERT_EQ(j["scored"].size(), 1u);
  EXPECT_EQ(j["scored"][0]["real"], json({0.0, 10.0, 5.0}));  // 10 max(x,0)/m, m = 3 over the scored excerpts
  EXPECT_EQ(j["scored"][0]["simulated"], json({0.0, 10.0, 2.0}));
  EXPECT_EQ(j["records"]["top"][0]["max_index"], 1);
  EXPECT_EQ(j["records"]["histogram"].size(), 6u);  // bins 40..45
  EXPECT_TRUE(j["records"]["stats"]["skewness"].is_null());
  const auto html = render_neuron_page(0, j, ServerLinks());
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("<p class=\"explanation\" id=\"explanation\">ones</p>"), std::string::npos);
  EXPECT_NE(html.find("<span class=\"tok max\" style=\"background-color:rgba(0,170,60,1.000)\" title=\"3\" data-value=\"3\">&lt;script&gt;"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<span class=\"label\">real</span>"), std::string::npos);
  EXPECT_NE(html.find("<span class=\"label\">simulated</span>"), std::string::npos);
  EXPECT_NE(html.find("id=\"prev\""), std::string::npos);
  EXPECT_EQ(html.find("id=\"next\""), std::string::npos);
  EXPECT_NE(html.find("<svg id=\"histogram\""), std::string::npos);
  // 3 tokens x (2 top + 1 random + 2 scored rows)
  std::size_t spans = 0;
  for (auto p = html.find("<span class=\"tok"); p != std::string::npos; p = html.find("<span class=\"tok", p + 1)) ++spans;
  EXPECT_EQ(spans, 15u);
}

TEST(ViewerSweep, ProgressFromAJournal) {
  test::TempDir dir;
  fs::create_directories(dir / "explain");
  fs::create_directories(dir / "model");
  test::write_file(dir / "model" / "config.json", "{}");
  test::write_file(dir / "sequences.h5", "");
  std::string lines;
  for (std::uint32_t n = 0; n < 4; ++n)
    lines += json{{"key", "0/" + std::to_string(n)}, {"value", result(0, n, "x", 0.5, n != 2)}}.dump() + "\n";
  test::write_file(dir / "explain" / "journal.jsonl", lines);
  const auto paths = resolve_run(dir.path());
  EXPECT_EQ(paths.explain_dir, dir.path() / "explain");
  IndexBuilder b(paths.current_results());
  b.update();
  const ResultsIndex idx(b.entries());
  SweepInputs in;
  in.paths = &paths;
  in.index = &idx;
  in.total = 10;
  in.observed_rate = 2.0;
  in.now_unix = 1.7e9;
  const auto s = build_sweep_json(in);
  EXPECT_FALSE(s["finished"]);
  EXPECT_EQ(s["explain"]["done"], 4);
  EXPECT_EQ(s["explain"]["failed"], 1);
  EXPECT_DOUBLE_EQ(s["explain"]["eta_s"].get<double>(), 3.0);
  EXPECT_NEAR(s["explain"]["cost_usd"].get<double>(), 4 * 0.013, 1e-12);
  EXPECT_EQ(s["failures"][0]["neuron"], 2);
  EXPECT_EQ(s["stages"][0]["state"], "done");   // model
  EXPECT_EQ(s["stages"][2]["state"], "running");  // collect: sequences exist, records not yet
  EXPECT_EQ(s["stages"][3]["state"], "running");  // explain
  const auto html = render_sweep_page(0, s, ServerLinks());
  EXPECT_NE(html.find("http-equiv=\"refresh\" content=\"5\""), std::string::npos);
  EXPECT_NE(html.find("id=\"done\">4<"), std::string::npos);
  EXPECT_EQ(render_sweep_page(0, s, StaticLinks("")).find("http-equiv=\"refresh\""), std::string::npos);

  RateTracker rt;
  EXPECT_FALSE(rt.rate());
  rt.observe(10.0, 4);
  rt.observe(12.0, 4);
  EXPECT_FALSE(rt.rate());
  rt.observe(14.0, 12);
  EXPECT_DOUBLE_EQ(*rt.rate(), 2.0);
}

TEST_F(ViewerSite, StaticReportLinksResolve) {
  const auto out = dir_ / "report";
  const auto stats = write_html_report(site_->runs(), out);
  EXPECT_EQ(stats.neurons, 3u);
  for (const auto* f : {"index.html", "run-0/by-neuron-1.html", "run-0/by-score-1.html", "run-0/sweep.html",
                        "run-0/neurons/0/1.html", "run-0/neurons/1/3.html"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  // Every relative link of every page points at a file that was written.
  std::size_t links = 0;
  const std::regex href("href=\"([^\"#]+)\"");
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    if (!e.is_regular_file()) continue;
    const auto html = test::read_file(e.path());
    EXPECT_EQ(html.find("<script"), std::string::npos) << e.path();
    for (std::sregex_iterator it(html.begin(), html.end(), href), end; it != end; ++it) {
      const fs::path target = e.path().parent_path() / (*it)[1].str();
      EXPECT_TRUE(fs::exists(target)) << e.path() << " -> " << (*it)[1].str();
      ++links;
    }
  }
  EXPECT_GT(links, 20u);
}

TEST(ViewerSiteRuns, SeveralRunsOnTheServerAndInAReport) {
  test::TempDir dir;
  for (const char* name : {"a", "b"}) {
    fs::create_directories(dir / name / "explain");
    test::write_file(dir / name / "explain" / "results.jsonl", result(0, 0, std::string("run ") + name, 0.5).dump() + "\n");
  }
  auto open = [&] {
    std::vector<std::unique_ptr<ViewerRun>> runs;
    for (const char* name : {"a", "b"}) runs.push_back(std::make_unique<ViewerRun>(resolve_run(dir / name), nullptr));
    return runs;
  };
  Site site(open());
  const auto home = site.handle("/", {});
  ASSERT_EQ(home.status, 200);
  EXPECT_NE(home.body.find("<a href=\"/run/1/\">b</a>"), std::string::npos) << home.body;
  EXPECT_NE(site.handle("/run/1/", {}).body.find("run b"), std::string::npos);
  EXPECT_EQ(json::parse(site.handle("/api/runs", {}).body).size(), 2u);
  auto runs = open();
  const auto stats = write_html_report(runs, dir / "report");
  EXPECT_EQ(stats.neurons, 2u);
  const auto index = test::read_file(dir / "report" / "index.html");
  EXPECT_NE(index.find("href=\"run-1/by-neuron-1.html\""), std::string::npos) << index;
  EXPECT_TRUE(fs::exists(dir / "report" / "run-1" / "neurons" / "0" / "0.html"));
}

TEST(ViewerRunPaths, WhatARunArgumentNames) {
  test::TempDir dir;
  // An explain directory whose summary.json names the records file.
  fs::create_directories(dir / "ex");
  test::write_file(dir / "ex" / "journal.jsonl", "");
  test::write_file(dir / "elsewhere.h5", "");
  test::write_file(dir / "ex" / "summary.json", json{{"records", (dir / "elsewhere.h5").string()}}.dump());
  auto p = resolve_run(dir / "ex");
  EXPECT_TRUE(p.sweep_dir.empty());
  EXPECT_EQ(p.records, dir / "elsewhere.h5");
  EXPECT_EQ(p.current_results(), dir / "ex" / "journal.jsonl");
  test::write_file(dir / "ex" / "results.jsonl", "");
  EXPECT_EQ(p.current_results(), dir / "ex" / "results.jsonl");  // the finished stage wins
  EXPECT_EQ(p.name, "ex");
  // A results file given directly; records from --records.
  p = resolve_run(dir / "ex" / "results.jsonl", dir / "elsewhere.h5");
  EXPECT_EQ(p.results_file, dir / "ex" / "results.jsonl");
  EXPECT_EQ(p.records, dir / "elsewhere.h5");
  // A sweep that has only started: its records file is expected where the sweep will write it.
  fs::create_directories(dir / "sw" / "model");
  test::write_file(dir / "sw" / "model" / "config.json", "{}");
  p = resolve_run(dir / "sw");
  EXPECT_EQ(p.sweep_dir, dir / "sw");
  EXPECT_EQ(p.records, dir / "sw" / "records.h5");
  EXPECT_TRUE(p.current_results().empty());
  EXPECT_HAS(test::errmsg([&] { resolve_run(dir / "nothing"); }), "not a sweep directory");
  EXPECT_HAS(test::errmsg([&] { resolve_run(dir / "ex", dir / "missing.h5"); }), "--records");
}
