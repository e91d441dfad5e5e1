#include "sweep/sweep_run.hpp"

#include <glob.h>

#include <chrono>
#include <fstream>
#include <map>

#include <spdlog/spdlog.h>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "explain/explain_run.hpp"
#include "io/corpus_reader.hpp"
#include "io/corpus_tokenize.hpp"
#include "model/planted.hpp"
#include "tokenizer/gpt2_tokenizer.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::vector<fs::path> expand_inputs(const std::vector<std::string>& patterns) {
  std::vector<fs::path> out;
  for (const auto& p : patterns) {
    glob_t g{};
    const int rc = glob(p.c_str(), GLOB_NOCHECK, nullptr, &g);
    if (rc == 0)
      for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    globfree(&g);
  }
  for (const auto& f : out)
    if (!fs::is_regular_file(f)) fail("[corpus] inputs: '{}' is not a file (nor a pattern matching files)", f.string());
  return out;
}

// Builds the planted model into <out>/model via a temporary directory, so a half-written model
// never looks complete.
void build_model(const SweepConfig& c) {
  const fs::path dir = c.model_path();
  fs::path tmp = dir;
  tmp += ".partial";
  fs::remove_all(tmp);
  const auto neurons = parse_planted_spec(c.planted, c.planted_config);
  write_planted_model(tmp, build_planted_model(c.planted_config, neurons, c.planted_seed, c.planted));
  fs::rename(tmp, dir);
}

// For a planted model: each planted neuron's ground truth next to its explanation and score,
// the check that the pipeline recovers what was built in.
std::string planted_report(const SweepConfig& c) {
  const auto truth_path = c.model_path() / "planted.json";
  const auto results_path = c.explain_dir() / "results.jsonl";
  if (!fs::exists(truth_path) || !fs::exists(results_path)) return {};
  std::ifstream tf(truth_path);
  const auto truth = nlohmann::json::parse(tf, nullptr, false);
  if (truth.is_discarded() || !truth.contains("neurons")) return {};
  std::map<std::string, nlohmann::json> results;
  std::ifstream rf(results_path);
  for (std::string line; std::getline(rf, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) results[fmt::format("{}/{}", j["layer"].get<int>(), j["neuron"].get<int>())] = j;
  }
  std::string out = "planted neurons (ground truth -> explanation, score):\n";
  for (const auto& n : truth["neurons"]) {
    const auto key = fmt::format("{}/{}", n["layer"].get<int>(), n["neuron"].get<int>());
    std::string what = n["kind"].get<std::string>();
    if (n.contains("tokens")) what += " " + n["tokens"].dump();
    if (n.contains("positions")) what += " " + n["positions"].dump();
    auto it = results.find(key);
    if (it == results.end()) continue;
    const auto& sc = it->second["scores"]["all"];
    out += fmt::format("  {:<6} {:<22} -> {}  ({})\n", key, what, it->second["explanation"].get<std::string>(),
                       sc.is_number() ? fmt::format("{:.3f}", sc.get<double>()) : std::string("undefined"));
  }
  return out;
}

}  // namespace

std::string run_sweep(const SweepConfig& c, const SweepRunOptions& o, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const auto t0 = std::chrono::steady_clock::now();
  std::string report;
  auto stage_line = [&](const char* stage, const std::string& what, double secs) {
    report += fmt::format("  {:<9} {:<48} {:>7.1f} s\n", stage, what, secs);
  };
  // Stages before explain run on rank 0 only; the others wait for them.
  std::string error;
  if (rank == 0) {
    try {
      fs::create_directories(c.out);
      auto t = std::chrono::steady_clock::now();
      if (!c.planted.empty() && !fs::exists(c.model_path() / "config.json")) {
        spdlog::info("sweep {}: building the planted model", c.name);
        build_model(c);
        stage_line("model", "planted: " + c.planted.substr(0, 40), since(t));
      } else {
        stage_line("model", c.model_path().string() + " (exists)", 0);
      }

      t = std::chrono::steady_clock::now();
      if (!fs::exists(c.sequences_path())) {
        spdlog::info("sweep {}: tokenizing", c.name);
        TokenizeOptions to;
        to.corpus.format = parse_corpus_format(c.format);
        to.corpus.text_field = c.text_field;
        if (!c.separator.empty()) to.corpus.separator = c.separator;
        to.seq_len = c.seq_len;
        to.command_line = o.command_line;
        const auto tok = Gpt2Tokenizer::load(o.tokenizer_dir);
        const auto s = tokenize_corpus(expand_inputs(c.inputs), to, tok, c.sequences_path());
        stage_line("tokenize", fmt::format("{} documents, {} tokens, {} excerpts", s.documents, s.tokens, s.sequences), since(t));
      } else {
        stage_line("tokenize", "sequences.h5 (exists)", 0);
      }

      t = std::chrono::steady_clock::now();
      if (!fs::exists(c.records_path())) {
        spdlog::info("sweep {}: collecting", c.name);
        CollectOptions co = c.collect;
        co.model_dir = c.model_path();
        co.sequences = c.sequences_path();
        co.out = c.records_path();
        co.command_line = o.command_line;
        const auto s = run_collect(co);
        stage_line("collect", fmt::format("{} excerpts, {:.0f} tokens/s on {}", s.excerpts, s.main_tokens_per_s, s.backend),
                   since(t));
      } else {
        stage_line("collect", "records.h5 (exists)", 0);
      }
    } catch (const Error& e) {
      error = e.what();
    }
  }
  // Tell every rank whether the first stages succeeded before they join the explain stage.
  int failed = error.empty() ? 0 : 1;
  MPI_Bcast(&failed, 1, MPI_INT, 0, comm);
  if (failed) {
    if (rank == 0) throw Error(error);
    return {};
  }

  auto t = std::chrono::steady_clock::now();
  ExplainRunOptions eo;
  eo.records = c.records_path();
  eo.out_dir = c.explain_dir();
  eo.tokenizer_dir = o.tokenizer_dir;
  eo.layers = c.explain_layers;
  eo.neurons_per_layer = c.neurons_per_layer;
  eo.settings = c.explain;
  eo.command_line = o.command_line;
  const auto s = run_explain(eo, comm);
  if (rank != 0) return {};
  stage_line("explain", fmt::format("{} neurons ({} resumed), explainer {}", s.neurons, s.resumed, c.explain.explainer_name()),
             since(t));
  std::string out = fmt::format("sweep {} in {}\n", c.name, c.out.string());
  out += report;
  out += format_summary(s);
  out += planted_report(c);
  out += fmt::format("total wall time {:.1f} s; results: {}\n", since(t0), (c.explain_dir() / "results.jsonl").string());
  write_file_atomic(c.out / "sweep-summary.txt", out);
  return out;
}

}  // namespace nexplain
