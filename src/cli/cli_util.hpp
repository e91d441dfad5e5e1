#pragma once
// Small helpers shared by the subcommands.
#include <string>

namespace nexplain::cli {

// The command line as typed (argv joined, shell-quoted where needed), for provenance records.
// main() stores it before parsing.
const std::string& command_line();
void set_command_line(int argc, char** argv);

}  // namespace nexplain::cli
