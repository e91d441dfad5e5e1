#pragma once
// Token heatmaps: an excerpt as a line of tokens whose background shows the activation (green for
// positive, red for negative, opacity = |value| / scale), the maximum token outlined, the value on
// hover (title). Tokens are untrusted corpus text and are escaped (escape_token).
#include <string>

#include <nlohmann/json.hpp>

namespace nexplain::viewer {

// tokens: array of strings; values: array of numbers (null = undefined, drawn blank), same
// length (extra tokens or values are ignored); scale > 0 maps a value to full colour; mark: the
// index of the token to outline (-1: none). `label` is shown before the excerpt.
std::string render_heatmap(const nlohmann::json& tokens, const nlohmann::json& values, double scale, long mark,
                           const std::string& label);

}  // namespace nexplain::viewer
