// bench/scaling: MPI collect throughput per grid shape (data groups x pipeline stages), per
// rank, with the fraction of time each rank spends blocked in MPI, against the anchor measured
// in the same run: the 1-rank collect (speedup and efficiency are relative to it).
//
//   mpirun -np N bench/scaling [--layers 8] [--embd 128] [--excerpts 1024] [--seq-len 32] [--batch 16]
//                              [--threads 1] [--dir DIR]
//
// Every shape D x P with D*P <= N and P <= L runs on a sub-communicator of the first D*P ranks
// (a rank-role split: the other ranks are idle for that shape). It writes a random GPT-2-shaped
// model and a random corpus under --dir (default: a temporary directory) and removes them.
// On an oversubscribed machine (more ranks than cores) the numbers measure the contention, not
// the method: run it with at most one rank per core (times --threads).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "dist/collect_mpi.hpp"
#include "dist/mpi_session.hpp"
#include "io/sequences.hpp"
#include "model/transformer_weights.hpp"

using namespace nexplain;
namespace fs = std::filesystem;

namespace {

struct Args {
  int layers = 8, embd = 128, excerpts = 1024, seq_len = 32, batch = 16, threads = 1;
  std::string dir;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--layers") a.layers = std::atoi(v);
    else if (k == "--embd") a.embd = std::atoi(v);
    else if (k == "--excerpts") a.excerpts = std::atoi(v);
    else if (k == "--seq-len") a.seq_len = std::atoi(v);
    else if (k == "--batch") a.batch = std::atoi(v);
    else if (k == "--threads") a.threads = std::atoi(v);
    else if (k == "--dir") a.dir = v;
    else {
      std::fprintf(stderr, "usage: mpirun -np N scaling [--layers L] [--embd C] [--excerpts E] [--seq-len T] "
                           "[--batch B] [--threads N] [--dir DIR]\n");
      std::exit(2);
    }
  }
  return a;
}

void write_inputs(const Args& a, const fs::path& dir) {
  const ArchConfig c = ArchConfig::from_json({{"model_type", "gpt2"},
                                              {"n_embd", a.embd},
                                              {"n_layer", a.layers},
                                              {"n_head", std::max(1, a.embd / 64)},
                                              {"n_inner", 4 * a.embd},
                                              {"n_positions", std::max(64, a.seq_len)},
                                              {"vocab_size", 4096}},
                                             "bench/scaling");
  fs::create_directories(dir / "model");
  TransformerWeights::random(c, 7).save(dir / "model");
  SequencesInfo info;
  info.seq_len = a.seq_len;
  info.vocab_size = static_cast<std::uint32_t>(c.vocab_size);
  info.eot_id = info.vocab_size - 1;
  info.tokenizer_sha256 = "synthetic";
  SequencesWriter w(dir / "seqs.h5", info);
  std::mt19937 rng(11);
  std::vector<std::uint32_t> ids(static_cast<std::size_t>(a.excerpts) * static_cast<std::size_t>(a.seq_len));
  for (auto& t : ids) t = rng() % info.vocab_size;
  w.append(ids);
  w.finish({{"source", "bench/scaling"}});
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession mpi;
  const Args a = parse(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  fs::path dir = a.dir.empty() ? fs::temp_directory_path() / ("nexplain-scaling-" + std::to_string(getpid())) : fs::path(a.dir);
  // Every rank must see rank 0's directory: broadcast its name.
  std::string name = dir.string();
  int len = static_cast<int>(name.size());
  MPI_Bcast(&len, 1, MPI_INT, 0, mpi.world());
  name.resize(static_cast<std::size_t>(len));
  MPI_Bcast(name.data(), len, MPI_CHAR, 0, mpi.world());
  dir = name;
  if (mpi.rank() == 0) write_inputs(a, dir);
  MPI_Barrier(mpi.world());

  CollectOptions o;
  o.model_dir = dir / "model";
  o.sequences = dir / "seqs.h5";
  o.batch = a.batch;
  o.threads = a.threads;
  o.params.K = 10;
  o.params.R = 10;
  o.params.Q = 3;
  o.prepass_rate = 0.05;  // the pre-pass is not what is measured: keep it short
  if (mpi.rank() == 0) {
    std::printf("bench/scaling: %d layers x %d neurons (n_embd %d), %d excerpts x %d tokens, batch %d, %d thread(s) "
                "per rank, up to %d ranks\n",
                a.layers, 4 * a.embd, a.embd, a.excerpts, a.seq_len, a.batch, a.threads, mpi.size());
    const unsigned cores = std::thread::hardware_concurrency();
    if (static_cast<unsigned>(mpi.size() * a.threads) > cores)
      std::printf("note: %d ranks x %d threads > %u cores: oversubscribed, the numbers measure contention\n",
                  mpi.size(), a.threads, cores);
    std::printf("%-7s %5s %12s %8s %6s | per rank: %-28s\n", "D x P", "ranks", "tokens/s", "speedup", "eff.",
                "rank(stage): block-tokens/s, MPI %");
  }
  double anchor = 0.0;
  for (int n = 1; n <= mpi.size(); ++n) {
    for (int P = 1; P <= std::min(n, a.layers); ++P) {
      if (n % P != 0) continue;
      const bool active = mpi.rank() < n;
      const MpiComm comm = mpi.split_roles(active ? RankRole::collect : RankRole::idle);
      if (!active) continue;
      o.out = dir / ("records-" + std::to_string(n) + "x" + std::to_string(P) + ".h5");
      DistCollectOptions d;
      d.pipeline_stages = P;
      const auto s = run_collect_mpi(o, d, comm.get());
      if (mpi.rank() != 0) continue;
      fs::remove(o.out);
      const double rate = s.collect.main_tokens_per_s;
      if (n == 1) anchor = rate;
      std::printf("%3d x %-2d %5d %12.0f %7.2fx %5.0f%% |", n / P, P, n, rate, anchor > 0 ? rate / anchor : 0.0,
                  anchor > 0 ? 100.0 * rate / anchor / n : 0.0);
      for (const auto& r : s.ranks)
        std::printf(" %d(%d): %.0f, %.0f%%;", r.rank, r.stage,
                    r.main_s > 0 ? static_cast<double>(r.tokens) * r.blocks / r.main_s : 0.0,
                    r.main_s > 0 ? 100.0 * r.comm_s / r.main_s : 0.0);
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  MPI_Barrier(mpi.world());
  if (mpi.rank() == 0 && a.dir.empty()) fs::remove_all(dir);
  return 0;
}
