#include "slurm/sweep_status.hpp"

#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "collect/layer_range.hpp"
#include "core/error.hpp"
#include "io/h5file.hpp"
#include "io/records_file.hpp"
#include "io/sequences.hpp"
#include "slurm/process.hpp"
#include "slurm/submit.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/sweep_layers.hpp"

namespace nexplain {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::optional<SweepConfig> load_config(const fs::path& dir, const fs::path& file) {
  fs::path f = file;
  if (f.empty())
    for (const char* name : {"sweep.toml", "sweep.json"})
      if (fs::exists(dir / "slurm" / name)) f = dir / "slurm" / name;
  if (f.empty()) return std::nullopt;
  SweepConfig c = SweepConfig::load(f);
  c.out = dir;
  return c;
}

// The last line of a stage's Slurm logs that a Progress reporter wrote (it carries rate and ETA).
std::string last_progress_line(const fs::path& dir, const std::string& stage) {
  std::string best;
  fs::file_time_type best_time{};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir / "slurm", ec)) {
    const auto name = e.path().filename().string();
    if (name.rfind(stage + "-", 0) != 0 || e.path().extension() != ".out") continue;
    std::ifstream in(e.path());
    std::string line, last;
    while (std::getline(in, line))
      if (line.find("/s") != std::string::npos && line.find(stage) != std::string::npos) last = line;
    if (!last.empty() && (best.empty() || e.last_write_time() > best_time)) {
      best = last;
      best_time = e.last_write_time();
    }
  }
  return best;
}

// key -> the journal's last record for it.
std::map<std::string, json> read_journal(const fs::path& path) {
  std::map<std::string, json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("key")) continue;  // a torn last line after a crash
    out[j["key"].get<std::string>()] = j.value("value", json::object());
  }
  return out;
}

std::uint64_t checkpoint_cursor(const fs::path& ckpt) {
  try {
    const auto f = h5::File::open_read(ckpt);
    return f.has_attr("checkpoint_cursor") ? static_cast<std::uint64_t>(f.attr_int("checkpoint_cursor")) : 0;
  } catch (const Error&) {
    return 0;
  }
}

std::string field(const std::string& line, const std::string& key) {
  const auto p = line.find(" " + key + "=");
  if (p == std::string::npos) return {};
  const auto b = p + key.size() + 2;
  return line.substr(b, line.find(' ', b) - b);
}

}  // namespace

std::string sweep_status(const fs::path& dir, const fs::path& sweep_file) {
  if (!fs::is_directory(dir)) fail("{}: not a sweep directory", dir.string());
  const auto cfg = load_config(dir, sweep_file);
  std::string out = fmt::format("sweep {} ({})\n", cfg ? cfg->name : dir.filename().string(), dir.string());

  // tokenize
  std::uint64_t n_excerpts = 0;
  const fs::path seqs = dir / "sequences.h5";
  if (fs::exists(seqs)) {
    try {
      n_excerpts = SequencesReader(seqs).size();
    } catch (const Error&) {
    }
    out += fmt::format("  tokenize  done     1/1  {} excerpts\n", n_excerpts);
  } else {
    out += "  tokenize  todo     0/1\n";
  }

  // collect: one records file, or layer parts (a job array) merged by the explain stage
  const fs::path records = dir / "records.h5";
  std::vector<std::string> parts;
  if (cfg) {
    if (const auto& s = cfg->raw; s.contains("slurm") && s["slurm"].contains("collect") &&
                                  s["slurm"]["collect"].value("array_layers", 0) > 0) {
      try {
        parts = sweep_layer_parts(*cfg, s["slurm"]["collect"]["array_layers"].get<int>());
      } catch (const Error&) {
      }
    }
  }
  if (fs::exists(records)) {
    out += fmt::format("  collect   done     {0}/{0}  records.h5\n", parts.empty() ? 1 : parts.size());
  } else {
    std::vector<fs::path> outputs;
    if (parts.empty()) outputs.push_back(records);
    else if (cfg)
      for (const auto& p : parts) outputs.push_back(part_records_path(*cfg, p));
    std::size_t done = 0;
    std::string progress;
    for (const auto& o : outputs) {
      if (fs::exists(o)) {
        ++done;
        continue;
      }
      auto ck = o;
      ck.replace_extension(".ckpt.h5");
      if (fs::exists(ck)) {
        const auto cur = checkpoint_cursor(ck);
        progress += fmt::format("; {} checkpointed at excerpt {}{}", ck.filename().string(), cur,
                                n_excerpts ? fmt::format(" ({:.0f}%)", 100.0 * static_cast<double>(cur) / static_cast<double>(n_excerpts)) : "");
      }
    }
    out += fmt::format("  collect   {:<8} {}/{}{}\n", done == outputs.size() ? "merge" : (done || !progress.empty() ? "partial" : "todo"),
                       done, outputs.size(), progress);
  }
  if (const auto p = last_progress_line(dir, "collect"); !p.empty() && !fs::exists(records)) out += "            last: " + p + "\n";

  // explain: journal vs the neurons the sweep asks for
  const fs::path edir = dir / "explain";
  const auto journal = read_journal(edir / "journal.jsonl");
  std::uint64_t total = 0;
  if (fs::exists(records)) {
    try {
      RecordsFile rf(records);
      int max_layer = 0;
      for (int l : rf.meta().layers) max_layer = std::max(max_layer, l);
      const std::string layers = cfg ? cfg->explain_layers : "all";
      const std::uint32_t per = cfg ? cfg->neurons_per_layer : 0;
      for (int l : parse_layer_range(layers, max_layer + 1))
        if (rf.has_layer(l)) total += per ? std::min(per, rf.n_neurons(l)) : rf.n_neurons(l);
    } catch (const Error&) {
    }
  }
  std::uint64_t failed = 0;
  double cost = 0;
  for (const auto& [k, v] : journal) {
    if (v.value("status", "") != "ok") ++failed;
    for (const char* u : {"explain_usage", "simulate_usage"})
      if (v.contains(u)) cost += v[u].value("cost_usd", 0.0);
  }
  const bool explained = fs::exists(edir / "results.jsonl");
  out += fmt::format("  explain   {:<8} {}/{}  {} failed, cost so far ${:.4f}\n", explained ? "done" : (journal.empty() ? "todo" : "partial"),
                     journal.size(), total ? std::to_string(total) : std::string("?"), failed, cost);
  if (const auto p = last_progress_line(dir, "explain"); !p.empty() && !explained) out += "            last: " + p + "\n";

  // Slurm: the last submission's jobs
  std::ifstream jf(jobs_record_path(dir));
  std::string line, last;
  while (std::getline(jf, line))
    if (!line.empty()) last = line;
  if (last.empty()) {
    out += "  slurm: no submission recorded (nexplain sweep runs without one)\n";
    return out;
  }
  const auto rec = json::parse(last, nullptr, false);
  if (rec.is_discarded()) return out + "  slurm: " + jobs_record_path(dir).string() + ": unreadable last line\n";
  const bool live = slurm_reachable();
  out += fmt::format("  slurm: submitted {}{}\n", rec.value("time", "?"), live ? "" : " (no Slurm controller answers: states unknown)");
  for (const auto& job : rec.value("jobs", json::array())) {
    const std::string id = job.value("job_id", "");
    out += fmt::format("    {:<9} job {:<10}", job.value("stage", "?"), id);
    if (live) {
      // One line per job (array: one per task): JobState, Restarts, RunTime, ExitCode, Reason.
      const auto r = run_program({"scontrol", "-o", "show", "job", id});
      if (r.exit_code != 0) {
        out += " (unknown to Slurm now)";
      } else {
        std::istringstream ss(r.out);
        std::map<std::string, int> states;
        std::string detail;
        for (std::string l; std::getline(ss, l);) {
          if (l.empty()) continue;
          ++states[field(l, "JobState")];
          detail = fmt::format(" restarts {} run {} exit {} reason {}", field(l, "Restarts"), field(l, "RunTime"),
                               field(l, "ExitCode"), field(l, "Reason"));
        }
        for (const auto& [s, n] : states) out += fmt::format(" {}{}", s, n > 1 ? fmt::format(" x{}", n) : "");
        if (states.size() == 1 && states.begin()->second == 1) out += detail;
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace nexplain
