// nexplain: explain every MLP neuron of a transformer language model.
#include <cstdlib>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/cli_util.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "nexplain_version.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "nexplain: collect every MLP neuron's activations of a transformer LM over a corpus, reduce\n"
      "them to per-neuron records, explain each neuron, simulate it from the explanation and score it.\n"
      "Run `nexplain <command> --help` for each command."};
  app.set_version_flag("--version", std::string("nexplain ") + NEXPLAIN_VERSION);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")->capture_default_str();
  app.require_subcommand(1);
  app.fallthrough();  // global options (--log-level) may also follow the subcommand

  nexplain::cli::add_version_info_command(app);
  nexplain::cli::add_tokenize_command(app);
  nexplain::cli::add_make_model_command(app);
  nexplain::cli::add_collect_command(app);
  nexplain::cli::add_inspect_command(app);
  nexplain::cli::add_export_command(app);
  nexplain::cli::add_explain_command(app);
  nexplain::cli::add_sweep_command(app);
  nexplain::cli::add_submit_command(app);
  nexplain::cli::add_status_command(app);
  nexplain::cli::add_serve_command(app);
  nexplain::cli::add_report_command(app);
  nexplain::cli::add_plan_command(app);

  // Logging must be set up before any subcommand callback runs.
  app.parse_complete_callback([&] { nexplain::setup_logging(log_level); });
  nexplain::cli::set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : nexplain::kExitUsage;
  } catch (const nexplain::Error& e) {
    spdlog::error("{}", e.what());
    return nexplain::kExitError;
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
    return nexplain::kExitError;
  }
  return nexplain::kExitOk;
}
