#include "viewer/static_report.hpp"

#include <fstream>

#include "core/error.hpp"
#include "viewer/links.hpp"
#include "viewer/pages.hpp"

namespace nexplain::viewer {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void write_page(const fs::path& path, const std::string& html, ReportStats& stats) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << html;
  out.close();
  if (!out) fail("{}: cannot write", path.string());
  ++stats.files;
}

// "../" once per directory level of a file under the report root.
std::string prefix_for(const std::string& file) {
  std::string p;
  for (char c : file)
    if (c == '/') p += "../";
  return p;
}

}  // namespace

ReportStats write_html_report(std::vector<std::unique_ptr<ViewerRun>>& runs, const fs::path& dir,
                              const std::function<void(std::size_t, std::size_t)>& progress) {
  ReportStats stats;
  fs::create_directories(dir);
  std::size_t total = 0, done = 0;
  for (auto& r : runs) total += r->index()->size();
  json all = json::array();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    ViewerRun& run = *runs[i];
    const json summary = run.summary_json();
    all.push_back({{"id", i}, {"summary", summary}});
    // The two orders a static index offers; the first page by neuron is also the run's home.
    for (const bool by_score : {false, true}) {
      IndexQuery q;
      q.sort = by_score ? SortKey::score : SortKey::neuron;
      q.descending = by_score;
      for (std::size_t p = 1;; ++p) {
        q.page = p;
        const json page = run.index_json(q);
        const std::string file = *StaticLinks::index_file(i, q);
        write_page(dir / file, render_index_page(i, summary, q, page, StaticLinks(prefix_for(file))), stats);
        if (p == 1 && !by_score && runs.size() == 1)
          write_page(dir / "index.html", render_index_page(i, summary, q, page, StaticLinks("")), stats);
        if (p >= page.value("pages", std::size_t{0})) break;
      }
    }
    const std::string sweep_file = StaticLinks::sweep_file(i);
    write_page(dir / sweep_file, render_sweep_page(i, run.sweep_json(), StaticLinks(prefix_for(sweep_file))), stats);
    const auto index = run.index();
    for (const auto& e : index->entries()) {
      const std::string file = StaticLinks::neuron_file(i, e.layer, e.neuron);
      write_page(dir / file, render_neuron_page(i, run.neuron_json(e.layer, e.neuron), StaticLinks(prefix_for(file))), stats);
      ++stats.neurons;
      if (progress && (++done % 500 == 0 || done == total)) progress(done, total);
    }
  }
  if (runs.size() != 1) write_page(dir / "index.html", render_runs_page(all, StaticLinks("")), stats);
  return stats;
}

}  // namespace nexplain::viewer
