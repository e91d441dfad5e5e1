#pragma once
// A neuron's records divided into the splits of the method (DESIGN.md "Explanation, simulation,
// scoring"): the explainer sees only `train`; scores are computed on `valid` (top, then random);
// calibration and test are kept apart for later use (calibrated simulators, held-out reports).
//
// Top excerpts (sorted by max activation, descending) interleave with stride 4 so that every
// split gets a share of the strongest and of the weaker top excerpts:
//   train = top[0,4,8,...]  calibration = top[1,5,...]  valid = top[2,6,...]  test = top[3,7,...]
// Random excerpts (sorted by sampling hash, i.e. in random order) interleave with stride 3:
//   calibration = random[0,3,...]  valid = random[1,4,...]  test = random[2,5,...]
// There is no random train split: the explainer is shown only what the neuron fires on most.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "capture/neuron_record.hpp"
#include "explain/activation_format.hpp"

namespace nexplain {

class Tokenizer;
class RecordsFile;

// One excerpt of a split: its id in the sequences file, token ids and the neuron's T activations.
struct SplitExcerpt {
  std::uint64_t excerpt_id = 0;
  std::vector<std::uint32_t> tokens;
  std::vector<float> acts;
};

struct NeuronSplits {
  std::uint32_t layer = 0;
  std::uint32_t neuron = 0;
  std::vector<SplitExcerpt> train;            // top only
  std::vector<SplitExcerpt> calibration_top;
  std::vector<SplitExcerpt> valid_top;
  std::vector<SplitExcerpt> test_top;
  std::vector<SplitExcerpt> calibration_random;
  std::vector<SplitExcerpt> valid_random;
  std::vector<SplitExcerpt> test_random;
};

// The record indices that go into split `which` (0-based) of `n_splits` when `n` records are
// interleaved with that stride: which, which + n_splits, ... At most `per_split` of them
// (0 = no cap), always the first ones, i.e. the strongest top excerpts.
std::vector<std::size_t> interleaved_indices(std::size_t n, std::size_t n_splits, std::size_t which,
                                             std::size_t per_split = 0);

// Looks up the token ids of an excerpt (RecordsFile::excerpt_tokens, or a test's table).
using ExcerptTokenLookup = std::function<std::vector<std::uint32_t>(std::uint64_t excerpt_id)>;

// Splits one neuron's records. per_split caps every split (0 = as many as the records allow).
// Throws Error when an excerpt's token count differs from its activation count.
NeuronSplits split_records(const NeuronRecord& record, const ExcerptTokenLookup& tokens, std::size_t per_split = 0);

// Reads neuron (layer, n) from a records file and splits it.
NeuronSplits load_splits(const RecordsFile& file, int layer, std::uint32_t neuron, std::size_t per_split = 0);

// Token ids -> the strings an LLM (or the offline baseline) sees. A byte-level token (GPT-2's or a
// tokenizer.json's) can be part of a multi-byte UTF-8 character; such bytes become U+FFFD so that every string is valid UTF-8 and
// can travel in a JSON request. Same id -> same string, so matching on strings stays consistent.
std::string display_token(const Tokenizer& tokenizer, std::uint32_t id);
std::vector<std::string> display_tokens(const Tokenizer& tokenizer, std::span<const std::uint32_t> ids);
// Any bytes -> valid UTF-8 (each invalid byte becomes U+FFFD).
std::string sanitize_utf8(std::string_view bytes);

// Split excerpts as shown to explainers and simulators (decoded tokens + raw activations).
std::vector<ActivationExcerpt> to_activation_excerpts(std::span<const SplitExcerpt> excerpts,
                                                      const Tokenizer& tokenizer);

}  // namespace nexplain
