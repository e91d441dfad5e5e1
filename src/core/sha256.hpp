#pragma once
// SHA-256 (FIPS 180-4), streaming. Provenance records name every input and tokenizer file by
// its digest, so a sequences file can be traced back to the exact bytes it was made from.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace nexplain {

class Sha256 {
 public:
  // Uses the x86 SHA instructions when the CPU has them (and NEXPLAIN_NO_SHA_EXTENSIONS is
  // unset); `allow_cpu_extensions = false` forces the portable code (tests compare the two).
  explicit Sha256(bool allow_cpu_extensions = true);
  void update(const void* data, std::size_t size);
  // Finishes the hash and returns it as 64 lowercase hex digits. The object is reset afterwards,
  // so it can hash a new message.
  std::string hex_digest();

 private:
  void compress(const unsigned char* blocks, std::size_t count);  // count whole 64-byte blocks
  void reset();

  std::array<std::uint32_t, 8> state_{};
  std::array<unsigned char, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
  bool accelerated_ = false;
};

// Whether this CPU runs SHA-256 with its SHA instructions.
bool sha256_cpu_extensions_available();

// Digest of a whole file, read in blocks. Throws Error naming the file when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace nexplain
