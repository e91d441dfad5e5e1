// `nexplain report --html DIR RESULTS...`: the viewer's pages as static files (docs/VIEWER.md),
// for a shared filesystem or a laptop without a server. Does not need cpp-httplib.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "viewer/open_runs.hpp"
#include "viewer/static_report.hpp"

namespace nexplain::cli {

void add_report_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("report", "Write the viewer's pages (index, every neuron, sweep progress) as static HTML files");
  struct Opts {
    std::vector<std::string> results;
    std::string html, records, tokenizer;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("results", o->results, "Sweep directories, explain output directories or results.jsonl files (as `nexplain serve`)")
      ->required();
  cmd->add_option("--html", o->html, "Output directory (created; open DIR/index.html)")->required();
  cmd->add_option("--records", o->records, "Records file (default: found next to the results)")->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory: tokenizer.json, else GPT-2's files; a model directory that ships one works "
                  "(default: see `nexplain tokenize --help`)");
  cmd->callback([o] {
    auto runs = viewer::open_runs(o->results, o->records, o->tokenizer);
    const auto stats = viewer::write_html_report(runs, o->html, [](std::size_t done, std::size_t total) {
      spdlog::info("report: {} of {} neuron pages", done, total);
    });
    std::printf("wrote %zu pages (%zu neurons) to %s/index.html\n", stats.files, stats.neurons, o->html.c_str());
  });
}

}  // namespace nexplain::cli
