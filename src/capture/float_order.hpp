#pragma once
// A total order on floats through their bit patterns. Top-K ranks excerpts by their maximum
// activation; comparing 32-bit keys instead of floats gives a strict weak order even for NaN and
// signed zeros (so sorting, merging and the CUDA backend can never disagree), and for every
// other pair of values it is the numeric order. Constexpr on integers only: device-callable.
#include <cstdint>
#include <cstring>

namespace nexplain {

// The IEEE-754 bit pattern of a float (memcpy: the portable, aliasing-safe type pun).
inline std::uint32_t float_bits(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

// Monotone map float bits -> uint32: a < b numerically (finite, non-zero-pair) iff key(a) < key(b).
// -0.0 sorts just below +0.0; +NaN above +inf, -NaN below -inf.
constexpr std::uint32_t float_order_key(std::uint32_t bits) {
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Top-K rank of an excerpt maximum: ascending rank = descending value, so every bounded sample
// list (top-K, random, quantile) is kept sorted the same way, by (rank asc, excerpt id asc).
constexpr std::uint64_t topk_rank(std::uint32_t max_bits) { return ~float_order_key(max_bits); }

}  // namespace nexplain
