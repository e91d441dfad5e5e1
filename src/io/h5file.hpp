#pragma once
// A thin RAII layer over the HDF5 C API: just what nexplain's files need (create/open, typed
// chunked+compressed datasets written whole or by row ranges, scalar and string attributes).
// The C API is used directly (not the C++ one) because only it exists for parallel HDF5.
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace nexplain::h5 {

// Owns one hid_t and closes it with the right H5*close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = H5I_INVALID_HID;
  }
  // Gives the id up without closing it (the caller closes it and checks the result).
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// The HDF5 native type for a C++ scalar type.
template <typename T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int8_t>) return H5T_NATIVE_INT8;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return H5T_NATIVE_UINT8;
  else if constexpr (std::is_same_v<T, std::int16_t>) return H5T_NATIVE_INT16;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return H5T_NATIVE_UINT16;
  else if constexpr (std::is_same_v<T, std::int32_t>) return H5T_NATIVE_INT32;
  else if constexpr (std::is_same_v<T, std::uint32_t>) return H5T_NATIVE_UINT32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return H5T_NATIVE_INT64;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return H5T_NATIVE_UINT64;
  else static_assert(sizeof(T) == 0, "unsupported HDF5 element type");
}

struct DatasetOptions {
  std::vector<hsize_t> chunk;  // empty: contiguous (no compression possible)
  int deflate = 4;             // 0 = none; applied with the shuffle filter when chunked
  bool unlimited_rows = false; // first dimension may grow (append)
};

class File;

class Dataset {
 public:
  Dataset() = default;
  Dataset(Handle h, std::string path, std::string name) : h_(std::move(h)), file_(std::move(path)), name_(std::move(name)) {}
  std::vector<hsize_t> shape() const;
  const std::string& name() const { return name_; }
  hid_t id() const { return h_.get(); }

  // Writes/reads a block of rows [row0, row0+rows) of the first dimension (the rest whole).
  template <typename T>
  void write_rows(std::uint64_t row0, std::uint64_t rows, const T* data) { write_rows_raw(row0, rows, native_type<T>(), data); }
  template <typename T>
  void read_rows(std::uint64_t row0, std::uint64_t rows, T* out) const { read_rows_raw(row0, rows, native_type<T>(), out); }
  template <typename T>
  std::vector<T> read_all() const {
    std::size_t n = 1;
    auto s = shape();
    for (auto d : s) n *= d;
    std::vector<T> v(n);
    if (n) read_rows_raw(0, s.empty() ? 1 : s[0], native_type<T>(), v.data());
    return v;
  }
  // Appends rows (dataset created with unlimited_rows).
  template <typename T>
  void append_rows(std::uint64_t rows, const T* data) {
    const auto n = shape()[0];
    extend_rows(n + rows);
    write_rows(n, rows, data);
  }
  void extend_rows(std::uint64_t new_rows);
  // The stored bytes in the file's own element type (for byte-for-byte comparisons).
  std::vector<std::uint8_t> read_raw_bytes() const;

  void set_attr_string(const std::string& key, const std::string& value);
  void set_attr_int(const std::string& key, std::int64_t value);

 private:
  void write_rows_raw(std::uint64_t row0, std::uint64_t rows, hid_t type, const void* data);
  void read_rows_raw(std::uint64_t row0, std::uint64_t rows, hid_t type, void* out) const;

  Handle h_;
  std::string file_, name_;
};

class File {
 public:
  // Creates (truncating) or opens a file; errors name the path and HDF5's reason.
  static File create(const std::filesystem::path& path);
  static File open_read(const std::filesystem::path& path);
  static File open_rw(const std::filesystem::path& path);

  const std::string& path() const { return path_; }
  hid_t id() const { return h_.get(); }
  void flush();
  // Writes the metadata out and closes the file, failing (naming the file) when either fails --
  // where a full disk shows up -- instead of the destructor's silent close. Idempotent.
  void close();

  // Groups are created with their parents ("a/b/c").
  void create_group(const std::string& name);
  bool exists(const std::string& name) const;
  // Paths of every dataset in the file, sorted ("layers/0/topk_ids", ...).
  std::vector<std::string> list_datasets() const;

  template <typename T>
  Dataset create_dataset(const std::string& name, const std::vector<hsize_t>& shape, const DatasetOptions& opt = {}) {
    return create_dataset_raw(name, shape, native_type<T>(), opt);
  }
  // Convenience: create and write a whole dataset.
  template <typename T>
  Dataset write(const std::string& name, const std::vector<hsize_t>& shape, const T* data, const DatasetOptions& opt = {}) {
    auto ds = create_dataset<T>(name, shape, opt);
    if (!shape.empty() && shape[0] > 0) ds.write_rows(0, shape[0], data);
    else if (shape.empty()) ds.write_rows(0, 1, data);
    return ds;
  }
  Dataset open_dataset(const std::string& name) const;

  // Attributes on the root group (or on an object path given as `object`).
  void set_attr_string(const std::string& key, const std::string& value, const std::string& object = "/");
  void set_attr_int(const std::string& key, std::int64_t value, const std::string& object = "/");
  void set_attr_double(const std::string& key, double value, const std::string& object = "/");
  std::string attr_string(const std::string& key, const std::string& object = "/") const;
  std::int64_t attr_int(const std::string& key, const std::string& object = "/") const;
  double attr_double(const std::string& key, const std::string& object = "/") const;
  bool has_attr(const std::string& key, const std::string& object = "/") const;

 private:
  Dataset create_dataset_raw(const std::string& name, const std::vector<hsize_t>& shape, hid_t type, const DatasetOptions& opt);
  Handle h_;
  std::string path_;
};

// HDF5 prints its own error stack to stderr by default; nexplain reports errors itself.
void silence_hdf5_errors();

}  // namespace nexplain::h5
