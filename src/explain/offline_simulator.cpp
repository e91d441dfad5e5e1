#include "explain/offline_simulator.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <regex>

namespace nexplain {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The loose form of a token: ASCII case and surrounding whitespace ignored. Empty for a
// whitespace-only token, which then has no loose form ("\n" must not match "\n\n").
std::string loose_key(std::string_view s) { return lower_ascii(trim(s)); }

// ---------------------------------------------------------------- quoting

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char* hex = "0123456789abcdef";
          out += "\\u00";
          out += hex[(c >> 4) & 0xF];
          out += hex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::optional<std::uint32_t> hex4(std::string_view s, std::size_t at) {
  if (at + 4 > s.size()) return std::nullopt;
  std::uint32_t v = 0;
  for (std::size_t k = at; k < at + 4; ++k) {
    const char c = s[k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= static_cast<std::uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') v |= static_cast<std::uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= static_cast<std::uint32_t>(c - 'A' + 10);
    else return std::nullopt;
  }
  return v;
}

constexpr std::string_view kOpenCurly = "\xE2\x80\x9C";   // U+201C
constexpr std::string_view kCloseCurly = "\xE2\x80\x9D";  // U+201D

struct Quoted {
  std::string text;
  std::size_t begin = 0, end = 0;  // span in the explanation, quotes included
};

// A quoted string starting at `at` (which holds an opening quote), or nullopt when unterminated.
std::optional<Quoted> read_quoted(std::string_view s, std::size_t at) {
  Quoted q;
  q.begin = at;
  if (s.substr(at).starts_with(kOpenCurly)) {
    const auto close = s.find(kCloseCurly, at + kOpenCurly.size());
    if (close == std::string_view::npos) return std::nullopt;
    q.text = std::string(s.substr(at + kOpenCurly.size(), close - at - kOpenCurly.size()));
    q.end = close + kCloseCurly.size();
    return q;
  }
  for (std::size_t i = at + 1; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '"') {
      q.end = i + 1;
      return q;
    }
    if (c != '\\' || i + 1 >= s.size()) {
      q.text += c;
      continue;
    }
    const char n = s[++i];
    switch (n) {
      case '"': q.text += '"'; break;
      case '\\': q.text += '\\'; break;
      case '/': q.text += '/'; break;
      case 'n': q.text += '\n'; break;
      case 't': q.text += '\t'; break;
      case 'r': q.text += '\r'; break;
      case 'b': q.text += '\b'; break;
      case 'f': q.text += '\f'; break;
      case 'u': {
        auto cp = hex4(s, i + 1);
        if (!cp) {
          q.text += "\\u";
          break;
        }
        i += 4;
        // A surrogate pair spells one code point above U+FFFF.
        if (*cp >= 0xD800 && *cp <= 0xDBFF && s.substr(i + 1, 2) == "\\u") {
          if (auto lo = hex4(s, i + 3); lo && *lo >= 0xDC00 && *lo <= 0xDFFF) {
            cp = 0x10000 + ((*cp - 0xD800) << 10) + (*lo - 0xDC00);
            i += 6;
          }
        }
        append_utf8(q.text, *cp);
        break;
      }
      default:  // not an escape we know: keep both characters as written
        q.text += '\\';
        q.text += n;
    }
  }
  return std::nullopt;
}

// "(exact, weak)" right after a quoted string; consumed only when every word is a modifier, so
// free text in parentheses ("(in a list)") stays free text.
struct Modifiers {
  bool exact = false, weak = false;
  std::size_t end = 0;  // where the text after the modifiers starts
};
Modifiers read_modifiers(std::string_view s, std::size_t at) {
  Modifiers m;
  m.end = at;
  std::size_t i = at;
  while (i < s.size() && s[i] == ' ') ++i;
  if (i >= s.size() || s[i] != '(') return m;
  const auto close = s.find(')', i);
  if (close == std::string_view::npos || close - i > 40) return m;
  const std::string inner = lower_ascii(s.substr(i + 1, close - i - 1));
  static const std::regex word("[a-z]+");
  bool any = false, exact = false, weak = false;
  for (auto it = std::sregex_iterator(inner.begin(), inner.end(), word); it != std::sregex_iterator(); ++it) {
    const std::string w = it->str();
    if (w == "exact" || w == "exactly") exact = true;
    else if (w == "weak" || w == "weakly") weak = true;
    else return m;
    any = true;
  }
  if (!any) return m;
  m.exact = exact;
  m.weak = weak;
  m.end = close + 1;
  return m;
}

bool is_context_connector(std::string_view gap) {
  const std::string g = lower_ascii(trim(gap));
  return g == "after" || g == "following" || g == "preceded by" || g == "when preceded by" || g == "right after" ||
         g == "when it follows" || g == "when after" || g == "directly after" || g == "immediately after";
}

std::string modifiers_text(const TokenClause& c) {
  if (c.exact && c.weak) return " (exact, weak)";
  if (c.exact) return " (exact)";
  if (c.weak) return " (weak)";
  return "";
}

void add_position(std::vector<PositionClause>& out, long a, long b) {
  constexpr long kMaxPosition = 1 << 20;
  if (a > b) std::swap(a, b);
  if (a < 0 || b > kMaxPosition) return;
  const PositionClause p{static_cast<int>(a), static_cast<int>(b)};
  if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
}

void parse_positions(const std::string& text, std::vector<PositionClause>& out) {
  static const std::regex range(R"(\bpositions?\s+(\d{1,7})(?:\s*(?:-|\xE2\x80\x93|to|through)\s*(\d{1,7}))?)",
                                std::regex::icase);
  static const std::regex first_n(R"(\bfirst\s+(\d{1,7})\s+tokens\b)", std::regex::icase);
  static const std::regex start(R"(\bfirst\s+token\b|\b(?:start|beginning)\s+of\s+the\s+excerpt\b)", std::regex::icase);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), range); it != std::sregex_iterator(); ++it) {
    const long a = std::stol((*it)[1].str());
    const long b = (*it)[2].matched ? std::stol((*it)[2].str()) : a;
    add_position(out, a, b);
  }
  for (auto it = std::sregex_iterator(text.begin(), text.end(), first_n); it != std::sregex_iterator(); ++it) {
    const long n = std::stol((*it)[1].str());
    if (n > 0) add_position(out, 0, n - 1);
  }
  // "the start of the excerpt" names position 0 unless an explicit clause already covers it (the
  // renderer writes it as a gloss after "positions 0-3").
  const bool covers_start = std::any_of(out.begin(), out.end(), [](const PositionClause& p) { return p.first == 0; });
  if (!covers_start && std::regex_search(text, start)) add_position(out, 0, 0);
}

}  // namespace

std::string render_offline_explanation(const OfflineExplanation& e) {
  std::vector<std::string> parts;
  std::vector<const TokenClause*> plain;
  for (const auto& c : e.tokens)
    if (!c.after) plain.push_back(&c);
  if (!plain.empty()) {
    std::string s = plain.size() == 1 ? "the token " : "the tokens ";
    for (std::size_t i = 0; i < plain.size(); ++i) {
      if (i > 0) s += i + 1 == plain.size() ? " and " : ", ";
      s += quote(plain[i]->token) + modifiers_text(*plain[i]);
    }
    parts.push_back(std::move(s));
  }
  for (const auto& c : e.tokens)
    if (c.after) parts.push_back(quote(c.token) + modifiers_text(c) + " after " + quote(*c.after));
  for (const auto& p : e.positions) {
    std::string s = p.first == p.last ? "the token at position " + std::to_string(p.first)
                                      : "the tokens at positions " + std::to_string(p.first) + "-" + std::to_string(p.last);
    if (p.first == 0) s += " (the start of the excerpt)";
    parts.push_back(std::move(s));
  }
  if (parts.empty()) return "nothing in particular";
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i > 0 ? "; " : "") + parts[i];
  return out;
}

OfflineExplanation parse_offline_explanation(std::string_view text) {
  struct Item {
    Quoted q;
    Modifiers m;
  };
  std::vector<Item> items;
  std::string blanked(text);  // the text with quoted strings and modifiers removed, for positions
  for (std::size_t i = 0; i < text.size();) {
    const bool opener = text[i] == '"' || text.substr(i).starts_with(kOpenCurly);
    if (!opener) {
      ++i;
      continue;
    }
    auto q = read_quoted(text, i);
    if (!q) break;  // an unterminated quote: the rest is not a token
    const Modifiers m = read_modifiers(text, q->end);
    Item it{std::move(*q), m};
    std::fill(blanked.begin() + static_cast<std::ptrdiff_t>(it.q.begin), blanked.begin() + static_cast<std::ptrdiff_t>(it.m.end), ' ');
    i = it.m.end;
    items.push_back(std::move(it));
  }
  OfflineExplanation e;
  for (std::size_t k = 0; k < items.size(); ++k) {
    TokenClause c;
    c.token = items[k].q.text;
    c.exact = items[k].m.exact;
    c.weak = items[k].m.weak;
    if (k + 1 < items.size()) {
      const auto gap = text.substr(items[k].m.end, items[k + 1].q.begin - items[k].m.end);
      if (is_context_connector(gap)) c.after = items[++k].q.text;
    }
    if (c.token.empty()) continue;  // "" names no token
    if (std::find(e.tokens.begin(), e.tokens.end(), c) == e.tokens.end()) e.tokens.push_back(std::move(c));
  }
  parse_positions(blanked, e.positions);
  return e;
}

double offline_token_match(std::string_view want, std::string_view token, bool exact_only) {
  if (want == token) return 1.0;
  if (exact_only) return 0.0;
  const std::string k = loose_key(want);
  return !k.empty() && k == loose_key(token) ? kOfflineLooseFactor : 0.0;
}

std::vector<double> predict_offline(const OfflineExplanation& e, const std::vector<std::string>& tokens) {
  std::vector<double> out(tokens.size(), 0.0);
  for (const auto& p : e.positions)
    for (std::size_t i = static_cast<std::size_t>(p.first); i < tokens.size() && i <= static_cast<std::size_t>(p.last); ++i)
      out[i] = kOfflineFull;
  for (const auto& c : e.tokens) {
    const double level = kOfflineFull * (c.weak ? kOfflineWeakFactor : 1.0);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      double m = offline_token_match(c.token, tokens[i], c.exact);
      if (m > 0.0 && c.after) m = std::min(m, i > 0 ? offline_token_match(*c.after, tokens[i - 1], c.exact) : 0.0);
      out[i] = std::max(out[i], m * level);
    }
  }
  return out;
}

std::vector<std::vector<double>> OfflineSimulator::simulate(const std::string& explanation,
                                                            const std::vector<std::vector<std::string>>& excerpts_tokens) {
  const OfflineExplanation e = parse_offline_explanation(explanation);
  std::vector<std::vector<double>> out;
  out.reserve(excerpts_tokens.size());
  for (const auto& t : excerpts_tokens) out.push_back(predict_offline(e, t));
  return out;
}

}  // namespace nexplain
