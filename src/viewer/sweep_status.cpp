#include "viewer/sweep_status.hpp"

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace nexplain::viewer {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr double kRateWindow = 300.0;  // seconds of observations the rate is computed over
constexpr std::size_t kMaxFailures = 100;

std::optional<double> mtime(const fs::path& p) {
  struct stat st {};
  if (p.empty() || ::stat(p.c_str(), &st) != 0) return std::nullopt;
  return static_cast<double>(st.st_mtim.tv_sec) + 1e-9 * static_cast<double>(st.st_mtim.tv_nsec);
}

bool any_with_prefix(const fs::path& dir, const std::string& prefix) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) return true;
  return false;
}

json stage(const char* name, const char* state, const std::string& detail) {
  return {{"name", name}, {"state", state}, {"detail", detail}};
}

}  // namespace

void RateTracker::observe(double seconds, std::size_t done) {
  std::lock_guard lock(mutex_);
  if (!samples_.empty() && done < samples_.back().second) samples_.clear();  // a restarted run
  samples_.emplace_back(seconds, done);
  while (samples_.size() > 2 && samples_.front().first < seconds - kRateWindow) samples_.pop_front();
  if (samples_.size() > 1000) samples_.erase(samples_.begin() + 1);  // thin out very frequent looks
}

std::optional<double> RateTracker::rate() const {
  std::lock_guard lock(mutex_);
  if (samples_.size() < 2) return std::nullopt;
  const auto& [t0, d0] = samples_.front();
  const auto& [t1, d1] = samples_.back();
  if (d1 <= d0 || t1 <= t0) return std::nullopt;
  return static_cast<double>(d1 - d0) / (t1 - t0);
}

json build_sweep_json(const SweepInputs& in) {
  const RunPaths& p = *in.paths;
  const ResultsIndex& idx = *in.index;
  json stages = json::array();
  if (!p.sweep_dir.empty()) {
    const bool model = fs::exists(p.sweep_dir / "model" / "config.json");
    stages.push_back(stage("model", model ? "done" : "pending", model ? "model/" : ""));
    const bool seqs = fs::exists(p.sweep_dir / "sequences.h5");
    stages.push_back(stage("tokenize", seqs ? "done" : model ? "running" : "pending", seqs ? "sequences.h5" : ""));
    const bool recs = fs::exists(p.sweep_dir / "records.h5");
    const bool collecting = !recs && (any_with_prefix(p.sweep_dir, "records.h5.partial") || any_with_prefix(p.sweep_dir, "records.ckpt"));
    stages.push_back(stage("collect", recs ? "done" : collecting || seqs ? "running" : "pending", recs ? "records.h5" : ""));
  }
  const bool finished = fs::exists(p.explain_dir / "results.jsonl");
  const bool journal = fs::exists(p.explain_dir / "journal.jsonl");
  const std::size_t done = idx.size();
  const auto& t = idx.totals();

  std::optional<std::size_t> total = in.total;
  if (finished) {
    std::ifstream sf(p.explain_dir / "summary.json");
    const auto s = sf ? json::parse(sf, nullptr, false) : json();
    if (s.is_object() && s.contains("neurons") && s["neurons"].is_number_unsigned()) total = s["neurons"].get<std::size_t>();
    else total = done;
  }
  // Rate: from watching the journal grow; before that, the journal's span (records.h5 written ->
  // journal last appended) is the explain stage's run time for a run that was not resumed.
  // (Plain values rather than std::optional: GCC 12 warns falsely about optional<double> here.)
  double rate = 0;  // 0: unknown
  const char* rate_source = "none";
  if (!finished && in.observed_rate && *in.observed_rate > 0) {
    rate = *in.observed_rate;
    rate_source = "observed";
  }
  if (!finished && rate == 0 && done > 0) {
    const auto start = mtime(p.records), last = mtime(p.explain_dir / "journal.jsonl");
    if (start && last && *last > *start) {
      rate = static_cast<double>(done) / (*last - *start);
      rate_source = "journal age";
    }
  }
  json eta = nullptr;
  if (finished) eta = 0.0;
  else if (rate > 0 && total && *total >= done) eta = static_cast<double>(*total - done) / rate;

  std::string detail = std::to_string(done) + (total ? " of " + std::to_string(*total) : std::string()) + " neurons";
  stages.push_back(stage("explain", finished ? "done" : journal ? "running" : "pending", detail));

  json failures = json::array();
  std::size_t failed = 0;
  for (const auto& e : idx.entries()) {
    if (e.ok) continue;
    if (++failed <= kMaxFailures) failures.push_back({{"layer", e.layer}, {"neuron", e.neuron}, {"error", e.error}});
  }
  return {{"name", p.name},
          {"finished", finished},
          {"stages", stages},
          {"explain",
           {{"done", done},
            {"ok", t.ok},
            {"failed", t.failed},
            {"total", total ? json(*total) : json(nullptr)},
            {"rate_per_s", rate > 0 ? json(rate) : json(nullptr)},
            {"rate_source", rate_source},
            {"eta_s", eta},
            {"mean_score", std::isfinite(t.mean_score) ? json(t.mean_score) : json(nullptr)},
            {"cost_usd", t.cost_usd},
            {"prompt_tokens", t.prompt_tokens},
            {"completion_tokens", t.completion_tokens}}},
          {"failures", failures},
          {"failures_shown", failures.size()},
          {"updated_unix", in.now_unix}};
}

}  // namespace nexplain::viewer
