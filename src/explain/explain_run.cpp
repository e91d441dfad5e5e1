#include "explain/explain_run.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <memory>

#include <spdlog/spdlog.h>

#include "collect/layer_range.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "dist/stop_signal.hpp"
#include "explain/neuron_task.hpp"
#include "io/records_file.hpp"
#include "llm/batch_router.hpp"
#include "llm/journal.hpp"
#include "tokenizer/tokenizer_dir.hpp"

namespace nexplain {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int kTagToCoordinator = 101;
constexpr int kTagToWorker = 102;

struct WorkItem {
  int layer = 0;
  std::uint32_t neuron = 0;
  std::string key() const { return std::to_string(layer) + "/" + std::to_string(neuron); }
};

void send_json(const json& j, int dest, int tag, MPI_Comm comm) {
  const std::string s = j.dump();
  MPI_Send(s.data(), static_cast<int>(s.size()), MPI_CHAR, dest, tag, comm);
}

json recv_json(int source, int tag, MPI_Comm comm, int* from) {
  MPI_Status st;
  MPI_Probe(source, tag, comm, &st);
  int n = 0;
  MPI_Get_count(&st, MPI_CHAR, &n);
  std::string s(static_cast<std::size_t>(n), '\0');
  MPI_Recv(s.data(), n, MPI_CHAR, st.MPI_SOURCE, tag, comm, MPI_STATUS_IGNORE);
  if (from) *from = st.MPI_SOURCE;
  return json::parse(s);
}

// Runs neurons: offline synchronously, or as many LLM tasks in flight as allowed. With
// --write-batch the requests go to a BatchRouter instead of the client: answered from the cache
// or written down, never sent.
class Worker {
 public:
  Worker(const ExplainRunOptions& o, double budget_share)
      : o_(o), records_(o.records), tokenizer_(load_tokenizer(o.tokenizer_dir)) {
    if (o.settings.mode == "llm" && !o.write_batch_dir.empty()) {
      batch_ = std::make_unique<BatchRouter>(o.settings.endpoints, response_cache_dir(o), o.write_batch_dir);
    } else if (o.settings.mode == "llm") {
      ClientOptions co;
      co.cache_dir = response_cache_dir(o);
      client_ = std::make_unique<LlmClient>(o.settings.endpoints, co);
      client_->preflight();
      for (const auto& e : o.settings.endpoints) client_->limiter(e.stage).set_share(budget_share, client_->now());
    }
  }

  std::size_t capacity() const { return client_ || batch_ ? static_cast<std::size_t>(o_.settings.inflight_neurons) : 1; }
  std::size_t inflight() const { return tasks_.size() + offline_.size(); }

  void add(const WorkItem& w) {
    auto splits = load_splits(records_, w.layer, w.neuron, o_.settings.per_split);
    if (!client_ && !batch_) {
      offline_.push_back(std::make_unique<NeuronTask>(std::move(splits), *tokenizer_, o_.settings, o_.settings.endpoints));
      return;
    }
    auto task = std::make_unique<NeuronTask>(std::move(splits), *tokenizer_, o_.settings, o_.settings.endpoints);
    auto reqs = task->start();
    const std::string key = w.key();
    if (!dispatch(reqs)) return;
    if (task->done()) done_.push_back(task->result());
    else tasks_[key] = std::move(task);
  }

  // Drives the work for up to max_wait seconds; returns finished neurons.
  std::vector<NeuronResult> step(double max_wait) {
    std::vector<NeuronResult> out;
    std::swap(out, done_);
    if (!offline_.empty()) {
      out.push_back(offline_.front()->run_offline());
      offline_.pop_front();
      return out;
    }
    if ((!client_ && !batch_) || tasks_.empty()) return out;
    auto deliver = [&](LlmResult&& r) {
      // Tags are "<layer>/<neuron>/...": the first two parts name the task.
      const auto second = r.tag.find('/', r.tag.find('/') + 1);
      auto it = tasks_.find(r.tag.substr(0, second));
      if (it == tasks_.end()) return;  // also: answers for a neuron already left to a batch
      auto reqs = it->second->on_result(r);
      if (!dispatch(reqs)) {
        tasks_.erase(it);
        return;
      }
      if (it->second->done()) {
        out.push_back(it->second->result());
        tasks_.erase(it);
      }
    };
    if (batch_) {
      for (auto& r : batch_->take_ready()) deliver(std::move(r));
    } else {
      client_->poll(max_wait, deliver);
    }
    return out;
  }

  // --write-batch: commits the shards and the manifest (nullptr without a batch).
  BatchRouter* finish_batch() {
    if (batch_) batch_->finish();
    return batch_.get();
  }
  std::uint64_t batch_pending() const { return batch_pending_; }

  // 429s seen since the last call (the coordinator pauses every worker on them).
  std::uint64_t new_429s() {
    if (!client_) return 0;
    const auto n = client_->stats().http_429;
    const auto d = n - last_429_;
    last_429_ = n;
    return d;
  }
  void pause(double seconds) {
    if (!client_) return;
    for (const auto& e : o_.settings.endpoints) client_->limiter(e.stage).pause_until(client_->now() + seconds);
  }

 private:
  const ExplainRunOptions& o_;
  RecordsFile records_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<LlmClient> client_;
  std::map<std::string, std::unique_ptr<NeuronTask>> tasks_;
  std::deque<std::unique_ptr<NeuronTask>> offline_;
  std::vector<NeuronResult> done_;
  std::uint64_t last_429_ = 0;
  std::unique_ptr<BatchRouter> batch_;
  std::uint64_t batch_pending_ = 0;

  // Hands a task's requests to the client, or in batch mode to the router. False when any of
  // them went into a batch file: the neuron cannot finish in this run, so the caller drops it
  // (unjournaled; a later round, with the batch's answers in the cache, does it).
  bool dispatch(std::vector<LlmRequest>& reqs) {
    if (!batch_) {
      for (auto& r : reqs) client_->submit(std::move(r));
      return true;
    }
    bool answered = true;
    for (const auto& r : reqs) answered = batch_->submit(r) && answered;  // every one is written, not just the first
    if (!answered) ++batch_pending_;
    return answered;
  }
};

constexpr double kPauseOn429 = 2.0;  // seconds every worker waits after any worker saw a 429

std::vector<WorkItem> work_list(const ExplainRunOptions& o) {
  RecordsFile rf(o.records);
  int max_layer = 0;
  for (int l : rf.meta().layers) max_layer = std::max(max_layer, l);
  std::vector<WorkItem> items;
  for (int l : parse_layer_range(o.layers, max_layer + 1)) {
    if (!rf.has_layer(l)) fail("{}: layer {} is not in the records file (it has {})", o.records.string(), l, rf.meta().layers.size());
    std::uint32_t n = rf.n_neurons(l);
    if (o.neurons_per_layer) n = std::min(n, o.neurons_per_layer);
    for (std::uint32_t i = 0; i < n; ++i) items.push_back({l, i});
  }
  return items;
}

ExplainSummary summarize(const std::vector<NeuronResult>& results) {
  ExplainSummary s;
  s.score_histogram.assign(10, 0);
  double sum = 0;
  std::uint64_t defined = 0;
  for (const auto& r : results) {
    ++s.neurons;
    s.cost_usd += r.explain_usage.cost_usd + r.simulate_usage.cost_usd;
    s.prompt_tokens += r.explain_usage.prompt_tokens + r.simulate_usage.prompt_tokens;
    s.completion_tokens += r.explain_usage.completion_tokens + r.simulate_usage.completion_tokens;
    if (!r.ok) {
      ++s.failed;
      continue;
    }
    ++s.ok;
    if (!std::isfinite(r.scores.all)) {
      ++s.nan_scores;
      continue;
    }
    sum += r.scores.all;
    ++defined;
    const auto bin = static_cast<std::size_t>(std::clamp((r.scores.all + 1.0) * 5.0, 0.0, 9.0));
    ++s.score_histogram[bin];
    s.best.emplace_back(r.scores.all, r.key() + ": " + r.explanation);
  }
  s.mean_score = defined ? sum / static_cast<double>(defined) : NAN;
  std::stable_sort(s.best.begin(), s.best.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  if (s.best.size() > 5) s.best.resize(5);
  return s;
}

}  // namespace

std::string format_summary(const ExplainSummary& s) {
  std::string out = fmt::format("explained {} neurons: {} ok, {} failed, {} with undefined score (constant activations)\n",
                                s.neurons, s.ok, s.failed, s.nan_scores);
  out += fmt::format("mean score (correlation, top+random): {:.3f}\nscore distribution:\n", s.mean_score);
  for (std::size_t b = 0; b < s.score_histogram.size(); ++b)
    out += fmt::format("  [{:+.1f}, {:+.1f}) {:>6} {}\n", -1.0 + 0.2 * b, -0.8 + 0.2 * b, s.score_histogram[b],
                       std::string(std::min<std::uint64_t>(s.score_histogram[b], 60), '#'));
  out += "best explained neurons:\n";
  for (const auto& [score, text] : s.best) out += fmt::format("  {:.3f}  {}\n", score, text);
  out += fmt::format("tokens: {} prompt + {} completion; cost ${:.4f}; wall time {:.1f} s\n", s.prompt_tokens,
                     s.completion_tokens, s.cost_usd, s.seconds);
  return out;
}

fs::path response_cache_dir(const ExplainRunOptions& o) {
  return o.settings.cache_dir.empty() ? o.out_dir / "cache" : o.settings.cache_dir;
}

ExplainSummary run_explain(const ExplainRunOptions& o, MPI_Comm comm) {
  const auto t0 = std::chrono::steady_clock::now();
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  o.settings.validate();
  if (!o.write_batch_dir.empty()) {
    // Every rank sees the same options, so every rank stops here alike.
    if (o.settings.mode != "llm")
      fail("--write-batch needs LLM endpoints (a --config with [explainer] and [simulator]); the offline baseline asks no one");
    if (size > 1)
      fail("--write-batch runs as one process (it sends nothing, so a request pool has nothing to do); run it without mpirun");
  }
  const int n_workers = std::max(1, size - 1);
  // Every rank: the signal goes to all tasks; only the coordinator's flag decides, the workers
  // must merely survive it.
  install_stop_handlers();

  if (rank != 0) {
    // ---------------------------------------------------------------- worker rank
    std::unique_ptr<Worker> worker;
    json hello = {{"results", json::array()}, {"want", 0}};
    try {
      worker = std::make_unique<Worker>(o, 1.0 / n_workers);
      hello["want"] = worker->capacity();
    } catch (const Error& e) {
      hello["error"] = e.what();
    }
    send_json(hello, 0, kTagToCoordinator, comm);
    bool more_work = true;
    for (;;) {
      const json reply = recv_json(0, kTagToWorker, comm, nullptr);
      if (reply.value("stop", false)) break;
      if (reply.contains("pause_s")) worker->pause(reply["pause_s"].get<double>());
      for (const auto& w : reply["neurons"]) worker->add({w[0].get<int>(), w[1].get<std::uint32_t>()});
      if (reply["neurons"].empty()) more_work = false;
      // Work until there is something to report, or room for more work that may exist.
      json msg = {{"results", json::array()}};
      for (;;) {
        for (auto& r : worker->step(0.2)) msg["results"].push_back(r.to_json());
        const bool room = more_work && worker->inflight() < worker->capacity();
        if (!msg["results"].empty() || room || worker->inflight() == 0) break;
      }
      msg["want"] = more_work ? worker->capacity() - std::min(worker->capacity(), worker->inflight()) : 0;
      msg["inflight"] = worker->inflight();
      msg["new_429"] = worker->new_429s();
      send_json(msg, 0, kTagToCoordinator, comm);
    }
    return {};
  }

  // ------------------------------------------------------------------ coordinator (rank 0)
  fs::create_directories(o.out_dir);
  const auto items = work_list(o);
  Journal journal(o.out_dir / "journal.jsonl");
  std::deque<WorkItem> pending;
  std::uint64_t resumed = 0;
  for (const auto& w : items) {
    const bool have = journal.contains(w.key());
    const bool failed = have && journal.records().at(w.key()).value("status", "") != "ok";
    if (have && !(failed && o.retry_failed)) ++resumed;
    else pending.push_back(w);
  }
  if (journal.truncated_bytes()) spdlog::warn("{}: dropped a torn last line ({} bytes) left by a crash", journal.path().string(), journal.truncated_bytes());
  spdlog::info("explain: {} neurons, {} already in the journal, {} to do; {} worker(s); explainer {}, simulator {}", items.size(),
               resumed, pending.size(), size == 1 ? 1 : n_workers, o.settings.explainer_name(), o.settings.simulator_name());
  Progress prog("explain", items.size(), "neurons");
  prog.set_already_done(resumed);
  std::uint64_t done_now = 0;
  auto record = [&](const json& r) {
    journal.append(std::to_string(r["layer"].get<int>()) + "/" + std::to_string(r["neuron"].get<int>()), r);
    prog.update(++done_now);
  };

  std::uint64_t batch_pending = 0, batch_requests = 0, batch_shards = 0;
  bool stopped = false;
  // On a stop signal: start nothing new; what is in flight still finishes and is journaled.
  auto stop_now = [&] {
    if (!stop_requested() || pending.empty()) return;
    spdlog::warn("explain: stop signal: {} neurons not started; finishing those in flight, then exit 75", pending.size());
    pending.clear();
    stopped = true;
  };
  if (size == 1) {
    Worker worker(o, 1.0);
    while (!pending.empty() || worker.inflight() > 0) {
      stop_now();
      while (!pending.empty() && worker.inflight() < worker.capacity()) {
        worker.add(pending.front());
        pending.pop_front();
      }
      for (auto& r : worker.step(0.2)) record(r.to_json());
    }
    if (BatchRouter* b = worker.finish_batch()) {
      batch_pending = worker.batch_pending();
      batch_requests = b->written();
      batch_shards = b->finish().size();
      spdlog::info("write-batch: {} requests answered from the cache, {} written ({} distinct) to {}; {} neurons wait on them",
                   b->answered(), b->unanswered(), b->written(), b->dir().string(), batch_pending);
    }
  } else {
    int active = n_workers;
    std::string worker_error;
    std::map<int, std::uint64_t> inflight;
    bool pause_pending = false;
    std::map<int, bool> told_pause;
    while (active > 0) {
      int from = 0;
      json msg = recv_json(MPI_ANY_SOURCE, kTagToCoordinator, comm, &from);
      if (msg.contains("error") && worker_error.empty()) worker_error = msg["error"].get<std::string>();
      for (const auto& r : msg["results"]) record(r);
      inflight[from] = msg.value("inflight", 0ull);
      if (msg.value("new_429", 0ull) > 0) {
        pause_pending = true;
        told_pause.clear();
      }
      json reply = {{"neurons", json::array()}};
      stop_now();
      if (!worker_error.empty()) {
        reply["stop"] = true;
      } else {
        const auto want = msg.value("want", 0ull);
        for (std::uint64_t i = 0; i < want && !pending.empty(); ++i) {
          reply["neurons"].push_back({pending.front().layer, pending.front().neuron});
          pending.pop_front();
        }
        if (pending.empty() && reply["neurons"].empty() && inflight[from] == 0) reply["stop"] = true;
      }
      if (pause_pending && !told_pause[from]) {
        reply["pause_s"] = kPauseOn429;
        told_pause[from] = true;
      }
      if (reply.value("stop", false)) --active;
      send_json(reply, from, kTagToWorker, comm);
    }
    if (!worker_error.empty()) fail("explain worker: {}", worker_error);
  }
  prog.finish();
  if (stopped) {
    ExplainSummary s;
    s.resumed = resumed;
    s.checkpointed = true;
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
  }

  // Consolidate: one line per requested neuron, in (layer, neuron) order, from the journal.
  std::vector<NeuronResult> results;
  for (const auto& w : items) {
    auto it = journal.records().find(w.key());
    if (it != journal.records().end()) results.push_back(NeuronResult::from_json(it->second));
    else if (batch_pending == 0) fail("internal: neuron {} has no journal record", w.key());
  }
  if (batch_pending > 0) {
    // Not finished: results.jsonl and summary.json are written by the round that completes
    // every neuron. The summary covers the neurons journaled so far.
    ExplainSummary s = summarize(results);
    s.resumed = resumed;
    s.batch_pending = batch_pending;
    s.batch_requests = batch_requests;
    s.batch_shards = batch_shards;
    s.batch_manifest = (o.write_batch_dir / "manifest.json").string();
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
  }
  std::string lines;
  for (const auto& r : results) lines += r.to_json().dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  write_file_atomic(o.out_dir / "results.jsonl", lines);
  ExplainSummary s = summarize(results);
  s.resumed = resumed;
  if (!o.write_batch_dir.empty()) s.batch_manifest = (o.write_batch_dir / "manifest.json").string();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json sj = {{"neurons", s.neurons}, {"ok", s.ok}, {"failed", s.failed}, {"nan_scores", s.nan_scores},
             {"mean_score", std::isfinite(s.mean_score) ? json(s.mean_score) : json(nullptr)},
             {"cost_usd", s.cost_usd}, {"prompt_tokens", s.prompt_tokens}, {"completion_tokens", s.completion_tokens},
             {"explainer", o.settings.explainer_name()}, {"simulator", o.settings.simulator_name()},
             {"records", fs::absolute(o.records).string()}, {"command_line", o.command_line}};
  write_file_atomic(o.out_dir / "summary.json", sj.dump(2) + "\n");
  return s;
}

}  // namespace nexplain
