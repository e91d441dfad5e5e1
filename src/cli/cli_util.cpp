#include "cli/cli_util.hpp"

namespace nexplain::cli {

namespace {
// Set once in main() before any subcommand runs; read-only afterwards.
std::string& stored() {
  static std::string s;
  return s;
}
}  // namespace

const std::string& command_line() { return stored(); }

void set_command_line(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool quote = a.empty() || a.find_first_of(" \t\"'$\\") != std::string::npos;
    if (i) s += ' ';
    if (quote) {
      s += '\'';
      for (char c : a) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
      s += '\'';
    } else {
      s += a;
    }
  }
  stored() = s;
}

}  // namespace nexplain::cli
