#include "llm/journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/error.hpp"

namespace nexplain {

namespace fs = std::filesystem;

namespace {

std::string read_all(int fd, const fs::path& path) {
  std::string data;
  char buf[1 << 16];
  if (::lseek(fd, 0, SEEK_SET) < 0) fail("journal {}: cannot seek: {}", path.string(), std::strerror(errno));
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("journal {}: cannot read: {}", path.string(), std::strerror(errno));
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  return data;
}

void write_all(int fd, const std::string& data, const fs::path& path) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("journal {}: write failed: {}", path.string(), std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace

Journal::Journal(fs::path path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("journal {}: cannot open: {}", path_.string(), std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) fail("journal {}: in use by another process (is another run still going?)", path_.string());
    fail("journal {}: cannot lock: {}", path_.string(), std::strerror(err));
  }
  try {
    const std::string data = read_all(fd_, path_);
    std::size_t good_end = 0;  // byte offset just past the last complete, valid line
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < data.size()) {
      ++line_no;
      const std::size_t nl = data.find('\n', pos);
      const bool complete = nl != std::string::npos;
      const std::size_t end = complete ? nl : data.size();
      const std::string_view line(data.data() + pos, end - pos);
      const bool last = !complete || end + 1 == data.size();
      nlohmann::json rec;
      bool ok = complete;
      if (ok) {
        try {
          rec = nlohmann::json::parse(line);
          ok = rec.is_object() && rec.contains("key") && rec["key"].is_string() && rec.contains("value");
        } catch (const nlohmann::json::exception&) {
          ok = false;
        }
      }
      if (!ok) {
        // Only the last line can be torn by a crash; anything else means real damage.
        if (!last) fail("journal {}: line {} is damaged (not a complete record) and is not the last line", path_.string(), line_no);
        break;
      }
      records_[rec["key"].get<std::string>()] = std::move(rec["value"]);
      ++recovered_;
      good_end = end + 1;
      pos = end + 1;
    }
    if (good_end < data.size()) {
      truncated_bytes_ = data.size() - good_end;
      if (::ftruncate(fd_, static_cast<off_t>(good_end)) != 0 || ::fsync(fd_) != 0) {
        fail("journal {}: cannot truncate the torn last line: {}", path_.string(), std::strerror(errno));
      }
      spdlog::warn("journal {}: dropped a torn last line ({} bytes) left by an interrupted run", path_.string(), truncated_bytes_);
    }
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  // A new journal's directory entry must be durable too, or a crash could lose the whole file.
  const fs::path dir = path_.has_parent_path() ? path_.parent_path() : fs::path(".");
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  if (recovered_ > 0) spdlog::info("journal {}: recovered {} records ({} keys)", path_.string(), recovered_, records_.size());
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

void Journal::append(const std::string& key, const nlohmann::json& value) {
  nlohmann::json rec = {{"key", key}, {"value", value}};
  // dump() never emits a raw newline (strings are escaped), so one record is one line.
  const std::string line = rec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  // O_APPEND puts the whole buffer at the end; one write per record keeps a crash to one torn line.
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  try {
    write_all(fd_, line, path_);
  } catch (...) {
    // A short write (disk full) would otherwise leave a partial line that later appends bury
    // in the middle of the file; cut it off so the journal stays recoverable.
    if (before >= 0 && ::ftruncate(fd_, before) != 0) spdlog::error("journal {}: cannot cut off a failed append", path_.string());
    throw;
  }
  if (::fdatasync(fd_) != 0) fail("journal {}: fsync failed: {}", path_.string(), std::strerror(errno));
  records_[key] = value;
}

}  // namespace nexplain
