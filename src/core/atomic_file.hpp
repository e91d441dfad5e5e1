#pragma once
// Outputs are written under a temporary name next to the target and renamed into place only
// when complete, so an interrupted or failed job never leaves a file that looks finished.
#include <filesystem>
#include <string>

namespace nexplain {

class AtomicOutput {
 public:
  // Fails early (Error) when the target's directory does not exist or is not writable.
  explicit AtomicOutput(std::filesystem::path target);
  ~AtomicOutput();  // removes the temporary unless committed
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& target() const { return target_; }
  // fsyncs the temporary and renames it over the target.
  void commit();

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  bool committed_ = false;
};

// Writes `data` to `path` atomically (temporary + fsync + rename).
void write_file_atomic(const std::filesystem::path& path, const std::string& data);

}  // namespace nexplain
