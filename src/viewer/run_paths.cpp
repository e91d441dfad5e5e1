#include "viewer/run_paths.hpp"

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace nexplain::viewer {

namespace fs = std::filesystem;

fs::path RunPaths::current_results() const {
  if (!results_file.empty()) return results_file;
  if (fs::exists(explain_dir / "results.jsonl")) return explain_dir / "results.jsonl";
  if (fs::exists(explain_dir / "journal.jsonl")) return explain_dir / "journal.jsonl";
  return {};
}

RunPaths resolve_run(const fs::path& arg, const fs::path& records) {
  RunPaths r;
  // A sweep directory from its first stage on (model/, then sequences.h5, records.h5, explain/).
  if (fs::is_directory(arg / "explain") || fs::exists(arg / "records.h5") || fs::exists(arg / "sequences.h5") ||
      fs::exists(arg / "model" / "config.json")) {
    r.sweep_dir = arg;
    r.explain_dir = arg / "explain";
  } else if (fs::exists(arg / "journal.jsonl") || fs::exists(arg / "results.jsonl")) {
    r.explain_dir = arg;
  } else if (fs::is_regular_file(arg)) {
    r.results_file = arg;
    r.explain_dir = arg.parent_path().empty() ? fs::path(".") : arg.parent_path();
  } else {
    fail("{}: not a sweep directory (model/, sequences.h5, records.h5 or explain/), an explain directory "
         "(journal.jsonl, results.jsonl) nor a results.jsonl file",
         arg.string());
  }
  const fs::path named = fs::weakly_canonical(r.sweep_dir.empty() ? r.explain_dir : r.sweep_dir);
  r.name = named.filename().string();
  if (!records.empty()) {
    if (!fs::is_regular_file(records)) fail("--records {}: no such file", records.string());
    r.records = records;
  } else if (!r.sweep_dir.empty()) {
    r.records = r.sweep_dir / "records.h5";  // may not exist yet: a running sweep's collect writes it
  } else {
    // summary.json names the records file the explain stage read.
    std::ifstream in(r.explain_dir / "summary.json");
    const auto j = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
    if (j.is_object() && j.contains("records") && j["records"].is_string() && fs::exists(j["records"].get<std::string>()))
      r.records = j["records"].get<std::string>();
    else if (fs::exists(r.explain_dir.parent_path() / "records.h5"))
      r.records = r.explain_dir.parent_path() / "records.h5";
  }
  return r;
}

}  // namespace nexplain::viewer
