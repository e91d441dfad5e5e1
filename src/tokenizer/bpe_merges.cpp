#include "tokenizer/bpe_merges.hpp"

#include <bit>
#include <functional>
#include <limits>
#include <queue>

namespace nexplain {

namespace {
constexpr std::uint64_t pack(std::uint32_t a, std::uint32_t b) { return (std::uint64_t{a} << 32) | b; }
// Words up to this many bytes use the simple quadratic loop, which is fastest for the short
// words that make up almost all text; longer ones (a megabyte of digits is one pre-token) use
// a heap so that the cost stays O(n log n).
constexpr std::size_t kSmallWord = 128;
constexpr std::uint64_t kNoMerge = std::numeric_limits<std::uint64_t>::max();
}  // namespace

void BpeMerges::grow() {
  std::vector<Slot> old = std::move(slots_);
  const std::size_t cap = old.empty() ? 1024 : old.size() * 2;
  slots_.assign(cap, Slot{kEmpty, {}});
  shift_ = 64 - std::countr_zero(cap);
  for (const Slot& s : old) {
    if (s.key == kEmpty) continue;
    std::size_t i = slot_of(s.key);
    while (slots_[i].key != kEmpty) i = (i + 1) & (cap - 1);
    slots_[i] = s;
  }
}

bool BpeMerges::add(std::uint32_t left, std::uint32_t right, std::uint32_t rank, std::uint32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) grow();  // load factor <= 1/2 keeps probes short
  const std::uint64_t key = pack(left, right);
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = slot_of(key);
  for (; slots_[i].key != kEmpty; i = (i + 1) & mask)
    if (slots_[i].key == key) return false;
  slots_[i] = Slot{key, Merge{rank, merged}};
  ++size_;
  return true;
}

const BpeMerges::Merge* BpeMerges::find(std::uint32_t left, std::uint32_t right) const {
  if (slots_.empty()) return nullptr;
  const std::uint64_t key = pack(left, right);
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = slot_of(key);; i = (i + 1) & mask) {
    if (slots_[i].key == key) return &slots_[i].value;
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

void BpeMerges::apply(std::vector<std::uint32_t>& ids) const {
  if (ids.size() < 2) return;
  if (ids.size() <= kSmallWord) apply_small(ids);
  else apply_large(ids);
}

void BpeMerges::apply_small(std::vector<std::uint32_t>& ids) const {
  // pair[i] describes (ids[i], ids[i+1]) as rank << 32 | merged id, so that one comparison
  // orders by rank; equal values are the same pair, and the strict < keeps the leftmost.
  std::uint64_t pair[kSmallWord];
  auto describe = [&](std::size_t i) {
    const Merge* m = find(ids[i], ids[i + 1]);
    return m ? (std::uint64_t{m->rank} << 32) | m->merged : kNoMerge;
  };
  std::size_t n = ids.size();
  for (std::size_t i = 0; i + 1 < n; ++i) pair[i] = describe(i);
  while (n > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < n; ++i)
      if (pair[i] < pair[best]) best = i;
    if (pair[best] == kNoMerge) break;
    ids[best] = static_cast<std::uint32_t>(pair[best]);
    for (std::size_t i = best + 1; i + 1 < n; ++i) {
      ids[i] = ids[i + 1];
      pair[i] = pair[i + 1];
    }
    --n;
    if (best + 1 < n) pair[best] = describe(best);
    if (best > 0) pair[best - 1] = describe(best - 1);
  }
  ids.resize(n);
}

void BpeMerges::apply_large(std::vector<std::uint32_t>& ids) const {
  // Symbols form a doubly linked list over the original positions; the heap holds candidate
  // pairs ordered by (rank, left position), so the lowest rank and then the leftmost goes
  // first, exactly as in apply_small. Entries made stale by an earlier merge are skipped.
  const std::size_t n = ids.size();
  constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
  std::vector<std::uint32_t> prev(n), next(n);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = i == 0 ? kNone : static_cast<std::uint32_t>(i - 1);
    next[i] = i + 1 == n ? kNone : static_cast<std::uint32_t>(i + 1);
  }
  struct Candidate {
    std::uint32_t rank, left, left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](std::uint32_t left) {
    if (left == kNone || next[left] == kNone) return;
    const std::uint32_t right = next[left];
    if (const Merge* m = find(ids[left], ids[right])) heap.push({m->rank, left, ids[left], ids[right]});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::uint32_t>(i));
  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.left] || ids[c.left] != c.left_id) continue;
    const std::uint32_t right = next[c.left];
    if (right == kNone || ids[right] != c.right_id) continue;
    ids[c.left] = find(c.left_id, c.right_id)->merged;
    alive[right] = false;
    next[c.left] = next[right];
    if (next[right] != kNone) prev[next[right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  std::size_t out = 0;
  for (std::uint32_t i = 0; i != kNone; i = next[i]) ids[out++] = ids[i];
  ids.resize(out);
}

}  // namespace nexplain
