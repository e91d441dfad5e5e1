// The viewer end to end: a small real sweep (planted model, a corpus holding an XSS payload,
// records, offline explanations) served by `nexplain serve` on a free loopback port, loaded in
// Debian's headless chromium; the DOM after layout is checked (heatmap tokens, score,
// explanation) and a screenshot saved. The XSS payload must be displayed as text and never run.
// Also: `report --html` writes pages for the same sweep, bad requests over real HTTP are 4xx, and
// the server follows a sweep whose journal grows under it.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

using namespace nexplain;
namespace fs = std::filesystem;
using json = nlohmann::json;

extern char** environ;

namespace {

// What the corpus plants: if any of it ran, the title or the body's attributes would change, or
// an element with id "pwned" would appear.
const std::string kPayload =
    "<script>document.title='PWNED';document.body.setAttribute('data-pwned','1')</script> "
    "\"quoted\" 'single' </span></div><img id=\"pwned\" src=x onerror=\"document.title='PWNED'\"> "
    "<b>bold</b> \x01\x02 end";

fs::path find_chromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
    if (access(p, X_OK) == 0) return p;
  return {};
}

fs::path tokenizer_dir() {
  const auto shared = test::shared_dir();
  if (!shared.empty() && fs::exists(shared / "data/gpt2-tokenizer/encoder.json")) return shared / "data/gpt2-tokenizer";
  const fs::path local = fs::path(NEXPLAIN_SOURCE_DIR) / "data/gpt2-tokenizer";
  if (fs::exists(local / "encoder.json")) return local;
  return {};
}

// `nexplain serve` as a child process on --port 0; the port is read from its first stdout line.
// The destructor always stops it (SIGTERM, then SIGKILL) and reaps it.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<std::string> all{NEXPLAIN_CLI};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, NEXPLAIN_CLI, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    out_ = fds[0];
    if (rc != 0) pid_ = -1;
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (waitpid(pid_, &status, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
    if (out_ >= 0) close(out_);
  }
  // The port from "listening on http://HOST:PORT/", or -1 after `timeout` or when the server died.
  int wait_for_port(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string text;
    const std::regex re(R"(listening on http://[^:]+:(\d+)/)");
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 200) > 0) {
        char buf[512];
        const auto n = read(out_, buf, sizeof buf);
        if (n <= 0) return -1;  // exited
        text.append(buf, static_cast<std::size_t>(n));
        std::smatch m;
        if (std::regex_search(text, m, re)) return std::stoi(m[1]);
      }
    }
    return -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

class ViewerBrowser : public ::testing::Test {
 protected:
  // Failures here are recorded, not asserted: a fatal failure in SetUpTestSuite makes gtest print
  // "SKIPPED" for every test, which CTest would count as a skip rather than a failure.
  static void SetUpTestSuite() {
    const auto tok = tokenizer_dir();
    if (tok.empty()) return;
    dir_ = new test::TempDir();
    const fs::path sweep = dir_->path() / "sweep";
    fs::create_directories(sweep);
    // A corpus in which ordinary text alternates with the payload, so that excerpts hold it.
    std::string text;
    for (int i = 0; i < 60; ++i)
      text += "The river rose after the rain, and the people of the town watched the water. " + kPayload + "\n\n";
    test::write_file(dir_->path() / "corpus.txt", text);
    const std::vector<std::vector<std::string>> steps = {
        {"tokenize", (dir_->path() / "corpus.txt").string(), "--out", (sweep / "sequences.h5").string(), "--tokenizer",
         tok.string(), "--seq-len", "32"},
        // Neuron 5 detects "<" (27) and " <" (1279), the payload's markup; neuron 9 " the" (262).
        {"make-model", "--planted", "L0.N5=tokens:27,1279;L0.N9=token:262", "--out", (sweep / "model").string(), "--n-layer",
         "1", "--n-inner", "16"},
        {"collect", "--model", (sweep / "model").string(), "--corpus", (sweep / "sequences.h5").string(), "--out",
         (sweep / "records.h5").string()},
        {"explain", "--records", (sweep / "records.h5").string(), "--out", (sweep / "explain").string(), "--offline",
         "--tokenizer", tok.string()}};
    for (const auto& step : steps) {
      const auto r = test::run_cli(step);
      if (r.exit_code != 0) {
        setup_error_ = "nexplain " + step[0] + " failed (exit " + std::to_string(r.exit_code) + "): " + r.err;
        return;
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (tokenizer_dir().empty()) GTEST_SKIP() << "no GPT-2 tokenizer files (../shared or data/gpt2-tokenizer): run scripts/fetch-tokenizer.sh";
    ASSERT_TRUE(setup_error_.empty()) << "building the test sweep: " << setup_error_;
  }
  static fs::path sweep() { return dir_->path() / "sweep"; }

  // Starts the server; the port, or a failed assertion.
  std::unique_ptr<ServerProcess> start_server(int& port) {
    auto s = std::make_unique<ServerProcess>(
        std::vector<std::string>{"serve", sweep().string(), "--port", "0", "--tokenizer", tokenizer_dir().string()});
    port = s->wait_for_port(std::chrono::seconds(30));
    return s;
  }

  // chromium's DOM after scripts and layout (a headless run under a hard timeout).
  static test::CliResult chromium(const std::vector<std::string>& extra, const std::string& url) {
    std::vector<std::string> argv{"timeout", "-k", "5", "60", find_chromium().string(), "--headless", "--no-sandbox",
                                  "--disable-gpu", "--no-first-run", "--disable-background-networking",
                                  "--disable-dev-shm-usage", "--no-proxy-server", "--user-data-dir=" + (dir_->path() / "chromium-profile").string(),
                                  "--virtual-time-budget=5000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    return test::run_process(argv);
  }

  static inline test::TempDir* dir_ = nullptr;
  static inline std::string setup_error_;
};

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_F(ViewerBrowser, IndexAndNeuronPageInChromium) {
#ifndef NEXPLAIN_HAVE_HTTPLIB
  GTEST_SKIP() << "built without cpp-httplib: no `nexplain serve`";
#endif
  if (find_chromium().empty()) GTEST_SKIP() << "chromium is not installed (apt-get install chromium)";
  int port = -1;
  auto server = start_server(port);
  ASSERT_GT(port, 0) << "the server did not report a port";
  const std::string base = "http://127.0.0.1:" + std::to_string(port);

  auto r = chromium({"--dump-dom"}, base + "/");  // redirects to the run's index
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string index = r.out;
  EXPECT_NE(index.find("<table id=\"neurons\">"), std::string::npos) << index.substr(0, 2000);
  EXPECT_EQ(count(index, "<tr class=\"row\""), 16u);  // every neuron of the layer, one page
  EXPECT_NE(index.find("data-key=\"0/5\""), std::string::npos);
  // The planted neuron's explanation names the markup tokens it detects, escaped in the DOM.
  const auto results = test::read_file(sweep() / "explain/results.jsonl");
  json n5;
  for (std::size_t pos = 0; pos < results.size();) {
    const auto nl = results.find('\n', pos);
    const auto j = json::parse(results.substr(pos, nl - pos));
    if (j["neuron"] == 5) n5 = j;
    pos = nl + 1;
  }
  ASSERT_TRUE(n5.is_object());
  EXPECT_NE(n5["explanation"].get<std::string>().find("<"), std::string::npos) << n5["explanation"];

  r = chromium({"--dump-dom"}, base + "/run/0/neuron/0/5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string page = r.out;
  EXPECT_NE(page.find("<title>sweep neuron 0/5</title>"), std::string::npos) << page.substr(0, 1000);
  // The explanation and the score as the results file has them.
  std::string expl = n5["explanation"].get<std::string>();
  std::string escaped;
  for (char c : expl) escaped += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  EXPECT_NE(page.find("id=\"explanation\">" + escaped + "</p>"), std::string::npos) << escaped;
  char score[32];
  std::snprintf(score, sizeof score, "%.4f", n5["scores"]["all"].get<double>());
  EXPECT_NE(page.find(std::string("id=\"score-all\">") + score + "<"), std::string::npos) << score;
  // Heatmaps: 20 top and 20 random excerpts of 32 tokens and the scored pairs; the max marked.
  EXPECT_GE(count(page, "<span class=\"tok"), 40u * 32u);
  EXPECT_GE(count(page, "class=\"tok max\""), 20u);
  EXPECT_NE(page.find("title=\""), std::string::npos);
  EXPECT_NE(page.find("<span class=\"label\">simulated</span>"), std::string::npos);
  EXPECT_NE(page.find("<svg id=\"histogram\""), std::string::npos);
  EXPECT_NE(page.find("id=\"next\""), std::string::npos);

  const fs::path shot = dir_->path() / "neuron-0-5.png";
  r = chromium({"--screenshot=" + shot.string(), "--window-size=1280,1600", "--hide-scrollbars"}, base + "/run/0/neuron/0/5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(shot));
  EXPECT_GT(fs::file_size(shot), 10000u);
  // Kept beside the test temp directories so CI can archive it.
  const fs::path kept = fs::path(NEXPLAIN_TEST_TMP) / "viewer-neuron-0-5.png";
  fs::copy_file(shot, kept, fs::copy_options::overwrite_existing);
  std::printf("screenshot: %s (copy: %s)\n", shot.c_str(), kept.c_str());
}

TEST_F(ViewerBrowser, XssInTheCorpusIsShownAsTextAndNeverRuns) {
#ifndef NEXPLAIN_HAVE_HTTPLIB
  GTEST_SKIP() << "built without cpp-httplib: no `nexplain serve`";
#endif
  if (find_chromium().empty()) GTEST_SKIP() << "chromium is not installed (apt-get install chromium)";
  int port = -1;
  auto server = start_server(port);
  ASSERT_GT(port, 0);
  std::string neuron_dom;
  for (const auto* path : {"/run/0/neuron/0/5", "/run/0/"}) {
    const auto r = chromium({"--dump-dom"}, "http://127.0.0.1:" + std::to_string(port) + path);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string& dom = r.out;
    if (neuron_dom.empty()) neuron_dom = dom;
    // Nothing ran and nothing was injected.
    EXPECT_EQ(dom.find("PWNED</title>"), std::string::npos) << path;
    EXPECT_EQ(dom.find("data-pwned"), std::string::npos) << path;
    EXPECT_EQ(dom.find("id=\"pwned\""), std::string::npos) << path;
    EXPECT_EQ(dom.find("<script"), std::string::npos) << path;
    EXPECT_EQ(dom.find("<img"), std::string::npos) << path;
    EXPECT_EQ(dom.find("<b>bold"), std::string::npos) << path;
  }
  // The planted neuron's explanation quotes the markup token; the index shows it as text.
  {
    const auto r = chromium({"--dump-dom"}, "http://127.0.0.1:" + std::to_string(port) + "/run/0/?q=%3C");
    std::smatch m;
    const std::regex row("data-key=\"0/5\"><td><a [^>]*>0/5</a></td><td class=\"expl\">([^<]*)</td>");
    ASSERT_TRUE(std::regex_search(r.out, m, row)) << r.out.substr(0, 3000);
    EXPECT_NE(m[1].str().find("&lt;"), std::string::npos) << m[1];
  }
  // The payload's pieces are visible as text in the heatmap tokens (token by token, escaped).
  const std::string& dom = neuron_dom;
  EXPECT_NE(dom.find("> &lt;</span>"), std::string::npos);
  EXPECT_NE(dom.find(">script</span>"), std::string::npos);
  EXPECT_NE(dom.find(">WN</span>"), std::string::npos);  // the would-be title "PWNED", as token text
  EXPECT_NE(dom.find("\xE2\x90\x81"), std::string::npos);  // \x01 shown as U+2401
}

TEST_F(ViewerBrowser, BadRequestsOverHttpAre4xxAndTheServerSurvives) {
#ifndef NEXPLAIN_HAVE_HTTPLIB
  GTEST_SKIP() << "built without cpp-httplib: no `nexplain serve`";
#endif
  if (access("/usr/bin/curl", X_OK) != 0) GTEST_SKIP() << "curl is not installed";
  int port = -1;
  auto server = start_server(port);
  ASSERT_GT(port, 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto status = [&](const std::string& path, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{"curl", "-s", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--path-as-is"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(base + path);
    return test::run_process(argv).out;
  };
  EXPECT_EQ(status("/run/0/neuron/0/5"), "200");
  EXPECT_EQ(status("/api/run/0/neuron/0/5"), "200");
  EXPECT_EQ(status("/run/0/neuron/0/999"), "404");
  EXPECT_EQ(status("/run/0/neuron/7/0"), "404");
  EXPECT_EQ(status("/api/run/0/neurons?page=abc"), "400");
  EXPECT_EQ(status("/api/run/0/neurons?min=%zz"), "400");
  EXPECT_EQ(status("/run/0/?sort=%3Cscript%3E"), "400");
  EXPECT_EQ(status("/../../etc/passwd")[0], '4');
  EXPECT_EQ(status("/run/0/%2e%2e/%2e%2e/etc/passwd")[0], '4');
  EXPECT_EQ(status("/api/run/0/sweep", {"-X", "POST"}), "405");
  EXPECT_EQ(status("/api/run/0/sweep"), "200");  // still up
  const auto body = test::run_process({"curl", "-s", "--noproxy", "*", "--max-time", "10", base + "/api/run/0/neurons?q=%3C&per_page=5"}).out;
  const auto j = json::parse(body);
  EXPECT_GE(j["matched"].get<int>(), 1);
}

TEST_F(ViewerBrowser, FollowsARunningSweep) {
#ifndef NEXPLAIN_HAVE_HTTPLIB
  GTEST_SKIP() << "built without cpp-httplib: no `nexplain serve`";
#endif
  if (access("/usr/bin/curl", X_OK) != 0) GTEST_SKIP() << "curl is not installed";
  // A sweep caught mid-explain: records written, 5 of 16 neurons journaled, the 6th half written.
  const fs::path live = dir_->path() / "live";
  fs::create_directories(live / "explain");
  fs::copy_file(sweep() / "records.h5", live / "records.h5", fs::copy_options::overwrite_existing);
  const auto journal = test::read_file(sweep() / "explain/journal.jsonl");
  std::vector<std::size_t> ends;  // end of each line
  for (auto p = journal.find('\n'); p != std::string::npos; p = journal.find('\n', p + 1)) ends.push_back(p + 1);
  ASSERT_EQ(ends.size(), 16u);
  test::write_file(live / "explain/journal.jsonl", journal.substr(0, ends[4] + 10));
  ServerProcess server({"serve", live.string(), "--port", "0", "--tokenizer", tokenizer_dir().string()});
  const int port = server.wait_for_port(std::chrono::seconds(30));
  ASSERT_GT(port, 0);
  auto get = [&](const std::string& path) {
    return test::run_process({"curl", "-s", "--noproxy", "*", "--max-time", "10", "http://127.0.0.1:" + std::to_string(port) + path}).out;
  };
  auto s = json::parse(get("/api/run/0/sweep"));
  EXPECT_EQ(s["explain"]["done"], 5);
  EXPECT_EQ(s["explain"]["total"], 16);  // from the records file
  EXPECT_FALSE(s["finished"]);
  EXPECT_EQ(s["stages"].back()["state"], "running");
  EXPECT_NE(get("/run/0/sweep").find("http-equiv=\"refresh\""), std::string::npos);
  // A neuron with records but no explanation yet still has a page.
  std::set<std::string> journaled;
  for (std::size_t i = 0, start = 0; i < 5; start = ends[i++]) journaled.insert(json::parse(journal.substr(start, ends[i] - start))["key"]);
  int waiting = 0;
  while (journaled.count("0/" + std::to_string(waiting))) ++waiting;
  EXPECT_NE(get("/run/0/neuron/0/" + std::to_string(waiting)).find("not explained yet"), std::string::npos) << waiting;
  // The journal grows (the torn line completed, more appended): the next look after a second sees it.
  {
    std::ofstream out(live / "explain/journal.jsonl", std::ios::app);
    out << journal.substr(ends[4] + 10);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  s = json::parse(get("/api/run/0/sweep"));
  EXPECT_EQ(s["explain"]["done"], 16);
  EXPECT_EQ(json::parse(get("/api/run/0/neurons"))["matched"], 16);
  // The stage finishes: results.jsonl appears and the page stops refreshing.
  fs::copy_file(sweep() / "explain/results.jsonl", live / "explain/results.jsonl");
  fs::copy_file(sweep() / "explain/summary.json", live / "explain/summary.json");
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  s = json::parse(get("/api/run/0/sweep"));
  EXPECT_TRUE(s["finished"]);
  EXPECT_EQ(s["explain"]["eta_s"], 0.0);
  EXPECT_EQ(get("/run/0/sweep").find("http-equiv=\"refresh\""), std::string::npos);
}

TEST_F(ViewerBrowser, StaticReportOfTheSweep) {
  const fs::path out = dir_->path() / "report";
  const auto r = test::run_cli({"report", sweep().string(), "--html", out.string(), "--tokenizer", tokenizer_dir().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("(16 neurons)"), std::string::npos) << r.out;
  const auto page = test::read_file(out / "run-0/neurons/0/5.html");
  EXPECT_NE(page.find("href=\"../../../index.html\""), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_GE(count(page, "<span class=\"tok"), 40u * 32u);
  EXPECT_TRUE(fs::exists(out / "run-0/by-score-1.html"));
  EXPECT_TRUE(fs::exists(out / "run-0/sweep.html"));
  // Bad input: a clear message and a non-zero exit.
  const auto bad = test::run_cli({"report", (dir_->path() / "nowhere").string(), "--html", out.string()});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("not a sweep directory"), std::string::npos) << bad.err;
}
