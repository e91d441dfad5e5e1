#pragma once
// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
// mapping tensor names to {dtype, shape, data_offsets}, then the raw data. The file is mmap'd
// and the header fully validated on open, so later reads cannot go out of bounds.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nexplain {

enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

std::size_t dtype_size(StDtype d);
const char* dtype_name(StDtype d);

struct TensorInfo {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets relative to the start of the data area
  std::uint64_t end = 0;
  std::int64_t numel() const;
};

std::string shape_str(const std::vector<std::int64_t>& shape);  // "[64, 192]"

class SafetensorsFile {
 public:
  SafetensorsFile() = default;
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // Maps and validates the file; Error names the file and the byte offset or tensor at fault.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // Error when absent
  const nlohmann::json& metadata() const { return metadata_; }  // __metadata__ or null
  // Absolute file offset of the data area (8 + header length): for error messages.
  std::uint64_t data_offset() const { return data_start_; }

  // Raw little-endian bytes of a tensor (points into the mapping).
  const std::byte* data(const std::string& name) const;
  // The tensor converted to float32 (from F32, F16, BF16 or F64; other dtypes are an Error).
  std::vector<float> to_float(const std::string& name) const;
  // Converts into `out`, which must hold numel() floats.
  void to_float(const std::string& name, float* out) const;
  // Integer tensors (I8..I64, U8..U64, BOOL) widened to int64.
  std::vector<std::int64_t> to_int64(const std::string& name) const;

 private:
  std::filesystem::path path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::uint64_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  nlohmann::json metadata_;
};

// One tensor for write_safetensors: `data` points at numel * dtype_size bytes (little-endian).
struct TensorToWrite {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
};

// Writes a safetensors file atomically (temporary + rename), tensors in the given order, the
// header padded with spaces to a multiple of 8 bytes. `metadata` (an object of strings) becomes
// __metadata__ when not null.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const nlohmann::json& metadata = nullptr);

// A HF checkpoint directory: model.safetensors, or model.safetensors.index.json whose weight_map
// points each tensor at a shard file. Names are looked up with or without HF's "transformer."
// prefix; the attn.bias / attn.masked_bias buffers (causal masks) are ignored.
class Checkpoint {
 public:
  static Checkpoint open(const std::filesystem::path& model_dir);

  const std::filesystem::path& dir() const { return dir_; }
  // Canonical names (prefix stripped, buffers dropped), sorted.
  std::vector<std::string> names() const;
  // nullptr when absent. `name` may be given with or without the "transformer." prefix.
  const TensorInfo* find(const std::string& name) const;
  // The file holding `name` (Error when absent).
  const SafetensorsFile& file_of(const std::string& name) const;
  // Error naming the checkpoint and the tensor when absent.
  std::vector<float> to_float(const std::string& name) const;
  void to_float(const std::string& name, float* out) const;

 private:
  struct Entry {
    std::size_t file;
    std::string stored_name;  // name as written in the file
  };
  const Entry* lookup(const std::string& name) const;

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> entries_;  // canonical name -> where it is
};

}  // namespace nexplain
