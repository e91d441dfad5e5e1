#include "viewer/viewer_run.hpp"

#include <cmath>
#include <fstream>

#include "explain/record_splits.hpp"
#include "viewer/http_error.hpp"
#include "viewer/neuron_data.hpp"

namespace nexplain::viewer {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// One lock for every HDF5 call of the process (the library is not built thread-safe).
std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json row_json(const IndexEntry& e) {
  return {{"layer", e.layer},
          {"neuron", e.neuron},
          {"status", e.ok ? "ok" : "failed"},
          {"explanation", e.explanation},
          {"error", e.error},
          {"scores", {{"all", num(e.all)}, {"top", num(e.top)}, {"random", num(e.random)}}}};
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

ViewerRun::ViewerRun(RunPaths paths, std::shared_ptr<const Tokenizer> tokenizer)
    : paths_(std::move(paths)), tokenizer_(std::move(tokenizer)), snap_(std::make_shared<Snapshot>()) {
  snapshot();  // a broken results file is reported at start, not on the first request
}

std::shared_ptr<const ResultsIndex> ViewerRun::index() {
  auto snap = snapshot();
  return {snap, &snap->index};  // aliasing: the index lives as long as its snapshot
}

std::shared_ptr<const ViewerRun::Snapshot> ViewerRun::snapshot() {
  std::lock_guard lock(index_mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (!force_refresh_ && now - last_look_ < refresh_interval_) return snap_;
  force_refresh_ = false;
  last_look_ = now;
  const fs::path file = paths_.current_results();
  if (file != snap_->file) {  // the journal gave way to results.jsonl (or appeared)
    builder_ = file.empty() ? nullptr : std::make_unique<IndexBuilder>(file);
    snap_ = std::make_shared<Snapshot>(Snapshot{ResultsIndex(), file});
  }
  if (builder_ && builder_->update()) {
    const auto t0 = std::chrono::steady_clock::now();
    snap_ = std::make_shared<Snapshot>(Snapshot{ResultsIndex(builder_->entries()), file});
    // Rebuilding a large index costs; look at most every 10x that long.
    refresh_interval_ = std::max<std::chrono::steady_clock::duration>(std::chrono::seconds(1),
                                                                        10 * (std::chrono::steady_clock::now() - t0));
  }
  rate_.observe(std::chrono::duration<double>(now.time_since_epoch()).count(), snap_->index.size());
  return snap_;
}

json ViewerRun::result_line(const Snapshot& snap, const IndexEntry& e) {
  std::ifstream in(snap.file, std::ios::binary);
  std::string line(e.length, '\0');
  if (in) {
    in.seekg(static_cast<std::streamoff>(e.offset));
    in.read(line.data(), static_cast<std::streamsize>(line.size()));
  }
  if (!in) return nullptr;
  auto j = json::parse(line, nullptr, false);
  if (j.is_object() && j.contains("key") && j.contains("value")) j = std::move(j["value"]);
  // The file may have been replaced since the index was built: only a line of this neuron counts.
  if (!j.is_object() || j.value("layer", -1) != static_cast<int>(e.layer) || j.value("neuron", -1) != static_cast<int>(e.neuron))
    return nullptr;
  return j;
}

bool ViewerRun::open_records() {
  if (records_) return true;
  if (paths_.records.empty() || !fs::exists(paths_.records)) return false;
  records_ = std::make_unique<RecordsFile>(paths_.records);
  return true;
}

std::optional<std::size_t> ViewerRun::total_neurons() {
  std::lock_guard lock(hdf5_mutex());
  if (!open_records()) return std::nullopt;
  std::size_t total = 0;
  for (int l : records_->meta().layers) total += records_->n_neurons(l);
  return total;
}

bool ViewerRun::record_exists(std::uint32_t layer, std::uint32_t neuron) {
  std::lock_guard lock(hdf5_mutex());
  if (!open_records()) return false;
  return layer <= 1u << 20 && records_->has_layer(static_cast<int>(layer)) &&
         neuron < records_->n_neurons(static_cast<int>(layer));
}

json ViewerRun::summary_json() {
  const auto snap = snapshot();
  const auto* idx = &snap->index;
  const auto& t = idx->totals();
  json layers = json::array();
  for (auto l : idx->layers()) layers.push_back(l);
  json explainer = nullptr, simulator = nullptr;
  if (!idx->entries().empty()) {
    const auto first = result_line(*snap, idx->entries().front());
    if (first.is_object()) explainer = first.value("explainer", ""), simulator = first.value("simulator", "");
  }
  return {{"name", paths_.name},
          {"neurons", idx->size()},
          {"ok", t.ok},
          {"failed", t.failed},
          {"scored", t.scored},
          {"mean_score", num(t.mean_score)},
          {"cost_usd", t.cost_usd},
          {"prompt_tokens", t.prompt_tokens},
          {"completion_tokens", t.completion_tokens},
          {"layers", layers},
          {"explainer", explainer},
          {"simulator", simulator},
          {"records", !paths_.records.empty() && fs::exists(paths_.records)},
          {"finished", fs::exists(paths_.explain_dir / "results.jsonl") || !paths_.results_file.empty()}};
}

json ViewerRun::index_json(const IndexQuery& q) {
  const auto idx = index();
  const auto page = idx->query(q);
  json rows = json::array();
  for (const auto* e : page.rows) rows.push_back(row_json(*e));
  json query = {{"layer", q.layer ? json(*q.layer) : json(nullptr)},
                {"min", q.min_score ? json(*q.min_score) : json(nullptr)},
                {"max", q.max_score ? json(*q.max_score) : json(nullptr)},
                {"q", q.text},
                {"status", status_name(q.status)},
                {"sort", sort_key_name(q.sort)},
                {"order", q.descending ? "desc" : "asc"}};
  return {{"query", query},     {"matched", page.matched}, {"page", page.page}, {"per_page", page.per_page},
          {"pages", page.pages}, {"total", idx->size()},    {"rows", rows}};
}

json ViewerRun::neuron_json(std::uint32_t layer, std::uint32_t neuron) {
  auto snap = snapshot();
  const IndexEntry* e = snap->index.find(layer, neuron);
  json result = e ? result_line(*snap, *e) : json(nullptr);
  if (e && result.is_null()) {
    // The results file changed under the snapshot: look again once.
    {
      std::lock_guard lock(index_mutex_);
      force_refresh_ = true;
    }
    snap = snapshot();
    e = snap->index.find(layer, neuron);
    result = e ? result_line(*snap, *e) : json(nullptr);
  }
  const bool have_record = record_exists(layer, neuron);
  if (!e && !have_record) not_found("neuron {}/{} is not in run '{}'", layer, neuron, paths_.name);
  NeighbourKeys nb;
  if (const auto* p = snap->index.previous(layer, neuron)) nb.previous = {p->layer, p->neuron};
  if (const auto* n = snap->index.next(layer, neuron)) nb.next = {n->layer, n->neuron};
  std::lock_guard lock(hdf5_mutex());
  std::optional<NeuronRecord> record;
  if (have_record) record = records_->neuron(static_cast<int>(layer), neuron);
  const TokenText text = [&](std::uint32_t id) {
    return tokenizer_ && tokenizer_->has_token(id) ? display_token(*tokenizer_, id) : fmt::format("<{}>", id);
  };
  const ExcerptTokens tokens = [&](std::uint64_t id) { return records_->excerpt_tokens(id); };
  auto j = build_neuron_json(layer, neuron, result, record, tokens, text, nb);
  j["run"] = paths_.name;
  j["tokenizer"] = tokenizer_ != nullptr;
  return j;
}

json ViewerRun::sweep_json() {
  const auto idx = index();
  SweepInputs in;
  in.paths = &paths_;
  in.index = idx.get();
  in.total = total_neurons();
  in.observed_rate = rate_.rate();
  in.now_unix = unix_now();
  return build_sweep_json(in);
}

}  // namespace nexplain::viewer
