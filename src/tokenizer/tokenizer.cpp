#include "tokenizer/tokenizer.hpp"

namespace nexplain {

std::string Tokenizer::decode(std::span<const std::uint32_t> ids) const {
  std::string out;
  for (const std::uint32_t id : ids) out += token_bytes(id);
  return out;
}

}  // namespace nexplain
