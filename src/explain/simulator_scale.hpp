#pragma once
// The simulator's activation scale. The simulators read a prediction at ONE token position (the
// expected value over the alternatives "0".."10" there, logprob_parse.hpp), so every value of
// the scale must be a single token of the simulator model. "10" is one token for GPT-2/GPT-4
// style vocabularies and Llama 3 (digits in groups of up to three), but two ("1" "0") for
// tokenizers that split digits one by one (Qwen2, Llama 2, Mistral): on those a 0..10 scale can
// never put weight on 10. The scale is then 0..9 instead: the prompts say "0 to 9", the few-shot
// values are rescaled (round(v * 9 / 10)) and the parsers read 0..9.
#include <string>

namespace nexplain {

class HfTokenizer;

inline constexpr int kDefaultScaleMax = 10;

// The largest M <= 10 such that each value 0..M, written as in the simulator prompts (after a
// tab, before a newline: "\t10\n"), is one token of `tok` (a token whose text, whitespace
// trimmed, is the number). Error when not even "0".."9" are single tokens.
int detect_scale_max(const HfTokenizer& tok, const std::string& source);

// A few-shot value on the 0..10 scale put on 0..scale_max: round(v * scale_max / 10).
int rescale_value(int v, int scale_max);

}  // namespace nexplain
