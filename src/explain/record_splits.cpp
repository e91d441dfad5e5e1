#include "explain/record_splits.hpp"

#include "core/error.hpp"
#include "io/records_file.hpp"
#include "tokenizer/tokenizer.hpp"

namespace nexplain {

namespace {

constexpr std::size_t kTopSplits = 4;     // train, calibration, valid, test
constexpr std::size_t kRandomSplits = 3;  // calibration, valid, test

std::vector<SplitExcerpt> take(const std::vector<ExcerptRecord>& records, std::size_t n_splits, std::size_t which,
                               std::size_t per_split, const ExcerptTokenLookup& tokens, const NeuronRecord& owner) {
  std::vector<SplitExcerpt> out;
  for (std::size_t i : interleaved_indices(records.size(), n_splits, which, per_split)) {
    const auto& r = records[i];
    SplitExcerpt e;
    e.excerpt_id = r.excerpt_id;
    e.tokens = tokens(r.excerpt_id);
    e.acts = r.acts;
    if (e.tokens.size() != e.acts.size()) {
      fail("neuron L{}.N{}: excerpt {} has {} tokens but {} activations", owner.layer, owner.neuron, r.excerpt_id,
           e.tokens.size(), e.acts.size());
    }
    out.push_back(std::move(e));
  }
  return out;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF count as invalid, as in the Unicode standard).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) n = 3;
  else if (c == 0xED) n = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) n = 3;
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) n = 4, hi = 0x8F;
  else return 0;
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return n;
}

}  // namespace

std::vector<std::size_t> interleaved_indices(std::size_t n, std::size_t n_splits, std::size_t which,
                                             std::size_t per_split) {
  if (n_splits == 0 || which >= n_splits) fail("interleaved_indices: split {} of {} does not exist", which, n_splits);
  std::vector<std::size_t> out;
  for (std::size_t i = which; i < n && (per_split == 0 || out.size() < per_split); i += n_splits) out.push_back(i);
  return out;
}

NeuronSplits split_records(const NeuronRecord& record, const ExcerptTokenLookup& tokens, std::size_t per_split) {
  NeuronSplits s;
  s.layer = record.layer;
  s.neuron = record.neuron;
  s.train = take(record.top, kTopSplits, 0, per_split, tokens, record);
  s.calibration_top = take(record.top, kTopSplits, 1, per_split, tokens, record);
  s.valid_top = take(record.top, kTopSplits, 2, per_split, tokens, record);
  s.test_top = take(record.top, kTopSplits, 3, per_split, tokens, record);
  s.calibration_random = take(record.random, kRandomSplits, 0, per_split, tokens, record);
  s.valid_random = take(record.random, kRandomSplits, 1, per_split, tokens, record);
  s.test_random = take(record.random, kRandomSplits, 2, per_split, tokens, record);
  return s;
}

NeuronSplits load_splits(const RecordsFile& file, int layer, std::uint32_t neuron, std::size_t per_split) {
  const NeuronRecord record = file.neuron(layer, neuron);
  return split_records(record, [&](std::uint64_t id) { return file.excerpt_tokens(id); }, per_split);
}

std::string sanitize_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = utf8_sequence_length(bytes, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      ++i;
    } else {
      out.append(bytes.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string display_token(const Tokenizer& tokenizer, std::uint32_t id) {
  return sanitize_utf8(tokenizer.token_bytes(id));
}

std::vector<std::string> display_tokens(const Tokenizer& tokenizer, std::span<const std::uint32_t> ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (std::uint32_t id : ids) out.push_back(display_token(tokenizer, id));
  return out;
}

std::vector<ActivationExcerpt> to_activation_excerpts(std::span<const SplitExcerpt> excerpts,
                                                      const Tokenizer& tokenizer) {
  std::vector<ActivationExcerpt> out;
  out.reserve(excerpts.size());
  for (const auto& e : excerpts) out.push_back({display_tokens(tokenizer, e.tokens), e.acts});
  return out;
}

}  // namespace nexplain
