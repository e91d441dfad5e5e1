#include "viewer/pages.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

#include "viewer/heatmap.hpp"
#include "viewer/html_escape.hpp"

namespace nexplain::viewer {

using json = nlohmann::json;

namespace {

constexpr const char* kStyle = R"CSS(
body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;background:#fff}
nav{margin-bottom:1em}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#a00}.muted{color:#777}
.excerpt{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.9;margin:.2em 0;padding:.2em;border-bottom:1px solid #eee}
.excerpt .label{display:inline-block;min-width:6em;color:#555;font-family:system-ui,sans-serif}
.tok{border-radius:2px;padding:0 1px}.tok.max{outline:2px solid #063;font-weight:bold}
.pair{margin:.6em 0;padding:.3em;border:1px solid #ddd}
.explanation{font-size:1.2em;background:#f6f8fa;padding:.5em;border-left:4px solid #396}
form.filters input{width:7em}form.filters input[name=q]{width:16em}
.bar{background:#eee;width:30em;height:1em}.bar div{background:#396;height:1em}
svg rect.b{fill:#396}svg rect.b:hover{fill:#063}
)CSS";

std::string page(const std::string& title, const std::string& body, const Links& links, int refresh = 0) {
  std::string out = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  // Nothing is loaded from anywhere: no script at all, styles inline.
  out += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n";
  if (refresh > 0) out += fmt::format("<meta http-equiv=\"refresh\" content=\"{}\">\n", refresh);
  out += "<title>" + escape_html(title) + "</title>\n<style>" + std::string(kStyle) + "</style></head><body>\n";
  out += "<nav><a href=\"" + escape_html(links.home()) + "\">nexplain viewer</a></nav>\n";
  out += body;
  out += "\n</body></html>\n";
  return out;
}

std::string a(const std::string& href, const std::string& text_html, const std::string& attrs = "") {
  return "<a href=\"" + escape_html(href) + "\"" + attrs + ">" + text_html + "</a>";
}

std::string fnum(const json& v, const char* spec = "{:.3f}") {
  return v.is_number() ? fmt::format(fmt::runtime(spec), v.get<double>()) : std::string("&ndash;");
}

std::string neuron_key(const json& j) {
  return fmt::format("{}/{}", j.value("layer", 0u), j.value("neuron", 0u));
}

std::string run_nav(std::size_t run, const std::string& name, const Links& links) {
  std::string out = "<nav>run <b>" + escape_html(name) + "</b>: ";
  if (auto idx = links.index(run, IndexQuery{})) out += a(*idx, "neurons") + " ";
  out += a(links.sweep(run), "sweep progress");
  return out + "</nav>\n";
}

std::string usd(double v) { return fmt::format("${:.4f}", v); }

}  // namespace

std::string render_runs_page(const json& runs, const Links& links) {
  std::string body = "<h1>Runs</h1>\n<table id=\"runs\"><tr><th>run</th><th>neurons</th><th>ok</th><th>failed</th><th>mean score</th><th>cost</th><th></th></tr>\n";
  for (const auto& r : runs) {
    const std::size_t id = r.value("id", std::size_t{0});
    const auto& s = r["summary"];
    const auto idx = links.index(id, IndexQuery{});
    body += "<tr><td>" + (idx ? a(*idx, escape_html(s.value("name", ""))) : escape_html(s.value("name", ""))) + "</td>";
    body += fmt::format("<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                        s.value("neurons", 0u), s.value("ok", 0u), s.value("failed", 0u), fnum(s["mean_score"]),
                        usd(s.value("cost_usd", 0.0)));
    body += "<td>" + a(links.sweep(id), "sweep") + "</td></tr>\n";
  }
  body += "</table>\n";
  if (auto api = links.api("runs")) body += "<p class=\"muted\">JSON: " + a(*api, escape_html(*api)) + "</p>\n";
  return page("nexplain viewer", body, links);
}

std::string render_index_page(std::size_t run, const json& summary, const IndexQuery& q, const json& pg,
                              const Links& links) {
  const std::string name = summary.value("name", "");
  std::string body = run_nav(run, name, links);
  body += "<h1>Neurons of " + escape_html(name) + "</h1>\n";
  body += fmt::format(
      "<p id=\"summary\">{} neurons explained ({} ok, {} failed), mean score {} over {} scored; explainer {}, simulator {}; cost {}</p>\n",
      summary.value("neurons", 0u), summary.value("ok", 0u), summary.value("failed", 0u), fnum(summary["mean_score"]),
      summary.value("scored", 0u), escape_html(summary["explainer"].is_string() ? summary["explainer"].get<std::string>() : "-"),
      escape_html(summary["simulator"].is_string() ? summary["simulator"].get<std::string>() : "-"),
      usd(summary.value("cost_usd", 0.0)));
  if (links.live()) {
    // A plain GET form: the server filters, sorts and pages (307,200 neurons never reach the page).
    auto opt = [](const std::string& v, const std::string& cur, const std::string& label) {
      return "<option value=\"" + v + "\"" + (v == cur ? " selected" : "") + ">" + label + "</option>";
    };
    body += "<form class=\"filters\" method=\"get\" action=\"\">";
    body += "layer <input name=\"layer\" type=\"number\" min=\"0\" value=\"" + (q.layer ? std::to_string(*q.layer) : "") + "\"> ";
    body += "score from <input name=\"min\" type=\"number\" step=\"any\" value=\"" + (q.min_score ? fmt::format("{}", *q.min_score) : "") + "\"> ";
    body += "to <input name=\"max\" type=\"number\" step=\"any\" value=\"" + (q.max_score ? fmt::format("{}", *q.max_score) : "") + "\"> ";
    body += "text <input name=\"q\" type=\"search\" value=\"" + escape_html(q.text) + "\"> ";
    body += "status <select name=\"status\">" + opt("all", status_name(q.status), "all") + opt("ok", status_name(q.status), "ok") +
            opt("failed", status_name(q.status), "failed") + "</select> ";
    body += "sort <select name=\"sort\">" + opt("neuron", sort_key_name(q.sort), "neuron") + opt("score", sort_key_name(q.sort), "score") +
            opt("top", sort_key_name(q.sort), "top score") + opt("random", sort_key_name(q.sort), "random score") + "</select> ";
    body += "<select name=\"order\">" + opt("asc", q.descending ? "desc" : "asc", "ascending") +
            opt("desc", q.descending ? "desc" : "asc", "descending") + "</select> ";
    body += "<input type=\"hidden\" name=\"per_page\" value=\"" + std::to_string(q.per_page) + "\">";
    body += "<button type=\"submit\">apply</button></form>\n";
  } else {
    body += "<p class=\"muted\">Static report: the index by neuron and by score. Search and filters need <code>nexplain serve</code>.</p>\n";
  }
  // Column headers sort: a click sorts by that column, a second click reverses.
  auto header = [&](const char* label, SortKey key, bool default_desc) {
    IndexQuery s = q;
    s.page = 1;
    s.descending = q.sort == key ? !q.descending : default_desc;
    s.sort = key;
    const auto href = links.index(run, s);
    std::string text = label;
    if (q.sort == key) text += q.descending ? " &#9660;" : " &#9650;";
    return "<th>" + (href ? a(*href, text) : text) + "</th>";
  };
  body += fmt::format("<p id=\"matched\">{} matching, page {} of {}</p>\n", pg.value("matched", 0u), pg.value("page", 1u),
                      std::max<std::size_t>(1, pg.value("pages", 0u)));
  body += "<table id=\"neurons\"><tr>" + header("neuron", SortKey::neuron, false) + "<th>explanation</th>" +
          header("score", SortKey::score, true) + header("top", SortKey::top, true) + header("random", SortKey::random, true) +
          "<th>status</th></tr>\n";
  for (const auto& r : pg["rows"]) {
    const auto l = r.value("layer", 0u), n = r.value("neuron", 0u);
    const bool ok = r.value("status", "") == "ok";
    body += fmt::format("<tr class=\"row\" data-key=\"{}/{}\"><td>{}</td><td class=\"expl\">{}</td><td class=\"num score\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td{}>{}</td></tr>\n",
                        l, n, a(links.neuron(run, l, n), fmt::format("{}/{}", l, n)),
                        escape_html(ok ? r.value("explanation", "") : r.value("error", "")), fnum(r["scores"]["all"]),
                        fnum(r["scores"]["top"]), fnum(r["scores"]["random"]), ok ? "" : " class=\"failed\"",
                        ok ? "ok" : "failed");
  }
  body += "</table>\n<p class=\"pager\">";
  const std::size_t cur = pg.value("page", std::size_t{1}), pages = pg.value("pages", std::size_t{0});
  auto pager = [&](std::size_t p, const char* label, const char* id) {
    IndexQuery s = q;
    s.page = p;
    const auto href = links.index(run, s);
    return href ? a(*href, label, std::string(" id=\"") + id + "\"") + " " : std::string();
  };
  if (cur > 1) body += pager(1, "&laquo; first", "first") + pager(cur - 1, "&lsaquo; previous", "prev-page");
  if (cur < pages) body += pager(cur + 1, "next &rsaquo;", "next-page") + pager(pages, "last &raquo;", "last");
  body += "</p>\n";
  if (auto api = links.api("run/" + std::to_string(run) + "/neurons" + to_query_string(q)))
    body += "<p class=\"muted\">JSON: " + a(*api, escape_html(*api)) + "</p>\n";
  return page(name + ": neurons", body, links);
}

namespace {

std::string histogram_svg(const json& bins) {
  if (!bins.is_array() || bins.empty()) return "<p class=\"muted\">no histogram</p>\n";
  // Log counts: the distribution of excerpt maxima is heavy-tailed, the top bins would vanish.
  double top = 0;
  for (const auto& b : bins) top = std::max(top, std::log1p(b.value("count", 0.0)));
  const int w = 8, h = 120;
  std::string out = fmt::format("<svg id=\"histogram\" width=\"{}\" height=\"{}\" role=\"img\">", static_cast<int>(bins.size()) * w, h + 2);
  for (std::size_t i = 0; i < bins.size(); ++i) {
    const double c = bins[i].value("count", 0.0);
    const int bh = top > 0 ? static_cast<int>(std::lround(h * std::log1p(c) / top)) : 0;
    out += fmt::format("<rect class=\"b\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>[{:.4g}, {:.4g}): {:.0f} excerpts</title></rect>",
                       static_cast<int>(i) * w, h - bh, w - 1, bh, bins[i].value("lower", 0.0), bins[i].value("upper", 0.0), c);
  }
  out += "</svg>\n";
  out += fmt::format("<p class=\"muted\">excerpt maxima from {:.4g} to {:.4g}, log count</p>\n", bins.front().value("lower", 0.0),
                     bins.back().value("upper", 0.0));
  return out;
}

std::string usage_row(const char* stage, const json& u) {
  if (!u.is_object()) return "";
  return fmt::format("<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>", stage,
                     u.value("requests", 0u), u.value("prompt_tokens", 0u), u.value("completion_tokens", 0u),
                     usd(u.value("cost_usd", 0.0)));
}

}  // namespace

std::string render_neuron_page(std::size_t run, const json& j, const Links& links) {
  const auto layer = j.value("layer", 0u), neuron = j.value("neuron", 0u);
  const std::string name = j.value("run", "");
  std::string body = run_nav(run, name, links);
  body += fmt::format("<h1>Layer {} neuron {}</h1>\n<p>", layer, neuron);
  if (j["previous"].is_object())
    body += a(links.neuron(run, j["previous"].value("layer", 0u), j["previous"].value("neuron", 0u)),
              "&lsaquo; " + neuron_key(j["previous"]), " id=\"prev\"") + " ";
  if (j["next"].is_object())
    body += a(links.neuron(run, j["next"].value("layer", 0u), j["next"].value("neuron", 0u)), neuron_key(j["next"]) + " &rsaquo;",
              " id=\"next\"");
  body += "</p>\n";

  const auto& res = j["result"];
  if (res.is_object()) {
    const bool ok = res.value("status", "") == "ok";
    if (ok) {
      body += "<p class=\"explanation\" id=\"explanation\">" + escape_html(res.value("explanation", "")) + "</p>\n";
    } else {
      body += "<p class=\"failed\" id=\"error\">failed: " + escape_html(res.value("error", "")) + "</p>\n";
    }
    const auto& sc = res["scores"];
    auto score = [&](const char* k) { return sc.is_object() && sc.contains(k) ? fnum(sc[k], "{:.4f}") : std::string("&ndash;"); };
    body += "<table id=\"scores\"><tr><th>score (all)</th><th>top only</th><th>random only</th><th>squared</th><th>absolute</th></tr>";
    body += "<tr><td class=\"num\" id=\"score-all\">" + score("all") + "</td><td class=\"num\" id=\"score-top\">" + score("top") +
            "</td><td class=\"num\" id=\"score-random\">" + score("random") + "</td><td class=\"num\">" + score("squared_all") +
            "</td><td class=\"num\">" + score("absolute_all") + "</td></tr></table>\n";
    body += "<p id=\"models\">explainer <b>" + escape_html(res.value("explainer", "")) + "</b>, simulator <b>" +
            escape_html(res.value("simulator", "")) + "</b></p>\n";
    const auto& u = res["usage"];
    if (u.is_object()) {
      double cost = 0;
      for (const auto& [k, v] : u.items())
        if (v.is_object()) cost += v.value("cost_usd", 0.0);
      body += "<table id=\"cost\"><tr><th>stage</th><th>requests</th><th>prompt tokens</th><th>completion tokens</th><th>cost</th></tr>" +
              usage_row("explain", u.value("explain", json())) + usage_row("simulate", u.value("simulate", json())) +
              fmt::format("<tr><td>total</td><td></td><td></td><td></td><td class=\"num\">{}</td></tr></table>\n", usd(cost));
    }
  } else {
    body += "<p class=\"muted\" id=\"explanation\">not explained yet</p>\n";
  }

  const auto& rec = j["records"];
  if (!rec.is_object()) {
    body += "<p class=\"muted\">no records file: excerpts are not available</p>\n";
    return page(fmt::format("{} neuron {}/{}", name, layer, neuron), body, links);
  }
  if (!j.value("tokenizer", false)) body += "<p class=\"muted\">no tokenizer: tokens are shown as ids</p>\n";
  const auto& scored = j["scored"];
  if (scored.is_array() && !scored.empty()) {
    body += "<h2>Real and simulated activations (scored excerpts, 0..10)</h2>\n<div id=\"scored\">\n";
    for (const auto& s : scored) {
      body += fmt::format("<div class=\"pair\"><div class=\"muted\">excerpt {} ({})</div>", s.value("excerpt_id", std::uint64_t{0}),
                          escape_html(s.value("split", "")));
      body += render_heatmap(s["tokens"], s["real"], 10.0, s.value("max_index", -1L), "real");
      body += render_heatmap(s["tokens"], s["simulated"], 10.0, -1, "simulated");
      body += "</div>\n";
    }
    body += "</div>\n";
  }
  // One colour scale for all excerpts of the neuron: its largest activation.
  double scale = 0;
  for (const auto& e : rec["top"]) scale = std::max(scale, e["max"].is_number() ? e["max"].get<double>() : 0.0);
  auto excerpts = [&](const char* id, const char* title, const json& list) {
    std::string out = fmt::format("<h2>{} ({})</h2>\n<div id=\"{}\">\n", title, list.size(), id);
    for (const auto& e : list)
      out += render_heatmap(e["tokens"], e["acts"], scale, e.value("max_index", -1L), fnum(e["max"], "{:.3g}"));
    return out + "</div>\n";
  };
  body += excerpts("top", "Top excerpts", rec["top"]);
  body += excerpts("random", "Random excerpts", rec["random"]);
  const auto& st = rec["stats"];
  body += "<h2>Activations</h2>\n<table id=\"stats\"><tr><th>tokens</th><th>mean</th><th>variance</th><th>skewness</th><th>kurtosis</th></tr>";
  body += fmt::format("<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></table>\n",
                      st.value("count", std::uint64_t{0}), fnum(st["mean"], "{:.4g}"), fnum(st["variance"], "{:.4g}"),
                      fnum(st["skewness"], "{:.4g}"), fnum(st["kurtosis"], "{:.4g}"));
  body += "<h3>Histogram of excerpt maxima</h3>\n" + histogram_svg(rec["histogram"]);
  if (auto api = links.api(fmt::format("run/{}/neuron/{}/{}", run, layer, neuron)))
    body += "<p class=\"muted\">JSON: " + a(*api, escape_html(*api)) + "</p>\n";
  return page(fmt::format("{} neuron {}/{}", name, layer, neuron), body, links);
}

std::string render_sweep_page(std::size_t run, const json& s, const Links& links) {
  const std::string name = s.value("name", "");
  const bool finished = s.value("finished", false);
  std::string body = run_nav(run, name, links);
  body += "<h1>Sweep " + escape_html(name) + (finished ? " (finished)" : "") + "</h1>\n";
  body += "<table id=\"stages\"><tr><th>stage</th><th>state</th><th>detail</th></tr>\n";
  for (const auto& st : s["stages"])
    body += "<tr><td>" + escape_html(st.value("name", "")) + "</td><td class=\"state-" + escape_html(st.value("state", "")) + "\">" +
            escape_html(st.value("state", "")) + "</td><td>" + escape_html(st.value("detail", "")) + "</td></tr>\n";
  body += "</table>\n";
  const auto& e = s["explain"];
  const auto done = e.value("done", std::size_t{0});
  body += "<h2>Explain, simulate, score</h2>\n";
  if (e["total"].is_number() && e["total"].get<double>() > 0) {
    const double frac = std::clamp(static_cast<double>(done) / e["total"].get<double>(), 0.0, 1.0);
    body += fmt::format("<div class=\"bar\"><div style=\"width:{:.1f}%\"></div></div>\n", 100 * frac);
  }
  std::string eta = "&ndash;";
  if (e["eta_s"].is_number()) {
    const double t = e["eta_s"].get<double>();
    eta = t < 120 ? fmt::format("{:.0f} s", t) : t < 7200 ? fmt::format("{:.1f} min", t / 60) : fmt::format("{:.1f} h", t / 3600);
  }
  body += fmt::format(
      "<table id=\"progress\"><tr><th>done</th><th>of</th><th>ok</th><th>failed</th><th>rate</th><th>ETA</th><th>mean score</th><th>tokens</th><th>cost so far</th></tr>"
      "<tr><td class=\"num\" id=\"done\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></table>\n",
      done, e["total"].is_number() ? std::to_string(e["total"].get<std::size_t>()) : "?", e.value("ok", 0u), e.value("failed", 0u),
      e["rate_per_s"].is_number() ? fmt::format("{:.2f}/s ({})", e["rate_per_s"].get<double>(), escape_html(e.value("rate_source", ""))) : "&ndash;",
      eta, fnum(e["mean_score"]), e.value("prompt_tokens", std::uint64_t{0}) + e.value("completion_tokens", std::uint64_t{0}),
      usd(e.value("cost_usd", 0.0)));
  const auto& f = s["failures"];
  if (f.is_array() && !f.empty()) {
    body += fmt::format("<h2>Failures ({} of {} shown)</h2>\n<table id=\"failures\"><tr><th>neuron</th><th>reason</th></tr>\n", f.size(),
                        e.value("failed", 0u));
    for (const auto& x : f)
      body += "<tr><td>" + a(links.neuron(run, x.value("layer", 0u), x.value("neuron", 0u)), neuron_key(x)) + "</td><td>" +
              escape_html(x.value("error", "")) + "</td></tr>\n";
    body += "</table>\n";
  }
  const auto t = static_cast<std::time_t>(s.value("updated_unix", 0.0));
  char when[64] = "";
  std::tm tm{};
  if (gmtime_r(&t, &tm)) std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  const bool refresh = links.live() && !finished;
  body += std::string("<p class=\"muted\">as of ") + when + (refresh ? "; this page reloads every 5 s" : "") + "</p>\n";
  if (auto api = links.api("run/" + std::to_string(run) + "/sweep")) body += "<p class=\"muted\">JSON: " + a(*api, escape_html(*api)) + "</p>\n";
  return page("sweep " + name, body, links, refresh ? 5 : 0);
}

std::string render_error_page(int status, const std::string& message, const Links& links) {
  return page(fmt::format("{} error", status),
              fmt::format("<h1>{}</h1>\n<p id=\"error\">{}</p>\n", status, escape_html(message)), links);
}

}  // namespace nexplain::viewer
