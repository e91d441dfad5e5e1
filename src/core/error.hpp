#pragma once
// One exception type for every user-facing failure. Its message is what the user reads: it names
// the file, the position inside it (byte offset, line, tensor, ...) and what was expected, so the
// CLI can print it verbatim and exit non-zero.
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace nexplain {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// fail("{}: byte {}: expected {}", path, off, what) -> throws Error with the formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Process exit codes shared by every subcommand (documented in docs/CLI.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,          // bad input, I/O error, anything reported through Error
  kExitUsage = 2,          // command-line usage error
  kExitCheckpointed = 75,  // state checkpointed after SIGUSR1/SIGTERM: "requeue me" (EX_TEMPFAIL)
};

}  // namespace nexplain
