#include "dist/collect_mpi.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "capture/hash.hpp"
#include "capture/histogram_state.hpp"
#include "capture/moments.hpp"
#include "collect/collect_common.hpp"
#include "collect/node_local_rank.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/sha256.hpp"
#include "dist/comm_clock.hpp"
#include "dist/rank_grid.hpp"
#include "dist/stage_link.hpp"
#include "dist/stage_plan.hpp"
#include "dist/state_wire.hpp"
#include "dist/stop_signal.hpp"
#include "io/records_file.hpp"
#include "model/thread_pool.hpp"
#ifdef NEXPLAIN_HAVE_CUDA
#include "device_info.hpp"
#endif

namespace nexplain {

namespace fs = std::filesystem;
using namespace collect_detail;

namespace {

constexpr int kTagState = 201;      // stage members -> their stage root (stage communicator)
constexpr int kTagWriteTurn = 202;  // the records file's write turn, stage root to stage root (grid communicator)
constexpr const char* kCheckpointKeyAttr = "checkpoint_key";
constexpr const char* kCheckpointCursorAttr = "checkpoint_cursor";

// What a checkpoint must match to be resumed: every input that changes the records. A run with
// other parameters, layers, corpus, model or backend refuses the checkpoint instead of mixing results.
// The grid is not in it: any rank count and any number of stages resume the same checkpoint.
std::string checkpoint_key(const CollectOptions& o, const CollectSetup& su, const std::string& backend) {
  nlohmann::json j;
  j["T"] = su.params.T;
  j["K"] = su.params.K;
  j["R"] = su.params.R;
  j["Q"] = su.params.Q;
  j["seed"] = su.params.seed;
  j["quantiles"] = su.params.quantile_fractions;
  j["layers"] = su.layers;
  j["n_excerpts"] = su.N;
  j["prepass_rate"] = su.rate;
  j["corpus_sha256"] = sha256_file(o.sequences);
  j["model"] = model_provenance(o.model_dir, su.cfg)["files"];
  // The backend and its precision ("cpu:fp32", "cuda:bf16"): their forwards round differently,
  // so a state continued on another one would mix two sets of numbers.
  j["backend"] = backend;
  return j.dump();
}

// Environment test hooks (tests/mpi): make the last rank raise a signal at a given cursor, so
// the tests interrupt at a deterministic point instead of racing a timer.
std::uint64_t env_u64(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : 0;
}

// The thread count collect uses for --threads (0 = all cores), as the CPU forward does.
int backend_threads(int threads) {
  return threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// One stage's share of the plan: its blocks and the selected layers among them.
struct StageWork {
  StageRange range;
  std::vector<int> layers;  // selected layers in the range, ascending (may be none)
};

StageWork stage_work(const StageRange& r, const std::vector<int>& selected) {
  StageWork w{r, {}};
  for (int l : selected)
    if (l >= r.block_begin && l < r.block_end) w.layers.push_back(l);
  return w;
}

// Collective: true when every rank of `comm` sees a usable CUDA device (its node-local one).
bool all_ranks_have_cuda(MPI_Comm comm) {
  int have = 0;
#ifdef NEXPLAIN_HAVE_CUDA
  have = cuda::query_device(node_local_rank(comm).rank).available ? 1 : 0;
#endif
  MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_INT, MPI_MIN, comm);
  return have != 0;
}

std::string layer_list(const std::vector<int>& layers) {
  if (layers.empty()) return "no layers";
  if (layers.back() - layers.front() + 1 == static_cast<int>(layers.size()))
    return layers.size() == 1 ? fmt::format("layer {}", layers.front())
                              : fmt::format("layers {}-{}", layers.front(), layers.back());
  return fmt::format("layers {}", fmt::join(layers, ","));
}

// Merges every rank's states within each stage on the stage root: samples and histograms merge
// exactly, the moments become the canonical block-ordered total. Returns the stage's layers on
// its stage root and nothing elsewhere; no rank ever receives another stage's layers (the stage
// roots write them to the file in turn: write_records_in_turn).
std::vector<CaptureState> merge_on_stage_roots(const RankGrid& g, std::vector<CaptureState> mine, const CollectSetup& su,
                                               const std::vector<std::vector<Moments>>& total, CommClock& clock) {
  const auto n_inner = static_cast<std::uint32_t>(su.cfg.intermediate);
  if (!g.stage_root()) {
    clock([&] {
      for (const auto& s : mine) send_bytes(pack_state(s), 0, kTagState, g.stage_comm());
    });
    return {};
  }
  for (int src = 1; src < g.groups(); ++src) {
    for (auto& s : mine) {
      std::vector<std::uint8_t> bytes;
      clock([&] { bytes = recv_bytes(src, kTagState, g.stage_comm()); });
      s.merge(unpack_state(s.params(), n_inner, s.arrays().boundaries, bytes));
    }
  }
  for (std::size_t l = 0; l < mine.size(); ++l) {
    mine[l].take_moments();  // rank states hold no moments between blocks; the total is canonical
    mine[l].fold_moments(total[l]);
  }
  return mine;
}

// The turn to write the records file, passed from stage root to stage root: the temporary
// file, the excerpts the layers written so far refer to (ascending, unique), and the first
// error (after which nobody writes any more).
struct WriteTurn {
  std::string path;
  std::string error;
  std::vector<std::uint64_t> ids;
};

std::vector<std::uint8_t> pack_turn(const WriteTurn& t) {
  std::vector<std::uint8_t> b;
  auto put = [&](const void* p, std::size_t n) {
    const auto* c = static_cast<const std::uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  };
  for (const std::string* str : {&t.path, &t.error}) {
    const std::uint64_t n = str->size();
    put(&n, sizeof n);
    put(str->data(), n);
  }
  const std::uint64_t n = t.ids.size();
  put(&n, sizeof n);
  put(t.ids.data(), n * sizeof(std::uint64_t));
  return b;
}

WriteTurn unpack_turn(const std::vector<std::uint8_t>& b) {
  std::size_t at = 0;
  auto get = [&](void* p, std::size_t n) {
    if (at + n > b.size()) fail("collect: internal: a write turn message of {} bytes is truncated", b.size());
    std::copy(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n),
              static_cast<std::uint8_t*>(p));
    at += n;
  };
  WriteTurn t;
  for (std::string* str : {&t.path, &t.error}) {
    std::uint64_t n = 0;
    get(&n, sizeof n);
    if (n > b.size() - at) fail("collect: internal: a write turn message of {} bytes is truncated", b.size());
    str->resize(n);
    get(str->data(), n);
  }
  std::uint64_t n = 0;
  get(&n, sizeof n);
  if (n > (b.size() - at) / sizeof(std::uint64_t))
    fail("collect: internal: a write turn message of {} bytes is truncated", b.size());
  t.ids.resize(n);
  get(t.ids.data(), n * sizeof(std::uint64_t));
  return t;
}

// The file the stage roots write (the records or the checkpoint) and what grid rank 0 does
// besides its layers: `extra` attributes (the checkpoint's) before the commit, `after_commit`
// after it (the finished run removes its checkpoint; must not throw: the file is in place).
struct RecordsTarget {
  fs::path path;
  std::function<void(h5::File&)> extra;
  std::function<void()> after_commit;
};

// Writes one records file by the stage roots in turn, in stage order, by the steps of
// write_collect_records (records_file.hpp), so the file is byte for byte the one a single
// process writes: grid rank 0 creates the temporary file with the root attributes and appends
// its stage's layers; the turn goes to stage root 1, which opens the file and appends its
// layers, and so on; from the last stage root it returns to rank 0, which appends the tokens of
// every referenced excerpt, adds `extra` and commits. Serial HDF5 allows one writer at a time,
// and each stage root holds only its own layers: no rank holds all of them.
//
// Collective over the grid. An error on any writer travels with the turn (the later stage roots
// skip their writes) back to rank 0, which removes the temporary file and then broadcasts the
// outcome: every rank throws the same Error, none is left waiting in a collective, nothing
// appears at the target and a previous file there (the last checkpoint) is left as it was.
void write_records_in_turn(const RankGrid& g, const RecordsTarget& target, const CollectOptions& o, const CollectSetup& su,
                           std::uint64_t pre_n, const std::string& backend, const std::vector<int>& my_layers,
                           const std::vector<CaptureState>& mine, CommClock& clock) {
  const int P = g.stages();
  WriteTurn turn;
  // Test hook (tests/mpi): the stage root of this stage fails after appending its first layer.
  const char* fail_stage = std::getenv("NEXPLAIN_TEST_FAIL_WRITE_STAGE");
  const bool hook_fails = fail_stage && std::to_string(g.stage()) == fail_stage;
  auto append_mine = [&] {
    std::vector<std::uint64_t> ids;
    for (const auto& s : mine) {
      append_records_layer(turn.path, s);
      if (hook_fails)
        fail("{}: NEXPLAIN_TEST_FAIL_WRITE_STAGE={}: failing after layer {} (test hook)", turn.path, fail_stage,
             s.params().layer);
      collect_referenced_ids(s.arrays(), ids);
    }
    ids.insert(ids.end(), turn.ids.begin(), turn.ids.end());
    sort_unique_ids(ids);
    turn.ids = std::move(ids);
    spdlog::debug("collect: {}: wrote {} to {}", g.who(), layer_list(my_layers), turn.path);
  };
  auto failed = [&](const std::string& what, const std::exception& e) {
    return fmt::format("collect: {}: writing {} of {}: {}", g.who(), what, target.path.string(), e.what());
  };
  if (g.rank() == 0) {
    std::unique_ptr<AtomicOutput> out;
    try {
      out = std::make_unique<AtomicOutput>(target.path);
      turn.path = out->temp_path().string();
      create_records_file(out->temp_path(), collect_records_meta(o, su, pre_n, backend));
      append_mine();
    } catch (const std::exception& e) {
      turn.error = failed("the root attributes and " + layer_list(my_layers), e);
    }
    if (P > 1) {
      clock([&] {
        send_bytes(pack_turn(turn), 1, kTagWriteTurn, g.comm());
        turn = unpack_turn(recv_bytes(P - 1, kTagWriteTurn, g.comm()));
      });
    }
    if (turn.error.empty()) {
      try {
        append_collect_excerpts(turn.path, su, turn.ids);
        finish_collect_records(turn.path, target.extra);
        out->commit();
        spdlog::debug("collect: {}: wrote the tokens of {} excerpts and committed {}", g.who(), turn.ids.size(),
                      target.path.string());
        if (target.after_commit) target.after_commit();
      } catch (const std::exception& e) {
        turn.error = failed("the excerpts' tokens", e);
      }
    }
    // Before the others learn of it: an error makes every rank end the job, rank 0 included.
    out.reset();
  } else if (g.stage_root()) {
    clock([&] { turn = unpack_turn(recv_bytes(g.stage() - 1, kTagWriteTurn, g.comm())); });
    if (turn.error.empty()) {
      try {
        append_mine();
      } catch (const std::exception& e) {
        turn.error = failed(layer_list(my_layers), e);
      }
    }
    clock([&] { send_bytes(pack_turn(turn), (g.stage() + 1) % P, kTagWriteTurn, g.comm()); });
  }
  std::uint64_t n = turn.error.size();
  clock([&] {
    MPI_Bcast(&n, 1, MPI_UINT64_T, 0, g.comm());
    turn.error.resize(n);
    MPI_Bcast(turn.error.data(), static_cast<int>(n), MPI_CHAR, 0, g.comm());
  });
  if (!turn.error.empty()) fail("{}; nothing was written to {}", turn.error, target.path.string());
}

}  // namespace

DistCollectSummary run_collect_mpi(const CollectOptions& o, const DistCollectOptions& d, MPI_Comm comm) {
  const auto t0 = std::chrono::steady_clock::now();
  if (d.checkpoint_every > 0 && d.checkpoint.empty()) fail("--checkpoint-every needs --checkpoint PATH");
  // A finished run removes its checkpoint: the same path for both would delete the records.
  if (!d.checkpoint.empty() && fs::weakly_canonical(d.checkpoint) == fs::weakly_canonical(o.out))
    fail("--checkpoint {}: the same file as --out; give the checkpoint its own path (e.g. {}.ckpt.h5)",
         d.checkpoint.string(), o.out.stem().string());
  const RankGrid grid(comm, d.pipeline_stages);
  const int P = grid.stages(), D = grid.groups();
  install_stop_handlers();
  CommClock clock;

  // Fails now, before any compute, when the output directory is missing or unwritable; the file
  // itself is written at the end (write_records_in_turn).
  if (grid.rank() == 0) AtomicOutput{o.out};
  CollectSetup su;
  prepare_collect(o, su);
  const auto T = su.T;
  const std::uint64_t N = su.N;
  const auto n_inner = static_cast<std::uint32_t>(su.cfg.intermediate);
  const auto C = static_cast<std::size_t>(su.cfg.hidden);

  // ---- the stage plan (same on every rank) and this rank's blocks and layers
  const auto plan = split_stages(block_costs(su.cfg, T, su.layers), embedding_cost(su.cfg), P);
  const StageWork me = stage_work(plan[static_cast<std::size_t>(grid.stage())], su.layers);
  const std::size_t Ls = me.layers.size();
  // Every rank must run the same backend (the CPU and the GPU forwards round differently, and
  // a stage's neighbours exchange its hidden states): --device auto becomes cuda only when every
  // rank has a device, agreed on before any work.
  CollectOptions bo = o;
  if (bo.device == "auto") bo.device = all_ranks_have_cuda(grid.comm()) ? "cuda" : "cpu";
  // Each stage loads only its blocks, and only stage 0 the embeddings (make_backend). The CUDA
  // backend takes device node-local rank % devices; the rank comes from an MPI_Comm_split_type
  // over these ranks (collective: every rank calls make_backend here, on the same path).
  auto backend = make_backend(bo, su.cfg, me.layers, su.params, me.range.block_begin, me.range.block_end,
                              grid.comm());
  const std::string key = d.checkpoint.empty() ? std::string() : checkpoint_key(o, su, backend->name());
  if (grid.rank() == 0) {
    spdlog::info("collect: {} model, {} excerpts x {} tokens on {} ranks = {} data groups x {} pipeline stages, {}, "
                 "backend {}, moment block {} excerpts",
                 su.cfg.model_type, N, T, grid.size(), D, P, layer_list(su.layers), backend->name(), kMomentBlock);
    for (int s = 0; s < P; ++s) {
      const auto& r = plan[static_cast<std::size_t>(s)];
      spdlog::info("collect: stage {}: {}, captures {} (estimated {:.3g} FLOP per token)", s, describe(r),
                   layer_list(stage_work(r, su.layers).layers), r.cost);
    }
    if (P > 1)
      spdlog::info("collect: hidden states pass between stages in host buffers, {} excerpts per micro-batch ({})",
                   o.batch, StageLink::mpi_cuda_aware() ? "the MPI is CUDA-aware" : "the MPI is not CUDA-aware");
  }
  spdlog::info("collect: {}: runs {}, captures {}, reduces moment blocks {}, {} + {}, ...", grid.who(),
                describe(me.range), layer_list(me.layers), grid.group(), grid.group(), D);

  // ---- resume: rank 0 checks the checkpoint; each stage root reads its own layers from it
  std::uint64_t cursor = 0, pre_n = 0;
  int resumed = 0;
  if (grid.rank() == 0 && !d.checkpoint.empty() && fs::exists(d.checkpoint)) {
    auto f = h5::File::open_read(d.checkpoint);
    if (!f.has_attr(kCheckpointKeyAttr)) fail("--checkpoint {}: not a collect checkpoint", d.checkpoint.string());
    if (f.attr_string(kCheckpointKeyAttr) != key)
      fail("--checkpoint {}: written by a collect with other parameters, layers, corpus, model or backend; remove it or "
           "rerun with the original options",
           d.checkpoint.string());
    cursor = static_cast<std::uint64_t>(f.attr_int(kCheckpointCursorAttr));
    pre_n = RecordsFile(d.checkpoint).meta().prepass_excerpts;
    resumed = 1;
  }
  MPI_Bcast(&resumed, 1, MPI_INT, 0, grid.comm());
  MPI_Bcast(&cursor, 1, MPI_UINT64_T, 0, grid.comm());
  MPI_Bcast(&pre_n, 1, MPI_UINT64_T, 0, grid.comm());

  // ---- micro-batches through this rank's blocks; with P > 1 the hidden states arrive from the
  // previous stage and leave for the next one through the link
  std::unique_ptr<StageLink> link;
  if (P > 1)
    link = std::make_unique<StageLink>(grid.group_comm(), grid.stage(), P,
                                       static_cast<std::size_t>(o.batch) * T * C, clock);
  std::size_t mb = 0;             // micro-batches through the link so far
  std::uint64_t main_tokens = 0;  // tokens run through this rank's blocks in the main pass
  std::vector<std::uint32_t> tokens;
  std::vector<std::uint64_t> ids;
  // Runs excerpts id_at(0..n-1) (ascending) in micro-batches of --batch; main: reduce into the
  // states (else the pre-pass histograms).
  auto run_batches = [&](std::uint64_t n, const std::function<std::uint64_t(std::uint64_t)>& id_at, bool main) {
    const auto B = static_cast<std::uint64_t>(o.batch);
    const std::uint64_t nb = (n + B - 1) / B;
    auto floats = [&](std::uint64_t k) { return static_cast<std::size_t>(std::min(B, n - k * B)) * T * C; };
    if (link && nb > 0) link->prepare(mb, floats(0));
    for (std::uint64_t k = 0; k < nb; ++k) {
      const std::uint64_t b = std::min(B, n - k * B);
      if (link && k + 1 < nb) link->prepare(mb + 1, floats(k + 1));
      float* hidden = link ? link->acquire(mb) : nullptr;
      ids.resize(b);
      for (std::uint64_t j = 0; j < b; ++j) ids[j] = id_at(k * B + j);
      if (grid.first_stage()) {
        tokens.resize(b * T);
        if (ids[b - 1] - ids[0] == b - 1) {  // consecutive (the main pass): one read
          su.seqs.read(ids[0], b, tokens.data());
          check_tokens(tokens, ids[0], T, su.cfg.vocab_size, o.sequences);
        } else {
          for (std::uint64_t j = 0; j < b; ++j) {
            su.seqs.read(ids[j], 1, tokens.data() + j * T);
            check_tokens(std::span<const std::uint32_t>(tokens.data() + j * T, T), ids[j], T, su.cfg.vocab_size,
                         o.sequences);
          }
        }
      }
      const std::uint64_t* idp = main ? ids.data() : nullptr;
      if (!link) {
        if (main) backend->main(tokens.data(), idp, static_cast<int>(b));
        else backend->prepass(tokens.data(), static_cast<int>(b));
      } else {
        backend->stage(grid.first_stage() ? tokens.data() : nullptr, hidden, idp, static_cast<int>(b));
        link->send(mb, static_cast<std::size_t>(b) * T * C);
      }
      ++mb;
      if (main) main_tokens += b * T;
    }
  };

  std::vector<std::vector<double>> bounds(Ls);
  std::vector<CaptureState> ckpt_states;
  if (resumed) {
    if (grid.stage_root()) {
      RecordsFile rf(d.checkpoint);
      for (std::size_t l = 0; l < Ls; ++l) {
        ckpt_states.push_back(rf.layer_state(me.layers[l]));
        bounds[l] = ckpt_states.back().arrays().boundaries;
      }
    }
    for (auto& b : bounds) {
      std::uint64_t n = b.size();
      MPI_Bcast(&n, 1, MPI_UINT64_T, 0, grid.stage_comm());
      b.resize(n);
      MPI_Bcast(b.data(), static_cast<int>(n), MPI_DOUBLE, 0, grid.stage_comm());
    }
    if (grid.rank() == 0)
      spdlog::info("collect: {}: resuming from checkpoint {} at excerpt {} of {}", grid.who(), d.checkpoint.string(),
                   cursor, N);
  } else if (su.rate > 0 && !su.params.quantile_fractions.empty()) {
    // ---- pre-pass: the hashed subset dealt round-robin over the data groups; histograms are
    // integers, so the per-stage sums (and the boundaries) equal one process's bit for bit
    std::vector<std::uint64_t> subset;
    for (std::uint64_t id = 0; id < N; ++id)
      if (excerpt_in_prepass(su.params.seed, id, su.rate)) subset.push_back(id);
    pre_n = subset.size();
    const auto g = static_cast<std::uint64_t>(grid.group());
    const std::uint64_t mine = subset.size() > g ? (subset.size() - g + static_cast<std::uint64_t>(D) - 1) / static_cast<std::uint64_t>(D) : 0;
    run_batches(mine, [&](std::uint64_t i) { return subset[g + i * static_cast<std::uint64_t>(D)]; }, false);
    auto hists = backend->histograms();
    for (std::size_t l = 0; l < Ls; ++l) {
      std::vector<std::uint64_t> counts = hists[l].counts();
      clock([&] {
        MPI_Allreduce(MPI_IN_PLACE, counts.data(), static_cast<int>(counts.size()), MPI_UINT64_T, MPI_SUM,
                      grid.stage_comm());
      });
      bounds[l] = HistogramState(n_inner, std::move(counts)).boundaries(su.params.quantile_fractions);
    }
    if (grid.rank() == 0) spdlog::info("collect: {}: pre-pass over {} excerpts done", grid.who(), pre_n);
  }
  if (cursor % kMomentBlock != 0 && cursor != N)
    fail("--checkpoint {}: cursor {} is not at a moment block boundary", d.checkpoint.string(), cursor);

  // ---- states: each stage root continues the checkpointed state of its layers; the running
  // moment totals live on the stage roots only and are folded block by block in block order
  std::vector<std::vector<Moments>> total(Ls, std::vector<Moments>(n_inner));
  std::vector<CaptureState> states;
  for (std::size_t l = 0; l < Ls; ++l) {
    if (!ckpt_states.empty()) {
      total[l] = ckpt_states[l].take_moments();
      states.push_back(std::move(ckpt_states[l]));
      continue;
    }
    CaptureParams lp = su.params;
    lp.layer = static_cast<std::uint32_t>(me.layers[l]);
    states.emplace_back(lp, n_inner, bounds[l]);
  }
  backend->start_main(std::move(states));

  // ---- main pass in rounds: round k gives moment block first + k*D + g to data group g
  const std::uint64_t n_blocks = (N + kMomentBlock - 1) / kMomentBlock;
  const std::uint64_t resumed_from = cursor;
  const std::uint64_t stop_at = env_u64("NEXPLAIN_TEST_STOP_AT"), kill_at = env_u64("NEXPLAIN_TEST_KILL_AT"),
                      hold_at = env_u64("NEXPLAIN_TEST_HOLD_AT");
  bool held = false;
  std::uint64_t last_ckpt = cursor;
  const auto tm = std::chrono::steady_clock::now();
  const double comm_before_main = clock.seconds();
  std::unique_ptr<Progress> prog;
  if (grid.rank() == 0) {
    prog = std::make_unique<Progress>("collect", N * T, "tokens");
    prog->set_already_done(cursor * T);
  }
  const std::size_t mom_bytes = Ls * n_inner * sizeof(Moments);
  std::unique_ptr<ThreadPool> fold_pool;
  if (grid.stage_root() && Ls > 0) fold_pool = std::make_unique<ThreadPool>(backend_threads(o.threads));
  std::vector<Moments> my_moms(Ls * n_inner), all_moms(grid.stage_root() ? static_cast<std::size_t>(D) * Ls * n_inner : 0);
  // The stop flag (a signal on any rank) is agreed on with a non-blocking allreduce started at
  // one round boundary and completed at the next, so no boundary makes the pipeline drain; the
  // checkpoint is written at the boundary where the agreement completes.
  struct StopVote {
    int out = 0, in = 0;
    MPI_Request req = MPI_REQUEST_NULL;
  };
  // On the heap, and leaked if an error unwinds while the allreduce is in flight (the job is
  // then aborted, and MPI may still write the result).
  auto* vote = new StopVote;
  struct VoteGuard {
    StopVote* v;
    ~VoteGuard() {
      if (v->req == MPI_REQUEST_NULL) delete v;
    }
  } vote_guard{vote};
  bool checkpointed = false;
  for (std::uint64_t first = cursor / kMomentBlock; first < n_blocks; first += static_cast<std::uint64_t>(D)) {
    const std::uint64_t block = first + static_cast<std::uint64_t>(grid.group());
    std::fill(my_moms.begin(), my_moms.end(), Moments{});
    if (block < n_blocks) {
      const std::uint64_t b0 = block * kMomentBlock, b_end = std::min(N, (block + 1) * kMomentBlock);
      run_batches(b_end - b0, [&](std::uint64_t i) { return b0 + i; }, true);
      const auto blk = backend->take_moments();
      for (std::size_t l = 0; l < Ls; ++l)
        std::copy(blk[l].begin(), blk[l].end(), my_moms.begin() + static_cast<std::ptrdiff_t>(l * n_inner));
    }
    if (Ls > 0) {
      clock([&] {
        MPI_Gather(my_moms.data(), static_cast<int>(mom_bytes), MPI_BYTE, all_moms.data(), static_cast<int>(mom_bytes),
                   MPI_BYTE, 0, grid.stage_comm());
      });
      // Group order is block order within the round. Each neuron's chain of combines is
      // sequential, but neurons are independent: the fold runs on the rank's threads (at GPU
      // rates a one-thread fold of all layers would be slower than a round; docs/MPI.md).
      if (grid.stage_root())
        fold_pool->parallel_for(static_cast<std::int64_t>(Ls * n_inner), [&](std::int64_t i0, std::int64_t i1, int) {
          for (std::int64_t i = i0; i < i1; ++i) {
            const auto l = static_cast<std::size_t>(i) / n_inner, n = static_cast<std::size_t>(i) % n_inner;
            for (int g = 0; g < D; ++g)
              total[l][n] = combine_moments(total[l][n], all_moms[(static_cast<std::size_t>(g) * Ls + l) * n_inner + n]);
          }
        });
    }
    cursor = std::min(N, (first + static_cast<std::uint64_t>(D)) * kMomentBlock);
    if (prog) prog->update((cursor - resumed_from) * T);
    if (stop_at > 0 && cursor >= stop_at && grid.rank() == grid.size() - 1) std::raise(SIGUSR1);
    if (hold_at > 0 && cursor >= hold_at && !held && cursor < N) {
      // Test hook: wait here for a real signal (sent to mpirun by the test), proving that it
      // reaches every rank; the message tells the test that the main pass is under way.
      held = true;
      if (grid.rank() == 0) spdlog::warn("collect: {}: holding at excerpt {} until a signal arrives (test hook)", grid.who(), cursor);
      for (int i = 0; i < 6000 && !stop_requested(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!stop_requested()) fail("collect: {}: no signal arrived within 60 s (NEXPLAIN_TEST_HOLD_AT)", grid.who());
    }

    // ---- checkpoint decision: every rank must agree
    int stop = 0;
    if (vote->req != MPI_REQUEST_NULL) {
      clock([&] { MPI_Wait(&vote->req, MPI_STATUS_IGNORE); });
      stop = vote->in;
    }
    if (cursor >= N) stop = 0;  // the stream is done: writing the records is as quick as a checkpoint
    const bool periodic = d.checkpoint_every > 0 && cursor - last_ckpt >= d.checkpoint_every && cursor < N;
    if (stop && d.checkpoint.empty()) fail("collect: {}: stopped by a signal; no --checkpoint was given", grid.who());
    if (stop || periodic) {
      const auto merged = merge_on_stage_roots(grid, backend->states(), su, total, clock);
      RecordsTarget ck{d.checkpoint, [&](h5::File& f) {
                         f.set_attr_string(kCheckpointKeyAttr, key);
                         f.set_attr_int(kCheckpointCursorAttr, static_cast<std::int64_t>(cursor));
                       },
                       {}};
      // Returns once rank 0 has committed the checkpoint: it is on disk before anyone may die.
      write_records_in_turn(grid, ck, o, su, pre_n, backend->name(), me.layers, merged, clock);
      if (grid.rank() == 0)
        spdlog::info("collect: {}: checkpoint at excerpt {} of {} written to {}", grid.who(), cursor, N,
                     d.checkpoint.string());
      last_ckpt = cursor;
      if (kill_at > 0 && cursor >= kill_at && grid.rank() == grid.size() - 1) std::raise(SIGKILL);
      if (stop) {
        checkpointed = true;
        break;
      }
    }
    if (cursor < N) {
      vote->out = stop_requested() ? 1 : 0;
      MPI_Iallreduce(&vote->out, &vote->in, 1, MPI_INT, MPI_MAX, grid.comm(), &vote->req);
    }
  }
  if (link) link->finish();
  const double main_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tm).count();
  if (prog) prog->finish();

  DistCollectSummary s;
  s.stages = P;
  s.groups = D;
  s.self = {grid.rank(), grid.stage(), grid.group(), me.range.block_end - me.range.block_begin, main_s,
            clock.seconds() - comm_before_main, main_tokens};
  s.ranks.resize(grid.rank() == 0 ? static_cast<std::size_t>(grid.size()) : 0);
  MPI_Gather(&s.self, sizeof(RankTiming), MPI_BYTE, s.ranks.data(), sizeof(RankTiming), MPI_BYTE, 0, grid.comm());
  spdlog::debug("collect: {}: main pass {:.2f} s, {} tokens through {}, {:.0f}% of it blocked in MPI", grid.who(),
                main_s, main_tokens, describe(me.range), main_s > 0 ? 100.0 * s.self.comm_s / main_s : 0.0);
  if (grid.rank() == 0 && main_s > 0) {
    double worst = 0.0;
    for (const auto& r : s.ranks) worst = std::max(worst, r.main_s > 0 ? r.comm_s / r.main_s : 0.0);
    spdlog::info("collect: main pass {:.1f} s, {} tokens/s over {} ranks; time blocked in MPI up to {:.0f}% on a rank",
                 main_s, Progress::human(static_cast<double>((cursor - resumed_from) * T) / main_s), grid.size(),
                 100.0 * worst);
  }
  s.resumed_from = resumed_from;
  s.checkpointed = checkpointed;
  s.collect.backend = backend->name();
  s.collect.excerpts = N;
  s.collect.tokens = N * T;
  s.collect.prepass_excerpts = pre_n;
  s.collect.main_tokens_per_s = main_s > 0 ? static_cast<double>((cursor - resumed_from) * T) / main_s : 0.0;
  if (checkpointed) {
    if (grid.rank() == 0)
      spdlog::warn("collect: stopped by a signal at excerpt {} of {}; rerun to resume (exit {})", cursor, N,
                   static_cast<int>(kExitCheckpointed));
    return s;
  }

  // ---- final merge (per stage) and the one records file, written by the stage roots in turn
  // The backend (weights, its own copy of the states) is done: freed before the merge and the write.
  std::vector<CaptureState> final_states = backend->states();
  backend.reset();
  const auto merged = merge_on_stage_roots(grid, std::move(final_states), su, total, clock);
  RecordsTarget records{o.out, {}, [&] {
                          // Finished: nothing to resume. Only now, after the commit: a failed
                          // write leaves the checkpoint for the rerun.
                          std::error_code ec;
                          if (!d.checkpoint.empty() && fs::exists(d.checkpoint, ec) && !fs::remove(d.checkpoint, ec) && ec)
                            spdlog::warn("collect: cannot remove the checkpoint {} of the finished run: {}",
                                         d.checkpoint.string(), ec.message());
                        }};
  write_records_in_turn(grid, records, o, su, pre_n, s.collect.backend, me.layers, merged, clock);
  s.collect.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace nexplain
