#include "core/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace nexplain {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

Progress::Progress(std::string label, std::uint64_t total, std::string unit)
    : label_(std::move(label)), total_(total), unit_(std::move(unit)), tty_(isatty(STDERR_FILENO) != 0) {
  // NEXPLAIN_PROGRESS_INTERVAL (seconds) sets how often a non-terminal gets a log line.
  const char* env = std::getenv("NEXPLAIN_PROGRESS_INTERVAL");
  interval_s_ = env ? std::atof(env) : (tty_ ? 0.25 : 30.0);
  start_ = last_emit_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

std::string Progress::human(double v) {
  const char* suffix[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (std::fabs(v) >= 1000.0 && i < 4) {
    v /= 1000.0;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f}", v) : fmt::format("{:.2f}{}", v, suffix[i]);
}

std::string Progress::duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  if (t < 60) return fmt::format("{}s", t);
  if (t < 3600) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
}

std::string Progress::line() const {
  const double el = seconds_since(start_);
  const double rate = el > 0 ? static_cast<double>(done_) / el : 0.0;
  const std::uint64_t all = already_ + done_;
  std::string s = label_;
  if (total_ > 0) s += fmt::format(" {:5.1f}% {}/{}", 100.0 * all / total_, human(all), human(total_));
  else s += fmt::format(" {}", human(all));
  s += fmt::format(" {}, {} {}/s", unit_, human(rate), unit_);
  if (total_ > 0 && rate > 0) s += " ETA " + duration((total_ - std::min(all, total_)) / rate);
  s += " elapsed " + duration(el);
  return s;
}

void Progress::emit(bool final) {
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line().c_str(), final ? "\n" : "");
    std::fflush(stderr);
  } else {
    spdlog::info("{}", line());
  }
  last_emit_ = std::chrono::steady_clock::now();
}

void Progress::update(std::uint64_t done) {
  done_ = done;
  if (seconds_since(last_emit_) >= interval_s_) emit(false);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  emit(true);
}

}  // namespace nexplain
