#include "explain/simulator_scale.hpp"

#include <cmath>

#include "core/error.hpp"
#include "explain/logprob_parse.hpp"
#include "tokenizer/hf_tokenizer.hpp"

namespace nexplain {

int detect_scale_max(const HfTokenizer& tok, const std::string& source) {
  auto single_token = [&](int v) {
    std::string text = "\t";  // as in a prompt line: token, tab, value, newline
    text += std::to_string(v);
    text += '\n';
    for (const auto id : tok.encode(text))
      if (activation_token_value(tok.token_bytes(id)) == v) return true;
    return false;
  };
  for (int v = 0; v <= 9; ++v)
    if (!single_token(v))
      fail("{}: the simulator's tokenizer does not write the value {} as one token; no activation scale fits its "
           "logprobs (use simulator_kind = \"no_logprobs\")",
           source, v);
  return single_token(10) ? 10 : 9;
}

int rescale_value(int v, int scale_max) {
  return static_cast<int>(std::lround(static_cast<double>(v) * scale_max / kDefaultScaleMax));
}

}  // namespace nexplain
