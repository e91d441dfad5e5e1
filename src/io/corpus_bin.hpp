#pragma once
// llm.c / nanoGPT token shards: a header of 256 little-endian int32 ([0] magic 20240520,
// [1] version 1, [2] number of tokens, the rest unused), then the tokens as little-endian
// uint16. The tokens are passed on as they are: llm.c's writers already put <|endoftext|>
// before every document, so a shard is one piece of the token stream, not one document.
#include <cstdint>

#include "io/corpus_reader.hpp"

namespace nexplain {

inline constexpr std::int32_t kBinShardMagic = 20240520;
inline constexpr std::int32_t kBinShardVersion = 1;
inline constexpr std::size_t kBinShardHeaderBytes = 256 * 4;

class BinSource : public CorpusSource {
 public:
  // Checks the header against the file size; throws Error naming the file and the position.
  BinSource(const std::filesystem::path& path, std::uint32_t vocab_size);
  bool next(CorpusPiece& piece) override;
  std::uint64_t tokens() const { return tokens_; }

 private:
  std::uint32_t vocab_size_;
  std::uint64_t tokens_ = 0;
  std::uint64_t done_ = 0;
};

}  // namespace nexplain
