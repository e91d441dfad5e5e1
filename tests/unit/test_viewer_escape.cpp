// The viewer's escaping: corpus text and explanations are untrusted and must reach a page as text.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "viewer/heatmap.hpp"
#include "viewer/html_escape.hpp"

using namespace nexplain::viewer;

TEST(ViewerEscape, MarkupBecomesEntities) {
  EXPECT_EQ(escape_html("<script>alert(\"x\")</script>"), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
  EXPECT_EQ(escape_html("a & b 'c'"), "a &amp; b &#39;c&#39;");
  EXPECT_EQ(escape_html("</span><img src=x onerror=alert(1)>"), "&lt;/span&gt;&lt;img src=x onerror=alert(1)&gt;");
  EXPECT_EQ(escape_html("&lt;"), "&amp;lt;");  // already-escaped text is shown as written
}

TEST(ViewerEscape, ControlCharactersAndBrokenUtf8BecomeVisible) {
  EXPECT_EQ(escape_html(std::string("a\x01z", 3)), "a\xE2\x90\x81z");    // U+2401
  EXPECT_EQ(escape_html(std::string("\0", 1)), "\xE2\x90\x80");          // U+2400, never a raw NUL
  EXPECT_EQ(escape_html("\x7F"), "\xE2\x90\xA1");                       // DEL -> U+2421
  EXPECT_EQ(escape_html("tab\tnl\n"), "tab\tnl\n");                     // text keeps its whitespace
  EXPECT_EQ(escape_html("\xC3\xA9t\xC3\xA9"), "\xC3\xA9t\xC3\xA9");     // valid UTF-8 unchanged
  EXPECT_EQ(escape_html("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");       // truncated sequence
  EXPECT_EQ(escape_html("\xC0\xBC"), "\xEF\xBF\xBD\xEF\xBF\xBD");       // overlong '<' is no '<'
  EXPECT_EQ(escape_html("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST(ViewerEscape, TokensShowWhitespace) {
  EXPECT_EQ(escape_token("\n"), "\xE2\x86\xB5");
  EXPECT_EQ(escape_token("\t<b>"), "\xE2\x86\x92&lt;b&gt;");
  EXPECT_EQ(escape_token(" the"), " the");
}

TEST(ViewerEscape, UrlCoding) {
  EXPECT_EQ(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
  EXPECT_EQ(url_decode("a+b%26c%3dd"), "a b&c=d");
  EXPECT_EQ(url_decode(url_encode("<script>\"'%")), "<script>\"'%");
  EXPECT_THROW(url_decode("%4"), nexplain::Error);
  EXPECT_THROW(url_decode("%zz"), nexplain::Error);
}

TEST(ViewerHeatmap, EscapesTokensMarksMaxAndShowsValues) {
  const nlohmann::json tokens = {"<script>", " \"quoted\"", "</span>", "\x01"};
  const nlohmann::json values = {0.5, 2.0, -1.0, nullptr};
  const auto html = render_heatmap(tokens, values, 2.0, 1, "top");
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_EQ(html.find("</span><"), html.find("</span><span"));  // every </span> closes one of ours
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;/span&gt;"), std::string::npos);
  EXPECT_NE(html.find("&quot;quoted&quot;"), std::string::npos);
  EXPECT_NE(html.find("class=\"tok max\" style=\"background-color:rgba(0,170,60,1.000)\" title=\"2\""), std::string::npos) << html;
  EXPECT_NE(html.find("rgba(0,170,60,0.250)\" title=\"0.5\""), std::string::npos) << html;
  EXPECT_NE(html.find("rgba(220,40,40,0.500)\" title=\"-1\""), std::string::npos) << html;
  EXPECT_NE(html.find("title=\"undefined\""), std::string::npos);
  // Four token spans plus the label.
  std::size_t spans = 0;
  for (auto p = html.find("<span class=\"tok"); p != std::string::npos; p = html.find("<span class=\"tok", p + 1)) ++spans;
  EXPECT_EQ(spans, 4u);
}
