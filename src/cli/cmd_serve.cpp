// `nexplain serve RESULTS...`: the neuron viewer as a local web server (docs/VIEWER.md). Needs
// cpp-httplib at build time; without it the command exists and says how to get the same pages
// (`nexplain report --html`), so scripts fail with a clear message rather than "unknown command".
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "viewer/open_runs.hpp"
#ifdef NEXPLAIN_HAVE_HTTPLIB
#include "viewer/http_server.hpp"
#endif

namespace nexplain::cli {

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Browse records, explanations and scores in a web browser: index (sort, filter, search), neuron pages, "
      "sweep progress, JSON API (docs/VIEWER.md)");
  struct Opts {
    std::vector<std::string> results;
    int port = 8080;
    std::string bind = "127.0.0.1";
    std::string records, tokenizer;
    int threads = 4;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("results", o->results,
                  "Sweep directories (model/, sequences.h5, records.h5, explain/), explain output directories (journal.jsonl, results.jsonl) "
                  "or results.jsonl files; a running sweep is followed as its journal grows")
      ->required();
  cmd->add_option("--port", o->port, "TCP port (0: any free port; the URL is printed)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--bind", o->bind, "Address to listen on; the default serves this machine only")->capture_default_str();
  cmd->add_option("--records", o->records, "Records file (default: found next to the results)")->check(CLI::ExistingFile);
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory: tokenizer.json, else GPT-2's files; a model directory that ships one works "
                  "(default: see `nexplain tokenize --help`)");
  cmd->add_option("--threads", o->threads, "Request threads")->capture_default_str()->check(CLI::Range(1, 64));
  cmd->footer(
      "Pages: / (runs), /run/<i>/ (index), /run/<i>/neuron/<L>/<N>, /run/<i>/sweep; JSON under /api/ (docs/VIEWER.md).\n"
      "There is no authentication: a --bind other than loopback shows the results to that network.");
  cmd->callback([o] {
#ifdef NEXPLAIN_HAVE_HTTPLIB
    viewer::Site site(viewer::open_runs(o->results, o->records, o->tokenizer));
    viewer::ServeOptions so;
    so.bind = o->bind;
    so.port = o->port;
    so.threads = o->threads;
    so.on_listening = [&](int port) {
      // Tests and scripts read this line to learn the port of --port 0.
      std::printf("nexplain viewer listening on http://%s:%d/ (Ctrl-C stops)\n", o->bind.c_str(), port);
      std::fflush(stdout);
    };
    viewer::serve_site(site, so);
#else
    fail("this nexplain was built without cpp-httplib, so it cannot serve pages; install libcpp-httplib-dev and "
         "rebuild, or write the same pages as files with `nexplain report --html DIR {}`",
         o->results.empty() ? std::string("RESULTS") : o->results.front());
#endif
  });
}

}  // namespace nexplain::cli
