// Needs cpp-httplib: CMakeLists.txt leaves this file out of the build without it.
#include "viewer/http_server.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "core/error.hpp"

namespace nexplain::viewer {

void serve_site(Site& site, const ServeOptions& o) {
  httplib::Server server;
  server.new_task_queue = [n = o.threads] { return new httplib::ThreadPool(static_cast<std::size_t>(std::max(1, n))); };
  server.set_read_timeout(10, 0);
  server.set_write_timeout(10, 0);
  server.set_payload_max_length(64 * 1024);  // GET only: nothing large is ever accepted
  // Only GET and HEAD reach the site; anything else is a 405 before routing.
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD") return httplib::Server::HandlerResponse::Unhandled;
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("method not allowed\n", "text/plain; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  });
  server.Get(R"(.*)", [&site](const httplib::Request& req, httplib::Response& res) {
    std::multimap<std::string, std::string> params(req.params.begin(), req.params.end());
    const auto r = site.handle(req.path, params);
    res.status = r.status;
    if (!r.location.empty()) res.set_header("Location", r.location);
    res.set_header("X-Content-Type-Options", "nosniff");
    // The pages load nothing and run no script; the header repeats their <meta> policy, so that
    // even a page an escaping bug had broken could not run what a corpus planted.
    res.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:");
    res.set_header("Cache-Control", "no-store");
    res.set_content(r.body, r.content_type.c_str());
  });
  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("{} {} -> {}", req.method, req.path, res.status);
  });

  // SIGINT/SIGTERM stop the server from a thread that waits for them (a signal handler may not
  // call stop()). Blocked here, before the pool's threads start, so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t old_mask;
  pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);

  const int port = o.port == 0 ? server.bind_to_any_port(o.bind) : (server.bind_to_port(o.bind, o.port) ? o.port : -1);
  if (port < 0) {
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    fail("cannot listen on {}:{} (address in use, or not an address of this machine)", o.bind, o.port);
  }
  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    signalled = true;
    spdlog::info("viewer: signal {}, stopping", sig);
    server.stop();
  });
  if (o.on_listening) o.on_listening(port);
  const bool ok = server.listen_after_bind();
  // Wake the waiter if the server stopped for another reason.
  if (!signalled) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (!ok) spdlog::debug("viewer: listen loop ended");
}

}  // namespace nexplain::viewer
