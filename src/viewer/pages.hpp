#pragma once
// The HTML pages, rendered on the server from the same JSON documents the API answers (so a page
// never shows something a script cannot get). Plain HTML and inline CSS, no script and nothing
// fetched from elsewhere: the pages work offline, from a static report and with JS disabled. Every
// string that comes from data goes through escape_html / escape_token.
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "viewer/index_query.hpp"
#include "viewer/links.hpp"

namespace nexplain::viewer {

// runs: array of {"id", "summary"} (ViewerRun::summary_json).
std::string render_runs_page(const nlohmann::json& runs, const Links& links);
// summary: ViewerRun::summary_json; page: ViewerRun::index_json(q).
std::string render_index_page(std::size_t run, const nlohmann::json& summary, const IndexQuery& q,
                              const nlohmann::json& page, const Links& links);
// neuron: ViewerRun::neuron_json.
std::string render_neuron_page(std::size_t run, const nlohmann::json& neuron, const Links& links);
// sweep: ViewerRun::sweep_json. A live, unfinished sweep page reloads itself every 5 s.
std::string render_sweep_page(std::size_t run, const nlohmann::json& sweep, const Links& links);
std::string render_error_page(int status, const std::string& message, const Links& links);

}  // namespace nexplain::viewer
