#pragma once
// The hash that picks the random and quantile samples. It is a pure function of (seed, layer,
// neuron, excerpt id), so the sample does not depend on the order excerpts arrive in, the batch
// size or the number of ranks, and merge(a, b) can keep exactly the excerpts a single pass keeps.
// Everything here is constexpr on plain 64-bit integers (no library beyond <cstdint>) so CUDA
// device code can call it unchanged (nvcc --expt-relaxed-constexpr) and get the same bits.
// The definitions are normative: docs/REDUCTION.md repeats them.
#include <cstdint>

namespace nexplain {

// 2^64 / golden ratio; splitmix64's increment.
inline constexpr std::uint64_t kHashGolden = 0x9e3779b97f4a7c15ULL;
// Seed salts: quantile samples must be independent of the random sample (else the quantile bin
// of the random sample's excerpts would be over-represented), and the pre-pass subset of both.
inline constexpr std::uint64_t kQuantileSeedSalt = 0x9e3779b97f4a7c15ULL;
inline constexpr std::uint64_t kPrepassSeedSalt = 0xc2b2ae3d27d4eb4fULL;

// splitmix64's finaliser (Steele, Lea, Flood 2014): a bijection on 64 bits with full avalanche.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Chaining: start from the seed, then absorb one 64-bit word at a time. Each word is mixed on its
// own before it is xored in, so small consecutive inputs (neuron 0, 1, 2 ...) land far apart.
constexpr std::uint64_t hash_start(std::uint64_t seed) { return mix64(seed + kHashGolden); }
constexpr std::uint64_t hash_word(std::uint64_t x) { return mix64(x + kHashGolden); }
// hash_absorb(h, x) == hash_absorb_mixed(h, hash_word(x)): callers that hash many neurons
// against one excerpt id compute hash_word(id) once.
constexpr std::uint64_t hash_absorb_mixed(std::uint64_t h, std::uint64_t mixed_word) { return mix64(h ^ mixed_word); }
constexpr std::uint64_t hash_absorb(std::uint64_t h, std::uint64_t x) { return hash_absorb_mixed(h, hash_word(x)); }

// The per-neuron prefix: hash64(seed, layer, neuron, e) == hash_absorb(hash_prefix(seed, layer, neuron), e).
constexpr std::uint64_t hash_prefix(std::uint64_t seed, std::uint64_t layer, std::uint64_t neuron) {
  return hash_absorb(hash_absorb(hash_start(seed), layer), neuron);
}

// hash64(seed, layer, neuron, excerpt) = absorb(absorb(absorb(start(seed), layer), neuron), excerpt).
constexpr std::uint64_t hash64(std::uint64_t seed, std::uint64_t layer, std::uint64_t neuron, std::uint64_t excerpt) {
  return hash_absorb(hash_prefix(seed, layer, neuron), excerpt);
}

// Random-sample rank of an excerpt for a neuron (smaller = kept first).
constexpr std::uint64_t random_hash(std::uint64_t seed, std::uint64_t layer, std::uint64_t neuron, std::uint64_t excerpt) {
  return hash64(seed, layer, neuron, excerpt);
}
// Quantile-sample rank: the same function under a salted seed.
constexpr std::uint64_t quantile_hash(std::uint64_t seed, std::uint64_t layer, std::uint64_t neuron, std::uint64_t excerpt) {
  return hash64(seed ^ kQuantileSeedSalt, layer, neuron, excerpt);
}

// Whether an excerpt belongs to the histogram pre-pass subset: a hash of the excerpt id alone
// (not of the rank or position), so every rank count and order selects the same excerpts.
// u = (h >> 11) * 2^-53 is exact in double and uniform on [0, 1); selected iff u < rate.
// rate <= 0 selects nothing, rate >= 1 everything.
constexpr bool excerpt_in_prepass(std::uint64_t seed, std::uint64_t excerpt_id, double rate) {
  const std::uint64_t h = hash_absorb(hash_start(seed ^ kPrepassSeedSalt), excerpt_id);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) < rate;
}

}  // namespace nexplain
