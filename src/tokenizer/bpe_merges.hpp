#pragma once
// The byte-pair-encoding merge table and the merge loop. A word (one pre-token) starts as one
// token per byte; the adjacent pair with the lowest merge rank is replaced by its merged token,
// the leftmost one when a pair occurs more than once, until no adjacent pair has a merge. This is
// the rule of GPT-2's encoder.py and of tiktoken; both agree on the published vocabulary.
#include <cstdint>
#include <vector>

namespace nexplain {

class BpeMerges {
 public:
  struct Merge {
    std::uint32_t rank;    // line order in the merges file: lower merges first
    std::uint32_t merged;  // token id of the concatenation
  };

  // Returns false when (left, right) already has a merge (the first one wins, as in GPT-2).
  bool add(std::uint32_t left, std::uint32_t right, std::uint32_t rank, std::uint32_t merged);
  const Merge* find(std::uint32_t left, std::uint32_t right) const;
  std::size_t size() const { return size_; }

  // Applies the merges to `ids` in place.
  void apply(std::vector<std::uint32_t>& ids) const;
  // The heap-based loop that apply() uses for long words, callable on any word so that tests
  // can check it against the simple loop.
  void apply_with_heap(std::vector<std::uint32_t>& ids) const {
    if (ids.size() >= 2) apply_large(ids);
  }

 private:
  // Open addressing, linear probing, keyed on the id pair packed into 64 bits: the merge loop
  // does one lookup per adjacent pair, so this table is the tokenizer's hottest data structure.
  struct Slot {
    std::uint64_t key;
    Merge value;
  };
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  std::size_t slot_of(std::uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void grow();
  void apply_small(std::vector<std::uint32_t>& ids) const;
  void apply_large(std::vector<std::uint32_t>& ids) const;

  std::vector<Slot> slots_;
  int shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace nexplain
