#include "viewer/results_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace nexplain::viewer {

namespace {

double score_of(const nlohmann::json& scores, const char* name) {
  if (!scores.is_object()) return NAN;
  const auto it = scores.find(name);
  return it != scores.end() && it->is_number() ? it->get<double>() : NAN;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::uint64_t pack(std::uint32_t layer, std::uint32_t neuron) { return (std::uint64_t{layer} << 32) | neuron; }

double key_score(const IndexEntry& e, int k) { return k == 0 ? e.all : k == 1 ? e.top : e.random; }

// The "simulated" arrays (T predictions per scored excerpt) are most of a result line and the
// index needs none of them: they are cut out before parsing, which makes loading a large results
// file several times faster. `"simulated":[` cannot occur inside a JSON string (a quote there is
// always escaped), and the array's end is found by matching brackets outside strings.
std::string without_simulated(std::string_view line) {
  constexpr std::string_view kKey = "\"simulated\":[";
  const auto at = line.find(kKey);
  if (at == std::string_view::npos) return std::string(line);
  std::size_t i = at + kKey.size();
  int depth = 1;
  bool in_string = false;
  for (; i < line.size() && depth > 0; ++i) {
    const char c = line[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  if (depth != 0) return std::string(line);  // malformed: the parser reports it
  std::string out;
  out.reserve(at + kKey.size() + 1 + (line.size() - i));
  out.append(line.substr(0, at + kKey.size()));
  out += ']';
  out.append(line.substr(i));
  return out;
}

}  // namespace

IndexEntry index_entry_from_json_line(std::string_view line) {
  const std::string slim = without_simulated(line);
  auto j = nlohmann::json::parse(slim, nullptr, false);
  if (j.is_discarded()) throw Error("not valid JSON");
  if (j.is_object() && j.contains("key") && j.contains("value")) j = std::move(j["value"]);
  if (!j.is_object()) throw Error("not a JSON object");
  IndexEntry e;
  try {
    e.layer = j.at("layer").get<std::uint32_t>();
    e.neuron = j.at("neuron").get<std::uint32_t>();
    e.ok = j.at("status").get<std::string>() == "ok";
    e.explanation = j.value("explanation", "");
    e.error = j.value("error", "");
    const auto& s = j.contains("scores") ? j["scores"] : nlohmann::json();
    e.all = score_of(s, "all");
    e.top = score_of(s, "top");
    e.random = score_of(s, "random");
    if (j.contains("usage") && j["usage"].is_object()) {
      for (const auto& [stage, u] : j["usage"].items()) {
        if (!u.is_object()) continue;
        e.cost_usd += u.value("cost_usd", 0.0);
        e.prompt_tokens += u.value("prompt_tokens", std::uint64_t{0});
        e.completion_tokens += u.value("completion_tokens", std::uint64_t{0});
      }
    }
  } catch (const nlohmann::json::exception& ex) {
    throw Error(std::string("not a neuron result: ") + ex.what());
  }
  return e;
}

bool IndexBuilder::update() {
  std::ifstream in(file_, std::ios::binary);
  struct stat st {};
  if (!in || ::stat(file_.c_str(), &st) != 0) fail("{}: cannot open", file_.string());
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < consumed_ || static_cast<std::uint64_t>(st.st_ino) != inode_) {
    // A new file (results.jsonl is replaced atomically, by rename): start over.
    consumed_ = 0;
    line_no_ = 0;
    entries_.clear();
    where_.clear();
    inode_ = static_cast<std::uint64_t>(st.st_ino);
  }
  if (size == consumed_) return false;
  in.seekg(static_cast<std::streamoff>(consumed_));
  // Read in blocks: a results file of a large model is gigabytes (the simulated activations).
  constexpr std::uint64_t kBlock = 64u << 20;
  std::string buf;
  std::uint64_t base = consumed_;  // file offset of buf[0]
  bool any = false;
  for (;;) {
    const std::uint64_t want = std::min<std::uint64_t>(kBlock, size - (base + buf.size()));
    if (want == 0) break;
    const std::size_t old = buf.size();
    buf.resize(old + want);
    in.read(buf.data() + old, static_cast<std::streamsize>(want));
    buf.resize(old + static_cast<std::size_t>(in.gcount()));
    if (buf.size() == old) break;
    std::size_t pos = 0;
    for (;;) {
      const auto nl = buf.find('\n', pos);
      if (nl == std::string::npos) break;  // an unfinished last line waits for more (or the next look)
      ++line_no_;
      const std::string_view line(buf.data() + pos, nl - pos);
      const std::uint64_t offset = base + pos;
      pos = nl + 1;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      IndexEntry e;
      try {
        e = index_entry_from_json_line(line);
      } catch (const std::exception& ex) {
        fail("{}: line {}: {}", file_.string(), line_no_, ex.what());
      }
      e.offset = offset;
      e.length = static_cast<std::uint32_t>(line.size());
      const auto [it, inserted] = where_.try_emplace(pack(e.layer, e.neuron), entries_.size());
      if (inserted) entries_.push_back(std::move(e));
      else entries_[it->second] = std::move(e);  // a later journal line for the same neuron wins
      any = true;
    }
    base += pos;
    buf.erase(0, pos);
  }
  consumed_ = base;
  return any;
}

ResultsIndex::ResultsIndex(std::vector<IndexEntry> entries) : entries_(std::move(entries)) {
  std::sort(entries_.begin(), entries_.end(),
            [](const IndexEntry& a, const IndexEntry& b) { return pack(a.layer, a.neuron) < pack(b.layer, b.neuron); });
  for (std::size_t i = 1; i < entries_.size(); ++i)
    if (pack(entries_[i - 1].layer, entries_[i - 1].neuron) == pack(entries_[i].layer, entries_[i].neuron))
      fail("results: neuron {}/{} appears twice", entries_[i].layer, entries_[i].neuron);
  for (int k = 0; k < 3; ++k) {
    std::vector<std::uint32_t> defined, undefined;
    for (std::uint32_t i = 0; i < entries_.size(); ++i)
      (std::isnan(key_score(entries_[i], k)) ? undefined : defined).push_back(i);
    // Stable sorts over the (layer, neuron) order: ties keep that order in both directions.
    auto by = [&](bool desc) {
      auto v = defined;
      std::stable_sort(v.begin(), v.end(), [&](std::uint32_t a, std::uint32_t b) {
        const double x = key_score(entries_[a], k), y = key_score(entries_[b], k);
        return desc ? x > y : x < y;
      });
      v.insert(v.end(), undefined.begin(), undefined.end());
      return v;
    };
    asc_[k] = by(false);
    desc_[k] = by(true);
  }
  double sum = 0;
  for (const auto& e : entries_) {
    (e.ok ? totals_.ok : totals_.failed)++;
    if (e.ok && !std::isnan(e.all)) {
      ++totals_.scored;
      sum += e.all;
    }
    totals_.cost_usd += e.cost_usd;
    totals_.prompt_tokens += e.prompt_tokens;
    totals_.completion_tokens += e.completion_tokens;
  }
  totals_.mean_score = totals_.scored ? sum / static_cast<double>(totals_.scored) : NAN;
  search_start_.reserve(entries_.size() + 1);
  for (const auto& e : entries_) {
    search_start_.push_back(search_text_.size());
    search_text_ += ascii_lower(e.explanation);
    search_text_ += '\0';
    if (layers_.empty() || layers_.back() != e.layer) layers_.push_back(e.layer);
    col_layer_.push_back(e.layer);
    col_all_.push_back(e.all);
    col_ok_.push_back(e.ok ? 1 : 0);
  }
  search_start_.push_back(search_text_.size());
}

IndexPage ResultsIndex::query(const IndexQuery& q) const {
  IndexPage page;
  page.page = q.page;
  page.per_page = q.per_page;
  const std::string needle = ascii_lower(q.text);
  const std::size_t first = (q.page - 1) * q.per_page;
  // Text search first, as one pass over all explanations: the entries holding the text.
  std::vector<std::uint8_t> hit;
  if (!needle.empty()) {
    hit.assign(entries_.size(), 0);
    const char* base = search_text_.data();
    std::size_t pos = 0, i = 0;  // hits come in text order: entry i only ever moves forward
    while (pos < search_text_.size()) {
      const void* p = memmem(base + pos, search_text_.size() - pos, needle.data(), needle.size());
      if (!p) break;
      const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(p) - base);
      while (search_start_[i + 1] <= at) ++i;
      if (at + needle.size() < search_start_[i + 1]) {  // within entry i (not across its NUL)
        hit[i] = 1;
        pos = search_start_[i + 1];  // one hit per entry is enough
      } else {
        pos = at + 1;
      }
    }
  }
  auto matches = [&](std::size_t i) {
    if (q.layer && col_layer_[i] != static_cast<std::uint32_t>(*q.layer)) return false;
    if (q.status == StatusFilter::ok && !col_ok_[i]) return false;
    if (q.status == StatusFilter::failed && col_ok_[i]) return false;
    const double all = col_all_[i];
    if ((q.min_score || q.max_score) && std::isnan(all)) return false;
    if (q.min_score && all < *q.min_score) return false;
    if (q.max_score && all > *q.max_score) return false;
    if (!hit.empty() && !hit[i]) return false;
    return true;
  };
  auto visit = [&](std::size_t i) {
    if (!matches(i)) return;
    if (page.matched >= first && page.rows.size() < q.per_page) page.rows.push_back(&entries_[i]);
    ++page.matched;
  };
  const bool filtered = q.layer || q.min_score || q.max_score || !needle.empty() || q.status != StatusFilter::all;
  if (!filtered) {
    // Every entry matches: the page is a slice of the precomputed order.
    page.matched = entries_.size();
    for (std::size_t r = first; r < entries_.size() && page.rows.size() < q.per_page; ++r) {
      std::size_t i = r;
      if (q.sort == SortKey::neuron) i = q.descending ? entries_.size() - 1 - r : r;
      else {
        const int k = q.sort == SortKey::score ? 0 : q.sort == SortKey::top ? 1 : 2;
        i = (q.descending ? desc_[k] : asc_[k])[r];
      }
      page.rows.push_back(&entries_[i]);
    }
  } else if (q.sort == SortKey::neuron) {
    // A layer filter on the natural order needs only that layer's range.
    std::size_t lo = 0, hi = entries_.size();
    if (q.layer) {
      const auto l = static_cast<std::uint32_t>(*q.layer);
      lo = static_cast<std::size_t>(std::lower_bound(col_layer_.begin(), col_layer_.end(), l) - col_layer_.begin());
      hi = static_cast<std::size_t>(std::upper_bound(col_layer_.begin(), col_layer_.end(), l) - col_layer_.begin());
    }
    if (q.descending)
      for (std::size_t i = hi; i != lo;) visit(--i);
    else
      for (std::size_t i = lo; i != hi; ++i) visit(i);
  } else {
    const int k = q.sort == SortKey::score ? 0 : q.sort == SortKey::top ? 1 : 2;
    for (std::uint32_t i : q.descending ? desc_[k] : asc_[k]) visit(i);
  }
  page.pages = (page.matched + q.per_page - 1) / q.per_page;
  return page;
}

const IndexEntry* ResultsIndex::find(std::uint32_t layer, std::uint32_t neuron) const {
  const auto key = pack(layer, neuron);
  const auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                                   [](const IndexEntry& e, std::uint64_t k) { return pack(e.layer, e.neuron) < k; });
  return it != entries_.end() && pack(it->layer, it->neuron) == key ? &*it : nullptr;
}

const IndexEntry* ResultsIndex::previous(std::uint32_t layer, std::uint32_t neuron) const {
  const auto key = pack(layer, neuron);
  const auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                                   [](const IndexEntry& e, std::uint64_t k) { return pack(e.layer, e.neuron) < k; });
  return it == entries_.begin() ? nullptr : &*(it - 1);
}

const IndexEntry* ResultsIndex::next(std::uint32_t layer, std::uint32_t neuron) const {
  const auto key = pack(layer, neuron);
  const auto it = std::upper_bound(entries_.begin(), entries_.end(), key,
                                   [](std::uint64_t k, const IndexEntry& e) { return k < pack(e.layer, e.neuron); });
  return it == entries_.end() ? nullptr : &*it;
}


}  // namespace nexplain::viewer
