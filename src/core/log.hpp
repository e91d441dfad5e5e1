#pragma once
// Logging is spdlog's default logger, configured once by the CLI. Library code logs through
// the spdlog:: free functions; it never prints to stdout, which belongs to command output.
#include <string>

#include <spdlog/spdlog.h>

namespace nexplain {

// level: trace|debug|info|warn|error|off. Logs go to stderr; `rank` (>= 0) is prefixed so that
// interleaved MPI output says who is speaking.
void setup_logging(const std::string& level, int rank = -1);

}  // namespace nexplain
