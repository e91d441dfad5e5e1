#pragma once
// The viewer's routes, independent of any HTTP library: a decoded path and its query parameters
// in, a status, content type and body out. `nexplain serve` puts this behind cpp-httplib; the
// tests call it directly. Nothing here reads a file named by a request: paths are matched against
// fixed patterns with integer fields, so "/../" and friends can only ever be a 4xx.
//
// Pages:  /  (runs; redirects to /run/0/ when there is one)   /run/<i>/?<index query>
//         /run/<i>/neuron/<layer>/<neuron>   /run/<i>/sweep
// JSON:   /api/runs   /api/run/<i>   /api/run/<i>/neurons?<index query>
//         /api/run/<i>/neuron/<layer>/<neuron>   /api/run/<i>/sweep
// docs/VIEWER.md describes every endpoint and field.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "viewer/viewer_run.hpp"

namespace nexplain::viewer {

struct Response {
  int status = 200;
  std::string content_type = "text/html; charset=utf-8";
  std::string body;
  std::string location;  // for redirects
};

class Site {
 public:
  explicit Site(std::vector<std::unique_ptr<ViewerRun>> runs);
  // GET (and HEAD) only; the server answers other methods with 405 itself.
  Response handle(const std::string& path, const std::multimap<std::string, std::string>& params);
  std::vector<std::unique_ptr<ViewerRun>>& runs() { return runs_; }

 private:
  std::vector<std::unique_ptr<ViewerRun>> runs_;
};

}  // namespace nexplain::viewer
