#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "core/error.hpp"

namespace nexplain {

void setup_logging(const std::string& level, int rank) {
  auto logger = spdlog::stderr_color_mt("nexplain");
  spdlog::set_default_logger(logger);
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    fail("--log-level: unknown level '{}' (expected trace, debug, info, warn, error or off)", level);
  }
  spdlog::set_level(lvl);
  if (rank >= 0) {
    spdlog::set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [rank {}] [%^%l%$] %v", rank));
  } else {
    spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  }
}

}  // namespace nexplain
