#include "slurm/submit.hpp"

#include <glob.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "slurm/process.hpp"
#include "slurm/sbatch_render.hpp"
#include "slurm/slurm_config.hpp"
#include "sweep/sweep_config.hpp"
#include "sweep/sweep_layers.hpp"

namespace nexplain {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// What a cluster job would fail on hours later is refused now, naming the key.
void check_inputs(const SweepConfig& c, const std::string& source) {
  if (!c.model_dir.empty() && !fs::exists(c.model_dir / "config.json"))
    fail("{}: [model] dir = '{}': no such model (expected a HuggingFace directory with config.json; "
         "scripts/fetch-model.sh downloads one)",
         source, c.model_dir.string());
  if (fs::exists(c.sequences_path())) return;  // already tokenized: the inputs are not read again
  for (const auto& p : c.inputs) {
    glob_t g{};
    const int rc = glob(p.c_str(), 0, nullptr, &g);
    const bool any = rc == 0 && g.gl_pathc > 0;
    globfree(&g);
    if (!any) fail("{}: [corpus] inputs: '{}' matches no file", source, p);
  }
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Job ids of the last submission that Slurm still has queued or running.
std::vector<std::string> still_queued(const fs::path& sweep_dir) {
  std::ifstream in(jobs_record_path(sweep_dir));
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  if (last.empty()) return {};
  const auto j = json::parse(last, nullptr, false);
  if (j.is_discarded()) return {};
  std::string ids;
  for (const auto& job : j.value("jobs", json::array())) {
    if (!ids.empty()) ids += ',';
    ids += job.value("job_id", "");
  }
  if (ids.empty()) return {};
  const auto r = run_program({"squeue", "-h", "-j", ids, "-o", "%i"});
  std::vector<std::string> out;
  std::istringstream ss(r.out);
  for (std::string id; ss >> id;) out.push_back(id);
  return out;
}

}  // namespace

fs::path jobs_record_path(const fs::path& sweep_dir) { return sweep_dir / "slurm" / "jobs.jsonl"; }

SubmitResult submit_sweep(const SubmitOptions& o) {
  const std::string source = o.sweep_file.string();
  SweepConfig c = SweepConfig::load(o.sweep_file);
  if (!o.out.empty()) c.out = o.out;
  c.out = fs::absolute(c.out);
  const SlurmConfig slurm = SlurmConfig::from_json(c.raw.contains("slurm") ? c.raw.at("slurm") : json(), source);
  check_inputs(c, source);
  std::vector<std::string> parts;
  if (slurm.collect.array_layers > 0) parts = sweep_layer_parts(c, slurm.collect.array_layers);
  else sweep_layer_parts(c, 1);  // validates [collect] layers against the model now

  // Stages whose output exists are done (outputs are written atomically).
  const bool model_ok = c.planted.empty() || fs::exists(c.model_path() / "config.json");
  const bool tokenized = model_ok && fs::exists(c.sequences_path());
  bool collected = fs::exists(c.records_path());
  if (!collected && !parts.empty()) {
    collected = true;
    for (const auto& p : parts) collected = collected && fs::exists(part_records_path(c, p));
    // the explain job merges the parts
  }
  const bool explained = fs::exists(c.explain_dir() / "results.jsonl");
  std::vector<std::string> stages;
  if (!tokenized) stages.push_back("tokenize");
  if (!collected) stages.push_back("collect");
  if (!explained) stages.push_back("explain");

  RenderContext ctx;
  ctx.templates = find_templates_dir(o.templates);
  ctx.workdir = fs::current_path();
  std::error_code ec;
  ctx.nexplain = fs::read_symlink("/proc/self/exe", ec);
  if (ec) fail("cannot find this nexplain binary's path (/proc/self/exe): {}", ec.message());
  ctx.out = c.out;
  auto ext = o.sweep_file.extension().string();
  ctx.sweep_file = c.out / "slurm" / ("sweep" + (ext.empty() ? std::string(".toml") : ext));
  if (!o.tokenizer.empty()) ctx.tokenizer = fs::absolute(o.tokenizer);

  SubmitResult res;
  if (stages.empty()) {
    res.text = fmt::format("sweep {}: every stage is done ({}); nothing to submit\n", c.name, c.out.string());
    return res;
  }
  std::vector<std::pair<std::string, std::string>> scripts;  // stage, text
  for (const auto& s : stages) scripts.emplace_back(s, render_stage_script(s, c, slurm, ctx, s == "collect" ? parts : std::vector<std::string>{}));

  if (o.dry_run) {
    std::string prev;
    for (const auto& [stage, text] : scripts) {
      res.text += fmt::format("# ===== stage {} -> {}{} =====\n", stage, (c.out / "slurm" / (stage + ".sbatch")).string(),
                              prev.empty() ? "" : " (sbatch --dependency=afterok:<" + prev + " job> --kill-on-invalid-dep=yes)");
      res.text += text + "\n";
      prev = stage;
    }
    return res;
  }

  if (!slurm_reachable()) fail("no Slurm controller answers (`scontrol ping`): cannot submit; --dry-run prints the scripts");
  fs::create_directories(c.out / "slurm");
  if (const auto queued = still_queued(c.out); !queued.empty()) {
    std::string ids;
    for (const auto& id : queued) ids += (ids.empty() ? "" : ", ") + id;
    fail("sweep {}: jobs {} of the last submission are still queued or running; wait for them or scancel them first",
         c.out.string(), ids);
  }
  // The jobs read a copy, so editing jobs/X.toml later cannot change a sweep in flight.
  write_file_atomic(ctx.sweep_file, read_text(o.sweep_file));
  json record = {{"time", utc_now()}, {"sweep", fs::absolute(o.sweep_file).string()}, {"jobs", json::array()}};
  std::string prev_id;
  std::string error;
  for (const auto& [stage, text] : scripts) {
    const fs::path script = c.out / "slurm" / (stage + ".sbatch");
    write_file_atomic(script, text);
    fs::permissions(script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
    std::vector<std::string> argv = {"sbatch", "--parsable"};
    if (!prev_id.empty()) {
      argv.push_back("--dependency=afterok:" + prev_id);
      argv.push_back("--kill-on-invalid-dep=yes");  // a failed stage cancels the rest instead of leaving them pending forever
    }
    argv.push_back(script.string());
    const auto r = run_program(argv);
    if (r.exit_code != 0) {
      error = fmt::format("sbatch {} failed (exit {}): {}", script.string(), r.exit_code, r.err.empty() ? r.out : r.err);
      break;
    }
    std::string id = r.out.substr(0, r.out.find_first_of(";\n"));  // --parsable: "id" or "id;cluster"
    SubmittedJob job{stage, id, script, stage == "collect" ? parts.size() : 0};
    record["jobs"].push_back({{"stage", stage}, {"job_id", id}, {"script", script.string()}, {"array_tasks", job.array_tasks}});
    res.jobs.push_back(job);
    res.text += fmt::format("{:<9} job {}{}{}\n", stage, id, job.array_tasks ? fmt::format(" (array of {} layer ranges)", job.array_tasks) : "",
                            prev_id.empty() ? "" : " after " + prev_id);
    prev_id = id;
  }
  if (!res.jobs.empty()) {
    std::ofstream f(jobs_record_path(c.out), std::ios::app);
    f << record.dump() << "\n";
  }
  if (!error.empty()) {
    if (res.jobs.empty()) fail("{}", error);
    fail("{}\n(submitted before the failure: {}; recorded in {})", error, res.text, jobs_record_path(c.out).string());
  }
  res.text = fmt::format("sweep {}: submitted {} job(s); ids in {}\n", c.name, res.jobs.size(), jobs_record_path(c.out).string()) +
             res.text + fmt::format("follow with: nexplain status {}\n", c.out.string());
  return res;
}

}  // namespace nexplain
