// placeholder: replaced by the tokenizer work
#include "cli/commands.hpp"
namespace nexplain::cli {
void add_tokenize_command(CLI::App& app) { app.add_subcommand("tokenize", "Tokenize a corpus into a sequences file"); }
}  // namespace nexplain::cli
