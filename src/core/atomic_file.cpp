#include "core/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.hpp"

namespace nexplain {

namespace fs = std::filesystem;

AtomicOutput::AtomicOutput(fs::path target) : target_(std::move(target)) {
  fs::path dir = target_.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("{}: cannot write output: directory '{}' does not exist", target_.string(), dir.string());
  if (access(dir.c_str(), W_OK) != 0) fail("{}: cannot write output: directory '{}' is not writable", target_.string(), dir.string());
  if (fs::is_directory(target_, ec)) fail("{}: cannot write output: it is a directory", target_.string());
  temp_ = target_;
  temp_ += fmt::format(".partial-{}", getpid());
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

void AtomicOutput::commit() {
  int fd = ::open(temp_.c_str(), O_RDONLY);
  if (fd < 0) fail("{}: cannot open temporary output for fsync: {}", temp_.string(), std::strerror(errno));
  ::fsync(fd);
  ::close(fd);
  std::error_code ec;
  fs::rename(temp_, target_, ec);
  if (ec) fail("{}: cannot rename temporary output into place: {}", target_.string(), ec.message());
  committed_ = true;
  // Make the rename itself durable.
  fs::path dir = target_.parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const fs::path& path, const std::string& data) {
  AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    if (!f) fail("{}: cannot open for writing", out.temp_path().string());
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!f) fail("{}: write failed", out.temp_path().string());
  }
  out.commit();
}

}  // namespace nexplain
