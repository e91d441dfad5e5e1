#pragma once
// Starts tests/servers/openai_test_server.py as a real process on 127.0.0.1 for the duration of
// a test and reads its request log. Header-only so that any test file can include it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nexplain::test {

class OpenAiTestServer {
 public:
  // `args` are the server's flags (--rpm, --fault, ...); `env` entries ("NAME=value") are added
  // to the server's environment. The request log goes to `log_path`.
  OpenAiTestServer(std::filesystem::path log_path, std::vector<std::string> args = {}, std::vector<std::string> env = {})
      : log_path_(std::move(log_path)) {
    const std::string script = std::string(NEXPLAIN_SOURCE_DIR) + "/tests/servers/openai_test_server.py";
    std::vector<std::string> argv{"python3", script, "--log", log_path_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) envs.emplace_back(*e);
    for (const auto& e : env) envs.push_back(e);
    std::vector<char*> cenv;
    for (auto& e : envs) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    const int rc = posix_spawnp(&pid_, "python3", &fa, nullptr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      pid_ = -1;
      throw std::runtime_error("cannot start python3 for the test server");
    }
    // The first stdout line is the port; give a slow machine ten seconds.
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[64];
      const ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    close(fds[0]);
    port_ = std::atoi(line.c_str());
    if (port_ <= 0) {
      stop();
      throw std::runtime_error("the test server did not report its port (got '" + line + "')");
    }
  }
  ~OpenAiTestServer() { stop(); }
  OpenAiTestServer(const OpenAiTestServer&) = delete;
  OpenAiTestServer& operator=(const OpenAiTestServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  // Every logged API request, in arrival order.
  std::vector<nlohmann::json> log() const {
    std::vector<nlohmann::json> out;
    std::ifstream f(log_path_);
    std::string line;
    while (std::getline(f, line)) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    }
    return out;
  }

  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

 private:
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace nexplain::test
