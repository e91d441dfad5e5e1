#pragma once
// Each subcommand lives in its own src/cli/cmd_<name>.cpp and registers itself on the app with
// one add_<name>_command function; main.cpp lists them. A subcommand's callback throws
// nexplain::Error for bad input; main turns that into a message and a non-zero exit.
#include <CLI/CLI.hpp>

namespace nexplain::cli {

void add_version_info_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_make_model_command(CLI::App& app);
void add_collect_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_explain_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_submit_command(CLI::App& app);
void add_status_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_plan_command(CLI::App& app);

}  // namespace nexplain::cli
