#include "io/sequences.hpp"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/error.hpp"
#include "model/thread_pool.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

// Deflate level 1 without the shuffle filter: token ids repeat as whole 2-byte patterns, which
// deflate finds in unshuffled data (measured on the shared corpora: 0.62 of raw size at level 1
// unshuffled, 0.68 at level 4 shuffled, and 1.7x faster), and speed matters because deflate
// costs about as much CPU as tokenizing.
constexpr int kDeflateLevel = 1;

// Chunks are written as raw little-endian bytes (H5Dwrite_chunk does no conversion).
static_assert(std::endian::native == std::endian::little, "direct chunk writes assume a little-endian host");

// What HDF5's deflate filter makes of one chunk: a zlib stream. Doing it ourselves lets chunks
// be compressed in parallel and written with H5Dwrite_chunk; HDF5 reads them back through the
// filter declared on the dataset.
std::vector<unsigned char> deflate_chunk(const unsigned char* in, std::size_t bytes) {
  uLongf size = compressBound(static_cast<uLong>(bytes));
  std::vector<unsigned char> out(size);
  if (compress2(out.data(), &size, in, static_cast<uLong>(bytes), kDeflateLevel) != Z_OK)
    fail("zlib: cannot compress a {}-byte chunk of tokens", bytes);
  out.resize(size);
  return out;
}

// /tokens [0, T], growable, chunked, deflate only (h5::File's datasets always add shuffle).
h5::Dataset create_tokens_dataset(const h5::File& file, bool wide, hsize_t chunk_rows, hsize_t T) {
  const hsize_t dims[2] = {0, T}, maxdims[2] = {H5S_UNLIMITED, T}, chunk[2] = {chunk_rows, T};
  h5::Handle space(H5Screate_simple(2, dims, maxdims), H5Sclose);
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.get(), 2, chunk);
  H5Pset_deflate(dcpl.get(), kDeflateLevel);
  const hid_t type = wide ? H5T_STD_U32LE : H5T_STD_U16LE;
  const hid_t id = H5Dcreate2(file.id(), "/tokens", type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT);
  if (id < 0) fail("{}: cannot create dataset /tokens", file.path());
  return h5::Dataset(h5::Handle(id, H5Dclose), file.path(), "/tokens");
}

}  // namespace

SequencesWriter::SequencesWriter(const fs::path& path, const SequencesInfo& info) : info_(info) {
  if (info_.seq_len < 1) fail("{}: sequence length must be at least 1, got {}", path.string(), info_.seq_len);
  if (info_.vocab_size == 0) fail("{}: vocabulary size must be positive", path.string());
  out_ = std::make_unique<AtomicOutput>(path);
  wide_ = info_.vocab_size > 65536;
  const std::size_t row_bytes = static_cast<std::size_t>(info_.seq_len) * (wide_ ? 4 : 2);
  // About 128 KiB per chunk at T=64 (1024 rows); fewer rows for long windows, so that reading
  // one excerpt never decompresses more than ~1 MiB.
  rows_per_write_ = std::clamp<std::size_t>((std::size_t{1} << 20) / row_bytes, 1, 1024);
  file_ = h5::File::create(out_->temp_path());
  tokens_ = create_tokens_dataset(file_, wide_, rows_per_write_, static_cast<hsize_t>(info_.seq_len));
}

SequencesWriter::~SequencesWriter() {
  // Not finished: close HDF5 before AtomicOutput's destructor removes the temporary.
  tokens_ = h5::Dataset();
  try {
    file_.close();
  } catch (const Error&) {
    // Unfinished: the temporary is removed next, so a failed close loses nothing.
  }
}

void SequencesWriter::append(const std::uint32_t* ids, std::size_t n) {
  if (finished_) fail("{}: append after finish", out_->target().string());
  for (std::size_t i = 0; i < n; ++i)
    if (ids[i] >= info_.vocab_size)
      fail("{}: token id {} is outside the vocabulary (size {})", out_->target().string(), ids[i], info_.vocab_size);
  pending_.insert(pending_.end(), ids, ids + n);
  tokens_total_ += n;
  // With a pool, wait for enough whole chunks to keep every thread busy compressing.
  const std::size_t chunks = pool_ ? std::max<std::size_t>(16, 4 * static_cast<std::size_t>(pool_->size())) : 1;
  if (pending_.size() >= chunks * rows_per_write_ * static_cast<std::size_t>(info_.seq_len)) flush_rows(false);
}

void SequencesWriter::flush_rows(bool all) {
  const std::size_t T = static_cast<std::size_t>(info_.seq_len);
  const std::size_t rows = pending_.size() / T;
  const std::size_t chunks = rows / rows_per_write_;
  const std::size_t tail_rows = all ? rows - chunks * rows_per_write_ : 0;
  if (chunks == 0 && tail_rows == 0) return;
  const std::size_t n = (chunks * rows_per_write_ + tail_rows) * T;
  std::vector<std::uint16_t> narrow;
  const unsigned char* data = reinterpret_cast<const unsigned char*>(pending_.data());
  if (!wide_) {
    narrow.assign(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    data = reinterpret_cast<const unsigned char*>(narrow.data());
  }
  write_whole_chunks(data, chunks);
  if (tail_rows > 0) {
    // The last, partial chunk goes through HDF5's own filters (chunk alignment ends here).
    const std::size_t done = chunks * rows_per_write_ * T;
    if (wide_) tokens_.append_rows(tail_rows, pending_.data() + done);
    else tokens_.append_rows(tail_rows, narrow.data() + done);
    rows_written_ += tail_rows;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
}

void SequencesWriter::write_whole_chunks(const unsigned char* data, std::size_t chunks) {
  if (chunks == 0) return;
  const std::size_t elem = wide_ ? 4 : 2;
  const std::size_t per_chunk = rows_per_write_ * static_cast<std::size_t>(info_.seq_len);
  const std::size_t rows = chunks * rows_per_write_;
  // Plain write of rows [first_chunk * rows_per_write_, rows): HDF5 applies the filters itself.
  auto write_plain = [&](std::size_t first_chunk) {
    const std::uint64_t row0 = rows_written_ + first_chunk * rows_per_write_;
    const std::uint64_t n = rows - first_chunk * rows_per_write_;
    const unsigned char* p = data + first_chunk * per_chunk * elem;
    if (wide_) tokens_.write_rows(row0, n, reinterpret_cast<const std::uint32_t*>(p));
    else tokens_.write_rows(row0, n, reinterpret_cast<const std::uint16_t*>(p));
  };
  tokens_.extend_rows(rows_written_ + rows);
  if (!direct_chunks_) {
    write_plain(0);
    rows_written_ += rows;
    return;
  }
  std::vector<std::vector<unsigned char>> packed(chunks);
  auto compress = [&](std::int64_t b, std::int64_t e, int) {
    for (auto k = static_cast<std::size_t>(b); k < static_cast<std::size_t>(e); ++k)
      packed[k] = deflate_chunk(data + k * per_chunk * elem, per_chunk * elem);
  };
  if (pool_) pool_->parallel_for(static_cast<std::int64_t>(chunks), compress);
  else compress(0, static_cast<std::int64_t>(chunks), 0);
  for (std::size_t k = 0; k < chunks; ++k) {
    const hsize_t offset[2] = {rows_written_ + k * rows_per_write_, 0};
    if (H5Dwrite_chunk(tokens_.id(), H5P_DEFAULT, 0, offset, packed[k].size(), packed[k].data()) < 0) {
      // Some HDF5 builds refuse direct chunk writes (e.g. some parallel configurations): from
      // here on HDF5 compresses, serially.
      H5Eclear2(H5E_DEFAULT);
      spdlog::debug("{}: H5Dwrite_chunk unavailable, writing through HDF5's filters", out_->target().string());
      direct_chunks_ = false;
      write_plain(k);
      break;
    }
  }
  rows_written_ += rows;
}

void SequencesWriter::finish(const nlohmann::json& provenance) {
  if (finished_) return;
  flush_rows(true);
  pending_.clear();  // the final partial window is dropped (see docs/TOKENIZER.md)
  file_.set_attr_string("format", kSequencesFormat);
  file_.set_attr_int("format_version", kSequencesFormatVersion);
  file_.set_attr_int("seq_len", info_.seq_len);
  file_.set_attr_int("n_sequences", static_cast<std::int64_t>(sequences()));
  file_.set_attr_int("vocab_size", info_.vocab_size);
  file_.set_attr_int("eot_id", info_.eot_id);
  file_.set_attr_string("tokenizer_sha256", info_.tokenizer_sha256);
  file_.set_attr_string("provenance", provenance.dump());
  tokens_ = h5::Dataset();
  file_.close();
  out_->commit();
  finished_ = true;
}

void SequencesReader::open(const fs::path& path) {
  path_ = path;
  file_ = h5::File::open_read(path);
  const std::string p = path.string();
  if (!file_.has_attr("format") || file_.attr_string("format") != kSequencesFormat)
    fail("{}: not a nexplain sequences file (root attribute format is not \"{}\"; make one with `nexplain tokenize`)", p,
         kSequencesFormat);
  const auto version = file_.attr_int("format_version");
  if (version != kSequencesFormatVersion)
    fail("{}: sequences format_version {} is not supported (this build reads version {})", p, version,
         kSequencesFormatVersion);
  tokens_ = file_.open_dataset("/tokens");
  const auto shape = tokens_.shape();
  const auto seq_len = file_.attr_int("seq_len");
  if (shape.size() != 2 || seq_len < 1 || shape[1] != static_cast<hsize_t>(seq_len))
    fail("{}: /tokens has shape [{}], expected [N, {}] (seq_len attribute)", p, fmt::join(shape, ", "), seq_len);
  const auto n = file_.attr_int("n_sequences");
  if (n < 0 || static_cast<hsize_t>(n) != shape[0])
    fail("{}: attribute n_sequences = {} but /tokens has {} rows", p, n, shape[0]);
  seq_len_ = static_cast<int>(seq_len);
  n_ = shape[0];
  vocab_size_ = static_cast<std::uint32_t>(file_.attr_int("vocab_size"));
  eot_id_ = static_cast<std::uint32_t>(file_.attr_int("eot_id"));
  tokenizer_sha256_ = file_.attr_string("tokenizer_sha256");
  const std::string prov = file_.attr_string("provenance");
  try {
    provenance_ = nlohmann::json::parse(prov);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: attribute provenance is not valid JSON: {}", p, e.what());
  }
}

void SequencesReader::read(std::uint64_t first, std::uint64_t count, std::uint32_t* out) const {
  if (first > n_ || count > n_ - first)
    fail("{}: rows {}..{} requested, but the file has {} sequences", path_.string(), first, first + count, n_);
  tokens_.read_rows(first, count, out);  // HDF5 widens uint16 to uint32
}

}  // namespace nexplain
