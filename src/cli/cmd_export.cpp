// `nexplain export`: records in other tools' formats. openai-json writes neuron-explainer
// NeuronRecord files, <out>/<layer>/<neuron>.json.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cli/commands.hpp"
#include "tokenizer/tokenizer_dir.hpp"
#include "collect/layer_range.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "export/openai_json.hpp"
#include "io/records_file.hpp"

namespace nexplain::cli {

namespace fs = std::filesystem;

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Export records: --format openai-json writes <out>/<layer>/<neuron>.json NeuronRecords");
  struct Opts {
    std::string records, format = "openai-json", out, layers = "all", tokenizer;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("records", o->records, "Records file from `nexplain collect`")->required()->check(CLI::ExistingFile);
  cmd->add_option("--format", o->format, "openai-json")->capture_default_str();
  cmd->add_option("--out", o->out, "Output directory (must not exist; appears only when complete)")->required();
  cmd->add_option("--layers", o->layers, "Layers to export (of those in the file)")->capture_default_str();
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer directory for token texts (tokenizer.json, else GPT-2's files; a model directory that ships "
                  "one works; default: see `nexplain tokenize --help`)");
  cmd->callback([o] {
    if (o->format != "openai-json") fail("--format '{}': expected openai-json", o->format);
    RecordsFile rf(o->records);
    const auto tok = load_tokenizer(locate_tokenizer_dir(o->tokenizer));
    const fs::path out = o->out;
    if (fs::exists(out)) fail("{}: already exists; export writes a new directory", out.string());
    fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    if (!fs::is_directory(parent)) fail("{}: cannot write output: directory '{}' does not exist", out.string(), parent.string());
    // Written under a temporary name and renamed when complete: an interrupted export leaves
    // no directory that looks finished.
    fs::path tmp = out;
    tmp += ".partial-" + std::to_string(getpid());
    struct Cleanup {
      fs::path p;
      bool keep = false;
      ~Cleanup() {
        std::error_code ec;
        if (!keep) fs::remove_all(p, ec);
      }
    } cleanup{tmp};
    int max_layer = 0;
    for (int l : rf.meta().layers) max_layer = std::max(max_layer, l);
    std::vector<int> layers;
    for (int l : parse_layer_range(o->layers, max_layer + 1))
      if (rf.has_layer(l)) layers.push_back(l);
    std::uint64_t total = 0;
    for (int l : layers) total += rf.n_neurons(l);
    Progress prog("export", total, "neurons");
    std::uint64_t done = 0;
    auto text = [&](std::uint32_t id) { return tok->has_token(id) ? tok->token_bytes(id) : "<" + std::to_string(id) + ">"; };
    auto excerpt = [&](std::uint64_t id) { return rf.excerpt_tokens(id); };
    for (int l : layers) {
      fs::create_directories(tmp / std::to_string(l));
      for (std::uint32_t n = 0; n < rf.n_neurons(l); ++n) {
        const auto j = to_openai_neuron_record(rf.neuron(l, n), excerpt, text);
        const auto path = tmp / std::to_string(l) / (std::to_string(n) + ".json");
        std::ofstream f(path);
        f << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (!f) fail("{}: write failed", path.string());
        prog.update(++done);
      }
    }
    prog.finish();
    fs::rename(tmp, out);
    cleanup.keep = true;
    std::printf("exported %llu neurons to %s\n", static_cast<unsigned long long>(done), out.string().c_str());
  });
}

}  // namespace nexplain::cli
