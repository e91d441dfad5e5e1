#include "llm/batch_writer.hpp"

#include <fstream>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "nexplain_version.hpp"

namespace nexplain {

namespace fs = std::filesystem;

nlohmann::json BatchShardInfo::to_json() const {
  return {{"file", file}, {"stage", stage}, {"kind", api_name(kind)}, {"url", url},
          {"model", model}, {"requests", requests}, {"bytes", bytes}};
}

struct BatchWriter::OpenShard {
  std::size_t index = 0;  // into shards_
  AtomicOutput out;       // declared before the stream: the stream closes before the temporary goes
  std::ofstream stream;
  explicit OpenShard(const fs::path& target) : out(target), stream(out.temp_path(), std::ios::binary | std::ios::trunc) {}
};

BatchWriter::BatchWriter(fs::path dir, BatchLimits limits) : dir_(std::move(dir)), limits_(limits) {
  if (limits_.max_requests == 0 || limits_.max_bytes == 0) fail("batch limits must be positive");
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_)) fail("--write-batch: cannot create directory '{}': {}", dir_.string(), ec.message());
  // Files of an earlier round here would be indistinguishable from this round's, and a shard
  // submitted twice is paid twice.
  for (const auto& e : fs::directory_iterator(dir_)) {
    const std::string name = e.path().filename().string();
    if (name == "manifest.json" || (name.starts_with("batch-") && name.ends_with(".jsonl"))) {
      fail("--write-batch: '{}' already holds batch files ({}); use a new directory for each round", dir_.string(), name);
    }
  }
}

BatchWriter::~BatchWriter() = default;

bool BatchWriter::add(const std::string& stage, ApiKind kind, const std::string& model, const std::string& hash,
                      const std::string& payload) {
  if (finished_) fail("internal: batch request added after finish()");
  if (!written_.insert(hash).second) return false;
  const std::string url = std::string("/v1") + api_path(kind);
  // Built by hand rather than through a JSON object so that "body" is the payload's own bytes.
  std::string line = R"({"custom_id":")" + hash + R"(","method":"POST","url":")" + url + R"(","body":)" + payload + "}\n";
  if (line.size() > limits_.max_bytes) {
    fail("--write-batch: request {} ({} bytes) is larger than a whole batch file may be ({} bytes)", hash, line.size(),
         limits_.max_bytes);
  }

  auto& slot = open_[{stage, kind}];
  if (slot) {
    const BatchShardInfo& cur = shards_[slot->index];
    if (cur.requests + 1 > limits_.max_requests || cur.bytes + line.size() > limits_.max_bytes) {
      close(*slot);
      slot.reset();
    }
  }
  if (!slot) {
    BatchShardInfo info;
    info.file = fmt::format("batch-{:04d}.jsonl", shards_.size());
    info.stage = stage;
    info.kind = kind;
    info.url = url;
    info.model = model;
    slot = std::make_unique<OpenShard>(dir_ / info.file);
    if (!slot->stream) fail("{}: cannot open for writing", slot->out.temp_path().string());
    slot->index = shards_.size();
    shards_.push_back(std::move(info));
  }
  slot->stream.write(line.data(), static_cast<std::streamsize>(line.size()));
  if (!slot->stream) fail("{}: write failed", slot->out.temp_path().string());
  BatchShardInfo& info = shards_[slot->index];
  info.requests += 1;
  info.bytes += line.size();
  requests_ += 1;
  return true;
}

void BatchWriter::close(OpenShard& s) {
  s.stream.close();
  if (s.stream.fail()) fail("{}: write failed", s.out.temp_path().string());
  s.out.commit();
}

const std::vector<BatchShardInfo>& BatchWriter::finish() {
  if (finished_) return shards_;
  for (auto& [group, shard] : open_) close(*shard);
  open_.clear();
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& s : shards_) shards.push_back(s.to_json());
  const nlohmann::json manifest = {
      {"format", "openai-batch-input"},
      {"created_by", "nexplain " NEXPLAIN_VERSION},
      {"requests", requests_},
      {"shards", std::move(shards)},
      {"next", "submit each shard to its url (OpenAI Batch API, completion_window 24h, or `vllm run-batch -i SHARD -o "
               "OUTPUT`), then rerun `nexplain explain` with --read-batch OUTPUT... and --write-batch NEWDIR"}};
  write_file_atomic(dir_ / "manifest.json", manifest.dump(2) + "\n");
  finished_ = true;
  return shards_;
}

}  // namespace nexplain
