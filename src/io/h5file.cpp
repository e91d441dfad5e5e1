#include "io/h5file.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace nexplain::h5 {

namespace {

// The innermost message of HDF5's error stack, for error messages users can act on.
herr_t walk_cb(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err && err->desc) *out = err->desc;
  return 0;
}

std::string hdf5_reason() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? "HDF5 error" : msg;
}

Handle open_object(hid_t file, const std::string& object, const std::string& path) {
  hid_t id = H5Oopen(file, object.c_str(), H5P_DEFAULT);
  if (id < 0) fail("{}: no object '{}' ({})", path, object, hdf5_reason());
  return Handle(id, H5Oclose);
}

void write_attr(hid_t obj, const std::string& key, hid_t type, const void* value, const std::string& path) {
  if (H5Aexists(obj, key.c_str()) > 0) H5Adelete(obj, key.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, key.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr || H5Awrite(attr.get(), type, value) < 0) fail("{}: cannot write attribute '{}' ({})", path, key, hdf5_reason());
}

void write_string_attr(hid_t obj, const std::string& key, const std::string& value, const std::string& path) {
  // Variable-length UTF-8: h5py reads it as str (fixed-length strings come back as bytes).
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  const char* ptr = value.c_str();
  write_attr(obj, key, type.get(), &ptr, path);
}

Handle open_attr(hid_t obj, const std::string& key, const std::string& path) {
  if (H5Aexists(obj, key.c_str()) <= 0) fail("{}: missing attribute '{}'", path, key);
  return Handle(H5Aopen(obj, key.c_str(), H5P_DEFAULT), H5Aclose);
}

}  // namespace

void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// ------------------------------------------------------------------ Dataset

std::vector<hsize_t> Dataset::shape() const {
  Handle space(H5Dget_space(h_.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

void Dataset::extend_rows(std::uint64_t new_rows) {
  auto dims = shape();
  dims[0] = new_rows;
  if (H5Dset_extent(h_.get(), dims.data()) < 0) fail("{}: cannot extend dataset '{}' ({})", file_, name_, hdf5_reason());
}

void Dataset::write_rows_raw(std::uint64_t row0, std::uint64_t rows, hid_t type, const void* data) {
  auto dims = shape();
  Handle fspace(H5Dget_space(h_.get()), H5Sclose);
  if (dims.empty()) {  // scalar dataset
    if (H5Dwrite(h_.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) fail("{}: cannot write '{}' ({})", file_, name_, hdf5_reason());
    return;
  }
  if (row0 + rows > dims[0]) fail("{}: write past the end of dataset '{}' (rows {}..{} of {})", file_, name_, row0, row0 + rows, dims[0]);
  if (rows == 0) return;
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = row0;
  count[0] = rows;
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle mspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  if (H5Dwrite(h_.get(), type, mspace.get(), fspace.get(), H5P_DEFAULT, data) < 0)
    fail("{}: cannot write rows {}..{} of '{}' ({})", file_, row0, row0 + rows, name_, hdf5_reason());
}

void Dataset::read_rows_raw(std::uint64_t row0, std::uint64_t rows, hid_t type, void* out) const {
  auto dims = shape();
  if (dims.empty()) {
    if (H5Dread(h_.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) fail("{}: cannot read '{}' ({})", file_, name_, hdf5_reason());
    return;
  }
  if (row0 + rows > dims[0]) fail("{}: read past the end of dataset '{}' (rows {}..{} of {})", file_, name_, row0, row0 + rows, dims[0]);
  if (rows == 0) return;
  Handle fspace(H5Dget_space(h_.get()), H5Sclose);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = row0;
  count[0] = rows;
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle mspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  if (H5Dread(h_.get(), type, mspace.get(), fspace.get(), H5P_DEFAULT, out) < 0)
    fail("{}: cannot read rows {}..{} of '{}' ({})", file_, row0, row0 + rows, name_, hdf5_reason());
}

std::vector<std::uint8_t> Dataset::read_raw_bytes() const {
  Handle type(H5Dget_type(h_.get()), H5Tclose);
  std::size_t n = H5Tget_size(type.get());
  for (auto d : shape()) n *= d;
  std::vector<std::uint8_t> out(n);
  if (n && H5Dread(h_.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail("{}: cannot read '{}' ({})", file_, name_, hdf5_reason());
  return out;
}

void Dataset::set_attr_string(const std::string& key, const std::string& value) { write_string_attr(h_.get(), key, value, file_); }
void Dataset::set_attr_int(const std::string& key, std::int64_t value) { write_attr(h_.get(), key, H5T_NATIVE_INT64, &value, file_); }

// ------------------------------------------------------------------ File

File File::create(const std::filesystem::path& path) {
  silence_hdf5_errors();
  File f;
  f.path_ = path.string();
  hid_t id = H5Fcreate(f.path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) fail("{}: cannot create HDF5 file ({})", f.path_, hdf5_reason());
  f.h_ = Handle(id, H5Fclose);
  return f;
}

File File::open_read(const std::filesystem::path& path) {
  silence_hdf5_errors();
  File f;
  f.path_ = path.string();
  if (!std::filesystem::exists(path)) fail("{}: no such file", f.path_);
  if (H5Fis_hdf5(f.path_.c_str()) <= 0) fail("{}: not an HDF5 file", f.path_);
  hid_t id = H5Fopen(f.path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) fail("{}: cannot open HDF5 file ({})", f.path_, hdf5_reason());
  f.h_ = Handle(id, H5Fclose);
  return f;
}

File File::open_rw(const std::filesystem::path& path) {
  silence_hdf5_errors();
  File f;
  f.path_ = path.string();
  hid_t id = H5Fopen(f.path_.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (id < 0) fail("{}: cannot open HDF5 file for writing ({})", f.path_, hdf5_reason());
  f.h_ = Handle(id, H5Fclose);
  return f;
}

void File::flush() {
  if (H5Fflush(h_.get(), H5F_SCOPE_GLOBAL) < 0) fail("{}: cannot write HDF5 data to disk ({})", path_, hdf5_reason());
}

void File::close() {
  if (!h_) return;
  flush();
  if (H5Fclose(h_.release()) < 0) fail("{}: cannot close HDF5 file ({})", path_, hdf5_reason());
}

void File::create_group(const std::string& name) {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle g(H5Gcreate2(h_.get(), name.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g) fail("{}: cannot create group '{}' ({})", path_, name, hdf5_reason());
}

bool File::exists(const std::string& name) const {
  // Check each path component: H5Lexists fails on a missing intermediate group.
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    const auto next = name.find('/', pos + 1);
    partial = name.substr(0, next);
    if (!partial.empty() && partial != "/" && H5Lexists(h_.get(), partial.c_str(), H5P_DEFAULT) <= 0) return false;
    pos = next;
  }
  return true;
}

namespace {
// HDF5 1.12 versioned the object-info struct; both APIs are in use on clusters.
#if H5_VERSION_GE(1, 12, 0)
using ObjectInfo = H5O_info2_t;
#else
using ObjectInfo = H5O_info_t;
#endif
herr_t visit_cb(hid_t, const char* name, const ObjectInfo* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> File::list_datasets() const {
  std::vector<std::string> names;
#if H5_VERSION_GE(1, 12, 0)
  H5Ovisit3(h_.get(), H5_INDEX_NAME, H5_ITER_INC, visit_cb, &names, H5O_INFO_BASIC);
#else
  H5Ovisit(h_.get(), H5_INDEX_NAME, H5_ITER_INC, visit_cb, &names);
#endif
  std::sort(names.begin(), names.end());
  return names;
}

Dataset File::create_dataset_raw(const std::string& name, const std::vector<hsize_t>& shape, hid_t type, const DatasetOptions& opt) {
  std::vector<hsize_t> maxdims = shape;
  if (opt.unlimited_rows && !maxdims.empty()) maxdims[0] = H5S_UNLIMITED;
  Handle space(shape.empty() ? H5Screate(H5S_SCALAR)
                             : H5Screate_simple(static_cast<int>(shape.size()), shape.data(), maxdims.data()),
               H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  // No modification times in the object headers: they would make two files of the same data
  // differ byte for byte (records written by one process and by MPI ranks are compared whole).
  H5Pset_obj_track_times(dcpl.get(), false);
  std::size_t elements = 1;
  for (auto d : shape) elements *= d;
  // A zero-sized fixed dimension cannot be chunked (a chunk may not exceed it): such datasets
  // (e.g. no quantile boundaries) are stored contiguous, which holds nothing anyway.
  bool chunked = !opt.chunk.empty() && !shape.empty() && (elements > 0 || opt.unlimited_rows);
  if (chunked) {
    std::vector<hsize_t> chunk = opt.chunk;
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      // A chunk may not exceed a fixed dimension, and no chunk dimension may be 0.
      if (!(opt.unlimited_rows && i == 0)) chunk[i] = std::min(chunk[i], std::max<hsize_t>(shape[i], 1));
      chunk[i] = std::max<hsize_t>(chunk[i], 1);
    }
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    if (opt.deflate > 0) {
      H5Pset_shuffle(dcpl.get());
      H5Pset_deflate(dcpl.get(), static_cast<unsigned>(opt.deflate));
    }
  }
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  hid_t id = H5Dcreate2(h_.get(), name.c_str(), type, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT);
  if (id < 0) fail("{}: cannot create dataset '{}' ({})", path_, name, hdf5_reason());
  return Dataset(Handle(id, H5Dclose), path_, name);
}

Dataset File::open_dataset(const std::string& name) const {
  if (!exists(name)) fail("{}: missing dataset '{}'", path_, name);
  hid_t id = H5Dopen2(h_.get(), name.c_str(), H5P_DEFAULT);
  if (id < 0) fail("{}: cannot open dataset '{}' ({})", path_, name, hdf5_reason());
  return Dataset(Handle(id, H5Dclose), path_, name);
}

void File::set_attr_string(const std::string& key, const std::string& value, const std::string& object) {
  auto obj = open_object(h_.get(), object, path_);
  write_string_attr(obj.get(), key, value, path_);
}

void File::set_attr_int(const std::string& key, std::int64_t value, const std::string& object) {
  auto obj = open_object(h_.get(), object, path_);
  write_attr(obj.get(), key, H5T_NATIVE_INT64, &value, path_);
}

void File::set_attr_double(const std::string& key, double value, const std::string& object) {
  auto obj = open_object(h_.get(), object, path_);
  write_attr(obj.get(), key, H5T_NATIVE_DOUBLE, &value, path_);
}

bool File::has_attr(const std::string& key, const std::string& object) const {
  if (!exists(object)) return false;
  auto obj = open_object(h_.get(), object, path_);
  return H5Aexists(obj.get(), key.c_str()) > 0;
}

std::string File::attr_string(const std::string& key, const std::string& object) const {
  auto obj = open_object(h_.get(), object, path_);
  auto attr = open_attr(obj.get(), key, path_);
  Handle ftype(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_STRING) fail("{}: attribute '{}' is not a string", path_, key);
  if (H5Tis_variable_str(ftype.get()) > 0) {
    char* s = nullptr;
    Handle mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));  // no ASCII<->UTF-8 conversion path exists
    if (H5Aread(attr.get(), mtype.get(), &s) < 0) fail("{}: cannot read attribute '{}' ({})", path_, key, hdf5_reason());
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  const std::size_t n = H5Tget_size(ftype.get());
  std::string out(n, '\0');
  H5Aread(attr.get(), ftype.get(), out.data());
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

std::int64_t File::attr_int(const std::string& key, const std::string& object) const {
  auto obj = open_object(h_.get(), object, path_);
  auto attr = open_attr(obj.get(), key, path_);
  std::int64_t v = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0) fail("{}: attribute '{}' is not an integer", path_, key);
  return v;
}

double File::attr_double(const std::string& key, const std::string& object) const {
  auto obj = open_object(h_.get(), object, path_);
  auto attr = open_attr(obj.get(), key, path_);
  double v = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v) < 0) fail("{}: attribute '{}' is not a number", path_, key);
  return v;
}

}  // namespace nexplain::h5
