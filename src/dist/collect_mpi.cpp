#include "dist/collect_mpi.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>

#include <spdlog/spdlog.h>

#include "capture/hash.hpp"
#include "capture/histogram_state.hpp"
#include "capture/moments.hpp"
#include "collect/collect_common.hpp"
#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "core/sha256.hpp"
#include "dist/state_wire.hpp"
#include "dist/stop_signal.hpp"
#include "io/records_file.hpp"

namespace nexplain {

namespace fs = std::filesystem;
using namespace collect_detail;

namespace {

constexpr int kTagState = 201;
constexpr const char* kCheckpointKeyAttr = "checkpoint_key";
constexpr const char* kCheckpointCursorAttr = "checkpoint_cursor";

// What a checkpoint must match to be resumed: every input that changes the records. A run with
// other parameters, layers, corpus or model refuses the checkpoint instead of mixing results.
std::string checkpoint_key(const CollectOptions& o, const CollectSetup& su) {
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
  return j.dump();
}

// Environment test hooks (tests/mpi): make the last rank raise a signal at a given cursor, so
// the tests interrupt at a deterministic point instead of racing a timer.
std::uint64_t env_u64(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : 0;
}

struct Rank {
  MPI_Comm comm;
  int rank = 0, size = 1;
  std::string who() const { return fmt::format("rank {}/{} (data group {}, stage 0)", rank, size, rank); }
};

// Rank 0 gathers every rank's states, merges them (samples and histograms merge exactly) and
// folds in the running moment total; other ranks send theirs. Returns the merged states on
// rank 0, nothing elsewhere.
std::vector<CaptureState> merge_to_root(const Rank& r, std::vector<CaptureState> mine, const CollectSetup& su,
                                        const std::vector<std::vector<double>>& bounds,
                                        const std::vector<std::vector<Moments>>& total) {
  if (r.rank != 0) {
    for (const auto& s : mine) send_bytes(pack_state(s), 0, kTagState, r.comm);
    return {};
  }
  for (int src = 1; src < r.size; ++src) {
    for (std::size_t l = 0; l < mine.size(); ++l) {
      const auto bytes = recv_bytes(src, kTagState, r.comm);
      mine[l].merge(unpack_state(mine[l].params(), static_cast<std::uint32_t>(su.cfg.n_inner), bounds[l], bytes));
    }
  }
  for (std::size_t l = 0; l < mine.size(); ++l) {
    mine[l].take_moments();  // rank states hold no moments between blocks; the total is canonical
    mine[l].fold_moments(total[l]);
  }
  return mine;
}

}  // namespace

DistCollectSummary run_collect_mpi(const CollectOptions& o, const DistCollectOptions& d, MPI_Comm comm) {
  const auto t0 = std::chrono::steady_clock::now();
  Rank r{comm};
  MPI_Comm_rank(comm, &r.rank);
  MPI_Comm_size(comm, &r.size);
  if (d.pipeline_stages < 1) fail("--pipeline-stages {}: must be at least 1", d.pipeline_stages);
  if (r.size % d.pipeline_stages != 0)
    fail("--pipeline-stages {} does not divide the {} MPI ranks", d.pipeline_stages, r.size);
  if (d.pipeline_stages > 1)
    fail("--pipeline-stages {}: pipeline stages are not implemented yet; run with data parallelism only "
         "(--pipeline-stages 1, every rank holds all selected layers)",
         d.pipeline_stages);
  if (d.checkpoint_every > 0 && d.checkpoint.empty()) fail("--checkpoint-every needs --checkpoint PATH");
  const int D = r.size;
  install_stop_handlers();

  std::unique_ptr<AtomicOutput> out;
  if (r.rank == 0) out = std::make_unique<AtomicOutput>(o.out);
  CollectSetup su;
  prepare_collect(o, su);
  const auto T = su.T;
  const std::uint64_t N = su.N;
  const std::size_t L = su.layers.size();
  const auto n_inner = static_cast<std::uint32_t>(su.cfg.n_inner);
  const std::string key = d.checkpoint.empty() ? std::string() : checkpoint_key(o, su);

  Gpt2LoadOptions lo;
  lo.last_layer = su.layers.back();
  lo.final_norm = false;
  const auto weights = Gpt2Weights::load(o.model_dir, lo);
  auto backend = make_backend(o, weights, su.layers, su.params);
  if (r.rank == 0)
    spdlog::info("collect: {} excerpts x {} tokens over {} ranks (grid: {} data groups x 1 stage), layers {}..{}, "
                 "backend {}, moment block {} excerpts",
                 N, T, r.size, D, su.layers.front(), su.layers.back(), backend->name(), kMomentBlock);

  // ---- resume: rank 0 reads the checkpoint; cursor, pre-pass size and boundaries go to all
  std::uint64_t cursor = 0, pre_n = 0;
  int resumed = 0;
  std::vector<std::vector<double>> bounds(L);
  std::vector<CaptureState> ckpt_states;
  if (r.rank == 0 && !d.checkpoint.empty() && fs::exists(d.checkpoint)) {
    auto f = h5::File::open_read(d.checkpoint);
    if (!f.has_attr(kCheckpointKeyAttr)) fail("--checkpoint {}: not a collect checkpoint", d.checkpoint.string());
    if (f.attr_string(kCheckpointKeyAttr) != key)
      fail("--checkpoint {}: written by a collect with other parameters, layers, corpus or model; remove it or "
           "rerun with the original options",
           d.checkpoint.string());
    cursor = static_cast<std::uint64_t>(f.attr_int(kCheckpointCursorAttr));
    RecordsFile rf(d.checkpoint);
    pre_n = rf.meta().prepass_excerpts;
    for (std::size_t l = 0; l < L; ++l) {
      ckpt_states.push_back(rf.layer_state(su.layers[l]));
      bounds[l] = ckpt_states.back().arrays().boundaries;
    }
    resumed = 1;
  }
  MPI_Bcast(&resumed, 1, MPI_INT, 0, comm);
  MPI_Bcast(&cursor, 1, MPI_UINT64_T, 0, comm);
  MPI_Bcast(&pre_n, 1, MPI_UINT64_T, 0, comm);
  if (resumed) {
    for (auto& b : bounds) {
      std::uint64_t n = b.size();
      MPI_Bcast(&n, 1, MPI_UINT64_T, 0, comm);
      b.resize(n);
      MPI_Bcast(b.data(), static_cast<int>(n), MPI_DOUBLE, 0, comm);
    }
    if (r.rank == 0) spdlog::info("collect: {}: resuming from checkpoint {} at excerpt {} of {}", r.who(),
                                  d.checkpoint.string(), cursor, N);
  } else if (su.rate > 0 && !su.params.quantile_fractions.empty()) {
    // ---- pre-pass: the hashed subset dealt round-robin; histograms are integers, so the
    // allreduced counts (and the boundaries) are identical on every rank and to one process
    std::vector<std::uint64_t> subset;
    for (std::uint64_t id = 0; id < N; ++id)
      if (excerpt_in_prepass(su.params.seed, id, su.rate)) subset.push_back(id);
    pre_n = subset.size();
    std::vector<std::uint64_t> mine;
    for (std::size_t i = static_cast<std::size_t>(r.rank); i < subset.size(); i += static_cast<std::size_t>(D))
      mine.push_back(subset[i]);
    std::vector<std::uint32_t> tokens, row(T);
    for (std::size_t i = 0; i < mine.size(); i += static_cast<std::size_t>(o.batch)) {
      const std::size_t b = std::min<std::size_t>(static_cast<std::size_t>(o.batch), mine.size() - i);
      tokens.resize(b * T);
      for (std::size_t j = 0; j < b; ++j) {
        su.seqs.read(mine[i + j], 1, row.data());
        check_tokens(row, mine[i + j], T, su.cfg.vocab_size, o.sequences);
        std::copy(row.begin(), row.end(), tokens.begin() + static_cast<std::ptrdiff_t>(j * T));
      }
      backend->prepass(tokens.data(), static_cast<int>(b));
    }
    auto hists = backend->histograms();
    for (std::size_t l = 0; l < L; ++l) {
      std::vector<std::uint64_t> counts = hists[l].counts();
      MPI_Allreduce(MPI_IN_PLACE, counts.data(), static_cast<int>(counts.size()), MPI_UINT64_T, MPI_SUM, comm);
      bounds[l] = HistogramState(n_inner, std::move(counts)).boundaries(su.params.quantile_fractions);
    }
    if (r.rank == 0) spdlog::info("collect: {}: pre-pass over {} excerpts done", r.who(), pre_n);
  }
  if (cursor % kMomentBlock != 0 && cursor != N)
    fail("--checkpoint {}: cursor {} is not at a moment block boundary", d.checkpoint.string(), cursor);

  // ---- states: rank 0 continues the checkpointed state; the running moment total lives on
  // rank 0 only and is folded block by block in block order
  std::vector<std::vector<Moments>> total(L, std::vector<Moments>(n_inner));
  std::vector<CaptureState> states;
  for (std::size_t l = 0; l < L; ++l) {
    if (!ckpt_states.empty()) {
      total[l] = ckpt_states[l].take_moments();
      states.push_back(std::move(ckpt_states[l]));
      continue;
    }
    CaptureParams lp = su.params;
    lp.layer = static_cast<std::uint32_t>(su.layers[l]);
    states.emplace_back(lp, n_inner, bounds[l]);
  }
  backend->start_main(std::move(states));

  // ---- main pass in rounds: round k gives block first + k*D + g to data group g
  const std::uint64_t n_blocks = (N + kMomentBlock - 1) / kMomentBlock;
  spdlog::debug("collect: {}: reduces moment blocks {}, {} + {}, ... of {}", r.who(), cursor / kMomentBlock + r.rank,
                cursor / kMomentBlock + r.rank, D, n_blocks);
  const std::uint64_t resumed_from = cursor;
  const std::uint64_t stop_at = env_u64("NEXPLAIN_TEST_STOP_AT"), kill_at = env_u64("NEXPLAIN_TEST_KILL_AT");
  std::uint64_t last_ckpt = cursor;
  const auto tm = std::chrono::steady_clock::now();
  std::unique_ptr<Progress> prog;
  if (r.rank == 0) {
    prog = std::make_unique<Progress>("collect", N * T, "tokens");
    prog->set_already_done(cursor * T);
  }
  const std::size_t mom_bytes = L * n_inner * sizeof(Moments);
  std::vector<Moments> my_moms(L * n_inner), all_moms(r.rank == 0 ? static_cast<std::size_t>(D) * L * n_inner : 0);
  std::vector<std::uint32_t> tokens;
  std::vector<std::uint64_t> ids;
  bool checkpointed = false;
  for (std::uint64_t first = cursor / kMomentBlock; first < n_blocks; first += static_cast<std::uint64_t>(D)) {
    const std::uint64_t block = first + static_cast<std::uint64_t>(r.rank);
    std::fill(my_moms.begin(), my_moms.end(), Moments{});
    if (block < n_blocks) {
      const std::uint64_t b_end = std::min(N, (block + 1) * kMomentBlock);
      for (std::uint64_t e = block * kMomentBlock; e < b_end; e += static_cast<std::uint64_t>(o.batch)) {
        const std::uint64_t b = std::min<std::uint64_t>(static_cast<std::uint64_t>(o.batch), b_end - e);
        tokens.resize(b * T);
        su.seqs.read(e, b, tokens.data());
        check_tokens(tokens, e, T, su.cfg.vocab_size, o.sequences);
        ids.resize(b);
        for (std::uint64_t j = 0; j < b; ++j) ids[j] = e + j;
        backend->main(tokens.data(), ids.data(), static_cast<int>(b));
      }
      const auto blk = backend->take_moments();
      for (std::size_t l = 0; l < L; ++l) std::copy(blk[l].begin(), blk[l].end(), my_moms.begin() + static_cast<std::ptrdiff_t>(l * n_inner));
    }
    MPI_Gather(my_moms.data(), static_cast<int>(mom_bytes), MPI_BYTE, all_moms.data(), static_cast<int>(mom_bytes),
               MPI_BYTE, 0, comm);
    if (r.rank == 0)
      for (int g = 0; g < D; ++g)  // rank order is block order within the round
        for (std::size_t l = 0; l < L; ++l)
          for (std::uint32_t n = 0; n < n_inner; ++n)
            total[l][n] = combine_moments(total[l][n], all_moms[(static_cast<std::size_t>(g) * L + l) * n_inner + n]);
    cursor = std::min(N, (first + static_cast<std::uint64_t>(D)) * kMomentBlock);
    if (prog) prog->update((cursor - resumed_from) * T);
    if (stop_at > 0 && cursor >= stop_at && r.rank == r.size - 1) std::raise(SIGUSR1);

    // ---- checkpoint decision: every rank must agree, so the signal flag is allreduced
    int stop = stop_requested() ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, comm);
    const bool periodic = d.checkpoint_every > 0 && cursor - last_ckpt >= d.checkpoint_every && cursor < N;
    if (stop && d.checkpoint.empty()) fail("collect: {}: stopped by a signal; no --checkpoint was given", r.who());
    if (stop || periodic) {
      auto merged = merge_to_root(r, backend->states(), su, bounds, total);
      if (r.rank == 0) {
        AtomicOutput ck(d.checkpoint);
        write_collect_records(ck.temp_path(), o, su, pre_n, backend->name(), merged, [&](h5::File& f) {
          f.set_attr_string(kCheckpointKeyAttr, key);
          f.set_attr_int(kCheckpointCursorAttr, static_cast<std::int64_t>(cursor));
        });
        ck.commit();
        spdlog::info("collect: {}: checkpoint at excerpt {} of {} written to {}", r.who(), cursor, N,
                     d.checkpoint.string());
      }
      last_ckpt = cursor;
      MPI_Barrier(comm);  // the checkpoint is on disk before anyone may die
      if (kill_at > 0 && cursor >= kill_at && r.rank == r.size - 1) std::raise(SIGKILL);
      if (stop) {
        checkpointed = true;
        break;
      }
    }
  }
  const double main_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tm).count();
  if (prog) prog->finish();

  DistCollectSummary s;
  s.resumed_from = resumed_from;
  s.checkpointed = checkpointed;
  s.collect.backend = backend->name();
  s.collect.excerpts = N;
  s.collect.tokens = N * T;
  s.collect.prepass_excerpts = pre_n;
  s.collect.main_tokens_per_s = main_s > 0 ? static_cast<double>((cursor - resumed_from) * T) / main_s : 0.0;
  if (checkpointed) {
    if (r.rank == 0) spdlog::warn("collect: stopped by a signal at excerpt {} of {}; rerun to resume (exit {})", cursor,
                                  N, static_cast<int>(kExitCheckpointed));
    return s;
  }

  // ---- final merge on rank 0 and the one records file
  auto merged = merge_to_root(r, backend->states(), su, bounds, total);
  if (r.rank == 0) {
    write_collect_records(out->temp_path(), o, su, pre_n, backend->name(), merged, {});
    out->commit();
    if (!d.checkpoint.empty() && fs::exists(d.checkpoint)) fs::remove(d.checkpoint);  // finished: nothing to resume
  }
  MPI_Barrier(comm);
  s.collect.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace nexplain
