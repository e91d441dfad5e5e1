#pragma once
// Parsing of layer selections given on the command line: "all", "5", "0-11", "0-3,8,10-11".
#include <string>
#include <vector>

namespace nexplain {

// Ascending, de-duplicated layer indices; Error naming the text and the problem when a part is
// malformed or outside [0, n_layer).
std::vector<int> parse_layer_range(const std::string& text, int n_layer);

}  // namespace nexplain
