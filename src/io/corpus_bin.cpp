#include "io/corpus_bin.hpp"

#include <array>
#include <vector>

#include "core/error.hpp"

namespace nexplain {

namespace {

constexpr std::size_t kTokensPerPiece = 1u << 20;

std::uint32_t le32(const unsigned char* p) {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[3]} << 24);
}

}  // namespace

BinSource::BinSource(const std::filesystem::path& path, std::uint32_t vocab_size)
    : CorpusSource(path, CorpusFormat::Bin), vocab_size_(vocab_size) {
  const std::string p = path.string();
  std::array<unsigned char, kBinShardHeaderBytes> h{};
  const std::size_t got = read_raw(reinterpret_cast<char*>(h.data()), h.size());
  const auto magic = static_cast<std::int32_t>(le32(h.data()));
  if (got < 4 || magic != kBinShardMagic)
    fail("{}: byte 0: not an llm.c token shard: magic {} expected {} (int32 little-endian)", p,
         got < 4 ? std::string("missing") : std::to_string(magic), kBinShardMagic);
  if (got < h.size())
    fail("{}: byte {}: file ends inside the {}-byte header ({} bytes)", p, got, kBinShardHeaderBytes, file_size());
  const auto version = static_cast<std::int32_t>(le32(h.data() + 4));
  if (version != kBinShardVersion)
    fail("{}: byte 4: shard version {}, expected {} (uint16 tokens)", p, version, kBinShardVersion);
  const auto count = static_cast<std::int32_t>(le32(h.data() + 8));
  const std::uint64_t payload = file_size() - kBinShardHeaderBytes;
  if (payload % 2 != 0)
    fail("{}: payload after the {}-byte header is {} bytes, an odd length: not a whole number of uint16 tokens", p,
         kBinShardHeaderBytes, payload);
  if (count < 0 || static_cast<std::uint64_t>(count) * 2 != payload)
    fail("{}: byte 8: header says {} tokens ({} bytes), but the payload after the {}-byte header is {} bytes ({} tokens)", p,
         count, static_cast<std::int64_t>(count) * 2, kBinShardHeaderBytes, payload, payload / 2);
  tokens_ = static_cast<std::uint64_t>(count);
}

bool BinSource::next(CorpusPiece& piece) {
  if (done_ == tokens_) {
    char probe;
    read_raw(&probe, 1);  // reaches the end of the file, which finalizes the digest
    return false;
  }
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kTokensPerPiece, tokens_ - done_));
  std::vector<unsigned char> raw(n * 2);
  const std::size_t got = read_raw(reinterpret_cast<char*>(raw.data()), raw.size());
  if (got != raw.size())
    fail("{}: byte {}: file ended early (it shrank while being read?)", path().string(), bytes_read());
  piece.new_document = done_ == 0;
  piece.pretokenized = true;
  piece.text.clear();
  piece.ids.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t id = std::uint32_t{raw[2 * i]} | (std::uint32_t{raw[2 * i + 1]} << 8);
    if (id >= vocab_size_)
      fail("{}: byte {}: token id {} is outside the vocabulary (size {})", path().string(),
           kBinShardHeaderBytes + 2 * (done_ + i), id, vocab_size_);
    piece.ids[i] = id;
  }
  piece.bytes = (done_ == 0 ? kBinShardHeaderBytes : 0) + got;
  done_ += n;
  return true;
}

}  // namespace nexplain
