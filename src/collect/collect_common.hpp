#pragma once
// The steps of `collect` shared by the single-process collector and the MPI driver
// (src/dist/collect_mpi.cpp): validation, backend choice, token checks and the records writer,
// so both paths validate and write exactly the same way.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <mpi.h>
#include <nlohmann/json.hpp>

#include "collect/collect_backend.hpp"
#include "collect/collector.hpp"
#include "io/h5file.hpp"
#include "io/records_file.hpp"
#include "io/sequences.hpp"
#include "model/arch_config.hpp"

namespace nexplain::collect_detail {

// Everything validated before any compute.
struct CollectSetup {
  SequencesReader seqs;
  std::uint32_t T = 0;
  ArchConfig cfg;           // any supported family (docs/MODEL.md)
  std::vector<int> layers;  // ascending
  std::uint64_t N = 0;      // excerpts in the stream
  CaptureParams params;     // with T set, validated
  double rate = 1.0;        // the pre-pass rate
};

// Throws Error for anything wrong with the options, model or corpus (the output path aside).
void prepare_collect(const CollectOptions& o, CollectSetup& setup);

// The model's decoded config and the sha256 of config.json and every safetensors file (one file
// or all shards of an index, plus the index), so a records file names exactly what produced it.
nlohmann::json model_provenance(const std::filesystem::path& dir, const ArchConfig& cfg);
void check_tokens(std::span<const std::uint32_t> tokens, std::uint64_t first_id, std::uint32_t T, int vocab,
                  const std::filesystem::path& seqs);
// The backend --device asks for, with the weights it needs loaded from o.model_dir: either
// backend (CPU or CUDA; every family) loads blocks [block_begin, block_end) only (a pipeline
// stage; -1 = up to the last selected layer) and the embeddings only when block_begin is 0.
// The CUDA backend runs on device node_local_rank(node_comm) % device_count: the MPI driver
// passes its ranks' communicator (collective over it, on the CUDA path only: every rank takes
// the same path); MPI_COMM_NULL reads the launcher's environment (collect/node_local_rank.hpp).
std::unique_ptr<CollectBackend> make_backend(const CollectOptions& o, const ArchConfig& cfg, const std::vector<int>& layers,
                                             const CaptureParams& p, int block_begin = 0, int block_end = -1,
                                             MPI_Comm node_comm = MPI_COMM_NULL);

// The records file's root attributes for this collect (hashes the model files and the corpus).
RecordsMeta collect_records_meta(const CollectOptions& o, const CollectSetup& setup, std::uint64_t prepass_excerpts,
                                 const std::string& backend);
// The excerpts step of the records file (records_file.hpp), after every layer: the tokens of
// `ids` (ascending, unique: every excerpt the layers refer to), read from the corpus.
void append_collect_excerpts(const std::filesystem::path& path, const CollectSetup& setup,
                             const std::vector<std::uint64_t>& ids);
// The records file's last step: `extra` adds attributes to the finished file (checkpoints) in a
// session of its own; nothing when `extra` is empty.
void finish_collect_records(const std::filesystem::path& path, const std::function<void(h5::File&)>& extra);

// Writes the records file of `states` (one per selected layer) at `path` in one process, by the
// same steps as the MPI collect's stage roots take in turn (src/dist/collect_mpi.cpp), so both
// give the same bytes; `extra` as for finish_collect_records.
void write_collect_records(const std::filesystem::path& path, const CollectOptions& o, const CollectSetup& setup,
                           std::uint64_t prepass_excerpts, const std::string& backend,
                           const std::vector<CaptureState>& states, const std::function<void(h5::File&)>& extra);

}  // namespace nexplain::collect_detail
