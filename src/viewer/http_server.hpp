#pragma once
// `nexplain serve`: the Site behind cpp-httplib. Built only when cpp-httplib is found (the GPU
// machines lack it); have_http_server() tells the CLI whether serve_site() exists.
#include <functional>
#include <string>

#include "viewer/site.hpp"

namespace nexplain::viewer {

struct ServeOptions {
  std::string bind = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (printed)
  int threads = 4;
  // Called once listening, with the bound port (the CLI prints the URL).
  std::function<void(int)> on_listening;
};

// Serves until SIGINT or SIGTERM. Error when the address cannot be bound.
void serve_site(Site& site, const ServeOptions& options);

}  // namespace nexplain::viewer
