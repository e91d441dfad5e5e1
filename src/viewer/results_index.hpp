#pragma once
// The index of a run's explained neurons: one small entry per neuron (key, status, scores,
// explanation, where its full line is), built from results.jsonl or, while a sweep is still
// running, from its journal.jsonl. Queries filter, sort and page on the server, so a page of
// GPT-2 XL's 307,200 neurons is a scan of small entries, never a giant page: the sort orders are
// computed once per load, a query walks one of them and keeps only the requested page.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "viewer/index_query.hpp"

namespace nexplain::viewer {

struct IndexEntry {
  std::uint32_t layer = 0;
  std::uint32_t neuron = 0;
  bool ok = false;
  double all = 0, top = 0, random = 0;  // NaN when undefined
  double cost_usd = 0;                  // explain + simulate
  std::uint64_t prompt_tokens = 0, completion_tokens = 0;
  std::string explanation;
  std::string error;  // why it failed; empty when ok
  std::uint64_t offset = 0;  // the neuron's full JSON line in the source file
  std::uint32_t length = 0;
};

struct IndexPage {
  std::size_t matched = 0;  // entries passing the filters
  std::size_t page = 1, per_page = 100, pages = 0;
  std::vector<const IndexEntry*> rows;
};

// Reads results.jsonl lines (the result object) or journal.jsonl lines ({"key", "value"}; a
// later line for a key wins) incrementally: a journal only grows, so a running sweep is followed
// by reading what was appended since the last look. A last line without its newline is a line
// being written (or torn by a crash) and is left for the next look.
class IndexBuilder {
 public:
  explicit IndexBuilder(std::filesystem::path file) : file_(std::move(file)) {}
  // Reads what was appended since the last call; returns whether anything new was read.
  // Error naming the file and line for a line that is not a result.
  bool update();
  const std::filesystem::path& file() const { return file_; }
  std::uint64_t bytes_read() const { return consumed_; }
  const std::vector<IndexEntry>& entries() const { return entries_; }  // in first-seen order

 private:
  std::filesystem::path file_;
  std::uint64_t consumed_ = 0;
  std::uint64_t line_no_ = 0;
  std::uint64_t inode_ = 0;
  std::vector<IndexEntry> entries_;
  std::unordered_map<std::uint64_t, std::size_t> where_;  // (layer << 32 | neuron) -> entry
};

// One result line -> its index entry (offset and length left 0). Error when required fields are
// missing or mistyped.
IndexEntry index_entry_from_json_line(std::string_view line);

class ResultsIndex {
 public:
  ResultsIndex() = default;
  explicit ResultsIndex(std::vector<IndexEntry> entries);  // any order; one entry per neuron

  std::size_t size() const { return entries_.size(); }
  const std::vector<IndexEntry>& entries() const { return entries_; }  // by (layer, neuron)
  IndexPage query(const IndexQuery& q) const;
  const IndexEntry* find(std::uint32_t layer, std::uint32_t neuron) const;
  // The explained neurons before and after (layer, neuron) in (layer, neuron) order; nullptr at
  // the ends. (layer, neuron) need not be in the index itself.
  const IndexEntry* previous(std::uint32_t layer, std::uint32_t neuron) const;
  const IndexEntry* next(std::uint32_t layer, std::uint32_t neuron) const;
  const std::vector<std::uint32_t>& layers() const { return layers_; }

  struct Totals {
    std::size_t ok = 0, failed = 0, scored = 0;  // scored: ok with a defined score
    double mean_score = 0;                       // over scored
    double cost_usd = 0;
    std::uint64_t prompt_tokens = 0, completion_tokens = 0;
  };
  const Totals& totals() const { return totals_; }

 private:
  std::vector<IndexEntry> entries_;  // sorted by (layer, neuron)
  // Per score key, ascending and descending orders (entry indices), undefined scores last in
  // both; ties by (layer, neuron). Precomputed so that a sorted page costs no sort.
  std::vector<std::uint32_t> asc_[3], desc_[3];
  // Every explanation, ASCII-lowercased, in entry order, each followed by a NUL: a text search is
  // one memmem (SIMD) pass over contiguous memory instead of a string per entry.
  std::string search_text_;
  std::vector<std::size_t> search_start_;  // entry i's text starts here; one extra end offset
  std::vector<std::uint32_t> layers_;
  // The filtered fields again as compact columns in entry order: a sorted walk jumps around the
  // entries, and these stay in cache where the entries (with their strings) would not.
  std::vector<std::uint32_t> col_layer_;
  std::vector<double> col_all_;
  std::vector<std::uint8_t> col_ok_;
  Totals totals_;
};

}  // namespace nexplain::viewer
