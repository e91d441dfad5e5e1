#pragma once
// Escaping for HTML pages. Corpus tokens and explanations are untrusted text: a corpus may hold
// "<script>", quotes, "</span>", control characters or broken UTF-8, and every byte of it must
// reach the reader as text. Everything the pages show from data goes through these functions.
#include <string>
#include <string_view>

namespace nexplain::viewer {

// Text for element content and quoted attribute values: & < > " ' become entities, C0 control
// characters and DEL (other than tab and newline) become the visible U+2400 "control picture"
// symbols (a raw control character is invisible and some break copy/paste), and invalid UTF-8
// bytes become U+FFFD. The result is valid UTF-8 with no markup characters left.
std::string escape_html(std::string_view text);

// A token as shown inside a heatmap: as escape_html, plus visible marks for whitespace a reader
// would otherwise miss: a newline is shown as U+21B5 (the line break is not reproduced, the
// heatmap stays one flowing line), a tab as U+2192.
std::string escape_token(std::string_view token);

// Percent-encoding of a query parameter value (RFC 3986 unreserved characters kept).
std::string url_encode(std::string_view text);
// The inverse, with '+' as space (form submissions); Error on a malformed %XX escape.
std::string url_decode(std::string_view text);

}  // namespace nexplain::viewer
