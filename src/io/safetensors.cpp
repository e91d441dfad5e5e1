#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

// A header larger than this is certainly not a model header (GPT-2 XL's is ~40 kB); the bound
// keeps a corrupt length field from making us parse gigabytes of tensor data as JSON.
constexpr std::uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

struct DtypeEntry {
  const char* name;
  StDtype dtype;
  std::size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {"F64", StDtype::F64, 8},  {"F32", StDtype::F32, 4},  {"F16", StDtype::F16, 2},
    {"BF16", StDtype::BF16, 2}, {"I64", StDtype::I64, 8},  {"I32", StDtype::I32, 4},
    {"I16", StDtype::I16, 2},  {"I8", StDtype::I8, 1},    {"U64", StDtype::U64, 8},
    {"U32", StDtype::U32, 4},  {"U16", StDtype::U16, 2},  {"U8", StDtype::U8, 1},
    {"BOOL", StDtype::BOOL, 1},
};

bool parse_dtype(const std::string& s, StDtype& out) {
  for (const auto& d : kDtypes)
    if (s == d.name) {
      out = d.dtype;
      return true;
    }
  return false;
}

// IEEE half -> float, including subnormals, infinities and NaN.
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise the mantissa into a float exponent.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

template <typename T>
T load_le(const std::byte* p) {
  // The data area need not be aligned, and the format is little-endian (as is every machine we
  // target), so a memcpy is both the safe and the fast read.
  static_assert(std::endian::native == std::endian::little, "big-endian hosts are not supported");
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

std::string json_snippet(const nlohmann::json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace

std::size_t dtype_size(StDtype d) {
  for (const auto& e : kDtypes)
    if (e.dtype == d) return e.size;
  return 0;
}

const char* dtype_name(StDtype d) {
  for (const auto& e : kDtypes)
    if (e.dtype == d) return e.name;
  return "?";
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ------------------------------------------------------------------------------------- file

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(map_, map_size_);
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    data_start_ = o.data_start_;
    tensors_ = std::move(o.tensors_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  SafetensorsFile f;
  f.path_ = path;
  const std::string p = path.string();

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", p, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", p, std::strerror(err));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail("{}: truncated: the file is {} bytes, but a safetensors file starts with an 8-byte header length", p, size);
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (m == MAP_FAILED) fail("{}: cannot mmap {} bytes: {}", p, size, std::strerror(map_err));
  f.map_ = m;
  f.map_size_ = size;
  const auto* bytes = static_cast<const std::byte*>(m);

  const auto header_len = load_le<std::uint64_t>(bytes);
  if (header_len > kMaxHeaderBytes)
    fail("{}: byte 0: header length {} exceeds the {}-byte limit (corrupt or not a safetensors file)", p,
         header_len, kMaxHeaderBytes);
  if (header_len > size - 8)
    fail("{}: byte 0: header length {} runs past the end of the file ({} bytes; at most {} available): "
         "truncated or corrupt",
         p, header_len, size, size - 8);
  f.data_start_ = 8 + header_len;
  const std::uint64_t data_size = size - f.data_start_;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8),
                                   reinterpret_cast<const char*>(bytes + 8 + header_len));
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based within the header text; report it as a file offset.
    fail("{}: byte {}: the JSON header does not parse: {}", p, 8 + (e.byte > 0 ? e.byte - 1 : 0), e.what());
  }
  if (!header.is_object()) fail("{}: byte 8: the JSON header must be an object, got {}", p, header.type_name());

  std::vector<const TensorInfo*> by_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail("{}: __metadata__ must be an object of strings, got {}", p, json_snippet(e));
      f.metadata_ = e;
      continue;
    }
    if (!e.is_object()) fail("{}: tensor '{}': entry must be an object, got {}", p, name, json_snippet(e));
    TensorInfo t;
    t.name = name;
    const auto dt = e.find("dtype");
    if (dt == e.end()) fail("{}: tensor '{}': missing 'dtype'", p, name);
    if (!dt->is_string() || !parse_dtype(dt->get<std::string>(), t.dtype))
      fail("{}: tensor '{}': unknown dtype {} (expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL)",
           p, name, json_snippet(*dt));
    const auto sh = e.find("shape");
    if (sh == e.end()) fail("{}: tensor '{}': missing 'shape'", p, name);
    if (!sh->is_array()) fail("{}: tensor '{}': 'shape' must be an array, got {}", p, name, json_snippet(*sh));
    // numel is accumulated with an overflow guard: a corrupt shape must not wrap around and
    // happen to match the byte range.
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned())
        fail("{}: tensor '{}': shape {} must hold non-negative integers", p, name, json_snippet(*sh));
      const auto v = d.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) overflow = true;
      if (v != 0 && numel > std::numeric_limits<std::uint64_t>::max() / v) overflow = true;
      numel *= v;
      t.shape.push_back(static_cast<std::int64_t>(v));
    }
    const auto off = e.find("data_offsets");
    if (off == e.end()) fail("{}: tensor '{}': missing 'data_offsets'", p, name);
    if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      fail("{}: tensor '{}': 'data_offsets' must be [begin, end] of non-negative integers, got {}", p, name,
           json_snippet(*off));
    t.begin = (*off)[0].get<std::uint64_t>();
    t.end = (*off)[1].get<std::uint64_t>();
    if (t.end < t.begin)
      fail("{}: tensor '{}': data_offsets [{}, {}] end before they begin", p, name, t.begin, t.end);
    const std::uint64_t esize = dtype_size(t.dtype);
    if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / esize || numel * esize != t.end - t.begin)
      fail("{}: tensor '{}': dtype {} x shape {} needs {} bytes, but data_offsets [{}, {}] span {} bytes", p,
           name, dtype_name(t.dtype), shape_str(t.shape), overflow ? std::string("too many") : std::to_string(numel * esize),
           t.begin, t.end, t.end - t.begin);
    if (t.end > data_size)
      fail("{}: tensor '{}': bytes {}..{} (data_offsets [{}, {}]) run past the end of the file ({} bytes)", p, name,
           f.data_start_ + t.begin, f.data_start_ + t.end, t.begin, t.end, size);
    f.tensors_.emplace(name, std::move(t));
  }

  // Overlapping tensors would alias each other's data: a corrupt or malicious file.
  for (const auto& [name, t] : f.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  // Sorted by begin, each non-empty tensor must start at or after the furthest end seen so far
  // (empty tensors occupy no bytes and may sit anywhere).
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo* b : by_offset) {
    if (b->begin == b->end) continue;
    if (furthest && b->begin < furthest->end)
      fail("{}: byte {}: tensors '{}' (data_offsets [{}, {}]) and '{}' ([{}, {}]) overlap", p,
           f.data_start_ + b->begin, furthest->name, furthest->begin, furthest->end, b->name, b->begin, b->end);
    if (!furthest || b->end > furthest->end) furthest = b;
  }
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: no tensor named '{}'", path_.string(), name);
  return it->second;
}

const std::byte* SafetensorsFile::data(const std::string& name) const {
  const auto& t = info(name);
  return static_cast<const std::byte*>(map_) + data_start_ + t.begin;
}

void SafetensorsFile::to_float(const std::string& name, float* out) const {
  const auto& t = info(name);
  const std::byte* src = data(name);
  const auto n = static_cast<std::size_t>(t.numel());
  switch (t.dtype) {
    case StDtype::F32:
      std::memcpy(out, src, n * 4);
      break;
    case StDtype::F16:
      for (std::size_t i = 0; i < n; ++i) out[i] = half_to_float(load_le<std::uint16_t>(src + 2 * i));
      break;
    case StDtype::BF16:
      // bfloat16 is the top half of a float32.
      for (std::size_t i = 0; i < n; ++i)
        out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(load_le<std::uint16_t>(src + 2 * i)) << 16);
      break;
    case StDtype::F64:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<double>(src + 8 * i));
      break;
    default:
      fail("{}: tensor '{}': dtype {} is not a floating-point type (expected F32, F16, BF16 or F64)",
           path_.string(), name, dtype_name(t.dtype));
  }
}

std::vector<float> SafetensorsFile::to_float(const std::string& name) const {
  std::vector<float> out(static_cast<std::size_t>(info(name).numel()));
  to_float(name, out.data());
  return out;
}

std::vector<std::int64_t> SafetensorsFile::to_int64(const std::string& name) const {
  const auto& t = info(name);
  const std::byte* src = data(name);
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<std::int64_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case StDtype::I64: out[i] = load_le<std::int64_t>(src + 8 * i); break;
      case StDtype::I32: out[i] = load_le<std::int32_t>(src + 4 * i); break;
      case StDtype::I16: out[i] = load_le<std::int16_t>(src + 2 * i); break;
      case StDtype::I8: out[i] = load_le<std::int8_t>(src + i); break;
      case StDtype::U64: {
        const auto v = load_le<std::uint64_t>(src + 8 * i);
        if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          fail("{}: tensor '{}': element {} = {} does not fit in int64", path_.string(), name, i, v);
        out[i] = static_cast<std::int64_t>(v);
        break;
      }
      case StDtype::U32: out[i] = load_le<std::uint32_t>(src + 4 * i); break;
      case StDtype::U16: out[i] = load_le<std::uint16_t>(src + 2 * i); break;
      case StDtype::U8:
      case StDtype::BOOL: out[i] = load_le<std::uint8_t>(src + i); break;
      default:
        fail("{}: tensor '{}': dtype {} is not an integer type", path_.string(), name, dtype_name(t.dtype));
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------- writer

void write_safetensors(const fs::path& path, const std::vector<TensorToWrite>& tensors, const nlohmann::json& metadata) {
  // nlohmann's default object type sorts keys, so the header order need not follow the data
  // order; data_offsets carry the layout.
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    std::uint64_t numel = 1;
    for (auto s : t.shape) numel *= static_cast<std::uint64_t>(s);
    const std::uint64_t bytes = numel * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Padding to 8 bytes keeps the data area aligned for readers that cast instead of copying.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');

  AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    const std::uint64_t len = text.size();
    char lenbytes[8];
    std::memcpy(lenbytes, &len, 8);
    f.write(lenbytes, 8);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : tensors) {
      std::uint64_t numel = 1;
      for (auto s : t.shape) numel *= static_cast<std::uint64_t>(s);
      f.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(numel * dtype_size(t.dtype)));
    }
    f.flush();
    if (!f) fail("{}: write failed", out.temp_path().string());
  }
  out.commit();
}

// ------------------------------------------------------------------------------------- checkpoint

namespace {

constexpr std::string_view kPrefix = "transformer.";

std::string canonical_name(const std::string& name) {
  if (name.starts_with(kPrefix)) return name.substr(kPrefix.size());
  return name;
}

// attn.bias / attn.masked_bias are the causal-mask buffers older HF versions saved with the
// weights; they are not parameters (and c_attn.bias does not match: it ends "_attn.bias").
bool is_buffer(const std::string& name) {
  return name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias") || name == "attn.bias" ||
         name == "attn.masked_bias";
}

}  // namespace

Checkpoint Checkpoint::open(const fs::path& model_dir) {
  Checkpoint c;
  c.dir_ = model_dir;
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) fail("{}: not a directory (expected a model directory)", model_dir.string());

  auto add_file = [&c](const fs::path& file) -> std::size_t {
    c.files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(file)));
    return c.files_.size() - 1;
  };
  auto add_entry = [&c](const std::string& stored, std::size_t file) {
    if (is_buffer(stored)) return;
    const std::string canon = canonical_name(stored);
    const auto [it, inserted] = c.entries_.emplace(canon, Entry{file, stored});
    if (!inserted)
      fail("{}: tensor '{}' appears twice (as '{}' in {} and as '{}' in {})", c.dir_.string(), canon,
           it->second.stored_name, c.files_[it->second.file]->path().filename().string(), stored,
           c.files_[file]->path().filename().string());
  };

  const fs::path single = model_dir / "model.safetensors";
  const fs::path index = model_dir / "model.safetensors.index.json";
  if (fs::exists(single, ec)) {
    const std::size_t fi = add_file(single);
    for (const auto& name : c.files_[fi]->names()) add_entry(name, fi);
  } else if (fs::exists(index, ec)) {
    nlohmann::json j;
    {
      std::ifstream in(index);
      if (!in) fail("{}: cannot open", index.string());
      try {
        j = nlohmann::json::parse(in);
      } catch (const nlohmann::json::parse_error& e) {
        fail("{}: byte {}: does not parse as JSON: {}", index.string(), e.byte, e.what());
      }
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("{}: expected an object with a 'weight_map' object (tensor name -> shard file)", index.string());
    std::map<std::string, std::size_t> shard_ids;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        fail("{}: weight_map['{}'] must be a file name, got {}", index.string(), it.key(), json_snippet(it.value()));
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..")
        fail("{}: weight_map['{}'] = '{}' is not a file name in the model directory", index.string(), it.key(), shard);
      auto sid = shard_ids.find(shard);
      if (sid == shard_ids.end()) {
        const fs::path sp = model_dir / shard;
        if (!fs::exists(sp, ec))
          fail("{}: shard file '{}' (holding tensor '{}') is missing from {}", index.string(), shard, it.key(),
               model_dir.string());
        sid = shard_ids.emplace(shard, add_file(sp)).first;
      }
      if (!c.files_[sid->second]->contains(it.key()))
        fail("{}: weight_map puts tensor '{}' in '{}', but that file has no such tensor", index.string(), it.key(),
             shard);
      add_entry(it.key(), sid->second);
    }
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported; "
         "convert pytorch_model.bin first)",
         model_dir.string());
  }
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

const Checkpoint::Entry* Checkpoint::lookup(const std::string& name) const {
  const auto it = entries_.find(canonical_name(name));
  return it == entries_.end() ? nullptr : &it->second;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  const Entry* e = lookup(name);
  return e ? &files_[e->file]->info(e->stored_name) : nullptr;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  const Entry* e = lookup(name);
  if (!e) fail("{}: checkpoint has no tensor '{}'", dir_.string(), name);
  return *files_[e->file];
}

void Checkpoint::to_float(const std::string& name, float* out) const {
  const Entry* e = lookup(name);
  if (!e) fail("{}: checkpoint has no tensor '{}'", dir_.string(), name);
  files_[e->file]->to_float(e->stored_name, out);
}

std::vector<float> Checkpoint::to_float(const std::string& name) const {
  const Entry* e = lookup(name);
  if (!e) fail("{}: checkpoint has no tensor '{}'", dir_.string(), name);
  return files_[e->file]->to_float(e->stored_name);
}

}  // namespace nexplain
