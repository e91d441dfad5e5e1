#include "viewer/site.hpp"

#include <charconv>

#include <spdlog/spdlog.h>

#include "viewer/http_error.hpp"
#include "viewer/links.hpp"
#include "viewer/pages.hpp"

namespace nexplain::viewer {

using json = nlohmann::json;

namespace {

std::vector<std::string> split_path(const std::string& path) {
  if (path.empty() || path[0] != '/') throw HttpError(400, "the path must start with '/'");
  std::vector<std::string> parts;
  std::size_t pos = 1;
  while (pos <= path.size()) {
    const auto slash = path.find('/', pos);
    const auto end = slash == std::string::npos ? path.size() : slash;
    parts.push_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == ".." || parts[i] == ".") throw HttpError(400, "'.' and '..' are not allowed in paths");
    if (parts[i].find('\0') != std::string::npos || parts[i].find('\\') != std::string::npos)
      throw HttpError(400, "malformed path");
    // Only a trailing slash may leave an empty segment.
    if (parts[i].empty() && i + 1 != parts.size()) throw HttpError(404, "no such page: " + path);
  }
  if (!parts.empty() && parts.back().empty()) parts.pop_back();
  return parts;
}

std::uint32_t parse_u32(const std::string& s, const char* what) {
  std::uint32_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || s.size() > 10 || ec != std::errc() || p != s.data() + s.size())
    throw HttpError(404, fmt::format("{} '{}' is not a number", what, s));
  return v;
}

void no_params(const std::multimap<std::string, std::string>& params) {
  if (!params.empty()) throw HttpError(400, "unknown query parameter '" + params.begin()->first + "' (this page takes none)");
}

Response json_response(const json& j, int status = 200) {
  // error_handler_t::replace: a stray invalid UTF-8 byte in a token must not make a 500.
  return {status, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", {}};
}

}  // namespace

Site::Site(std::vector<std::unique_ptr<ViewerRun>> runs) : runs_(std::move(runs)) {}

Response Site::handle(const std::string& path, const std::multimap<std::string, std::string>& params) {
  static const ServerLinks links;
  const bool api = path.rfind("/api/", 0) == 0 || path == "/api";
  try {
    auto parts = split_path(path);
    if (api) parts.erase(parts.begin());
    auto run_at = [&](const std::string& s) -> ViewerRun& {
      const auto i = parse_u32(s, "run");
      if (i >= runs_.size()) throw HttpError(404, fmt::format("no run {} (there are {})", i, runs_.size()));
      return *runs_[i];
    };
    if (api) {
      if (parts.size() == 1 && parts[0] == "runs") {
        no_params(params);
        json out = json::array();
        for (std::size_t i = 0; i < runs_.size(); ++i) out.push_back({{"id", i}, {"summary", runs_[i]->summary_json()}});
        return json_response(out);
      }
      if (parts.size() >= 2 && parts[0] == "run") {
        ViewerRun& run = run_at(parts[1]);
        if (parts.size() == 2) {
          no_params(params);
          return json_response(run.summary_json());
        }
        if (parts.size() == 3 && parts[2] == "neurons") return json_response(run.index_json(parse_index_query(params)));
        if (parts.size() == 3 && parts[2] == "sweep") {
          no_params(params);
          return json_response(run.sweep_json());
        }
        if (parts.size() == 5 && parts[2] == "neuron") {
          no_params(params);
          return json_response(run.neuron_json(parse_u32(parts[3], "layer"), parse_u32(parts[4], "neuron")));
        }
      }
      throw HttpError(404, "no such endpoint: " + path);
    }
    Response r;
    if (parts.empty()) {
      no_params(params);
      if (runs_.size() == 1) return {302, "text/plain; charset=utf-8", "see /run/0/\n", "/run/0/"};
      json out = json::array();
      for (std::size_t i = 0; i < runs_.size(); ++i) out.push_back({{"id", i}, {"summary", runs_[i]->summary_json()}});
      r.body = render_runs_page(out, links);
      return r;
    }
    if (parts.size() >= 2 && parts[0] == "run") {
      const auto id = parse_u32(parts[1], "run");
      ViewerRun& run = run_at(parts[1]);
      if (parts.size() == 2) {
        const auto q = parse_index_query(params);
        r.body = render_index_page(id, run.summary_json(), q, run.index_json(q), links);
        return r;
      }
      if (parts.size() == 3 && parts[2] == "sweep") {
        no_params(params);
        r.body = render_sweep_page(id, run.sweep_json(), links);
        return r;
      }
      if (parts.size() == 5 && parts[2] == "neuron") {
        no_params(params);
        r.body = render_neuron_page(id, run.neuron_json(parse_u32(parts[3], "layer"), parse_u32(parts[4], "neuron")), links);
        return r;
      }
    }
    throw HttpError(404, "no such page: " + path);
  } catch (const HttpError& e) {
    if (api) return json_response({{"error", e.what()}, {"status", e.status()}}, e.status());
    return {e.status(), "text/html; charset=utf-8", render_error_page(e.status(), e.what(), links), {}};
  } catch (const Error& e) {
    // Bad input that reached the data layer (a malformed query parameter).
    if (api) return json_response({{"error", e.what()}, {"status", 400}}, 400);
    return {400, "text/html; charset=utf-8", render_error_page(400, e.what(), links), {}};
  } catch (const std::exception& e) {
    spdlog::error("viewer: {}: {}", path, e.what());
    if (api) return json_response({{"error", "internal error"}, {"status", 500}}, 500);
    return {500, "text/html; charset=utf-8", render_error_page(500, "internal error (see the server's log)", links), {}};
  }
}

}  // namespace nexplain::viewer
