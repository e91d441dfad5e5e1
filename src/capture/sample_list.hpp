#pragma once
// One bounded sample list (a neuron's top-K, its random sample, or one of its quantile bins)
// viewed inside the structure-of-arrays state. Every list keeps the `cap` smallest entries by
// (rank asc, excerpt id asc), where rank is topk_rank(max) for top-K and the hash otherwise. The
// kept set is a function of the data alone, so insertion order never matters: that is what makes
// batching, threading and merging exact. Internal to src/capture.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "capture/float_order.hpp"

namespace nexplain::capture_detail {

constexpr bool rank_before(std::uint64_t rank_a, std::uint64_t id_a, std::uint64_t rank_b, std::uint64_t id_b) {
  return rank_a < rank_b || (rank_a == rank_b && id_a < id_b);
}

// A new entry: its acts are gathered from src[t * stride], t < T (a column of the batch's
// activations, or a contiguous row of another state).
struct Candidate {
  std::uint64_t rank;
  std::uint64_t id;
  std::uint64_t hash;
  float max;
  const float* src;
  std::size_t stride;
};

struct SampleList {
  std::uint64_t* ids;
  float* max;
  std::uint64_t* hash;  // nullptr for top-K (rank derives from max)
  float* acts;          // [cap][T]
  std::uint32_t* count;
  std::uint32_t cap;
  std::uint32_t T;

  std::uint64_t rank(std::uint32_t i) const { return hash ? hash[i] : topk_rank(float_bits(max[i])); }

  // Whether an entry would enter the list as it is now (a cheap pre-filter: candidates that pass
  // may still be displaced by better ones in merge_sorted).
  bool admits(std::uint64_t rank_c, std::uint64_t id_c) const {
    if (*count < cap) return true;
    if (cap == 0) return false;
    return rank_before(rank_c, id_c, rank(cap - 1), ids[cap - 1]);
  }

  // Merges candidates c[0..nc) (sorted by (rank, id), ids disjoint from the list's) into the list,
  // keeping the first `cap`. Works back to front in place: an old entry only moves to a higher
  // slot and a slot is written only after its old entry has moved, so nothing is overwritten
  // before it is read.
  void merge_sorted(const Candidate* c, std::size_t nc) {
    const std::size_t n_old = *count;
    const std::size_t total = n_old + nc;
    const std::size_t keep = total < cap ? total : cap;
    std::size_t i = n_old, j = nc, k = total;
    while (j > 0) {  // once the candidates are used up the remaining old entries are in place
      --k;
      const bool take_old = i > 0 && rank_before(c[j - 1].rank, c[j - 1].id, rank(static_cast<std::uint32_t>(i - 1)), ids[i - 1]);
      if (take_old) {
        --i;
        if (k < keep) move_entry(i, k);
      } else {
        --j;
        if (k < keep) write_entry(k, c[j]);
      }
    }
    *count = static_cast<std::uint32_t>(keep);
  }

 private:
  void move_entry(std::size_t from, std::size_t to) {
    if (from == to) return;
    ids[to] = ids[from];
    max[to] = max[from];
    if (hash) hash[to] = hash[from];
    std::memcpy(acts + to * T, acts + from * T, sizeof(float) * T);  // to > from: disjoint blocks
  }
  void write_entry(std::size_t to, const Candidate& c) {
    ids[to] = c.id;
    max[to] = c.max;
    if (hash) hash[to] = c.hash;
    float* dst = acts + to * T;
    if (c.stride == 1) {
      std::memcpy(dst, c.src, sizeof(float) * T);
    } else {
      for (std::uint32_t t = 0; t < T; ++t) dst[t] = c.src[t * c.stride];
    }
  }
};

}  // namespace nexplain::capture_detail
