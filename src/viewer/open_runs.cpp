#include "viewer/open_runs.hpp"

#include <filesystem>

#include <spdlog/spdlog.h>

#include "core/error.hpp"
#include "tokenizer/tokenizer_dir.hpp"

namespace nexplain::viewer {

std::vector<std::unique_ptr<ViewerRun>> open_runs(const std::vector<std::string>& args, const std::string& records,
                                                  const std::string& tokenizer_dir) {
  if (args.empty()) fail("no RESULTS given: name a sweep directory, an explain directory or a results.jsonl");
  if (!records.empty() && args.size() != 1) fail("--records applies to one RESULTS argument, {} were given", args.size());
  std::shared_ptr<const Tokenizer> tokenizer;
  try {
    tokenizer = load_tokenizer(locate_tokenizer_dir(tokenizer_dir));
  } catch (const Error& e) {
    if (!tokenizer_dir.empty()) throw;
    spdlog::warn("no tokenizer ({}); excerpts will show token ids", e.what());
  }
  std::vector<std::unique_ptr<ViewerRun>> runs;
  for (const auto& a : args) {
    auto paths = resolve_run(a, records);
    if (paths.records.empty())
      spdlog::warn("{}: no records file found: neuron pages will show no excerpts (--records)", a);
    else if (!std::filesystem::exists(paths.records))
      spdlog::info("{}: {} is not written yet (the sweep is collecting)", a, paths.records.string());
    if (paths.current_results().empty()) spdlog::warn("{}: no results.jsonl or journal.jsonl yet", a);
    runs.push_back(std::make_unique<ViewerRun>(std::move(paths), tokenizer));
  }
  return runs;
}

}  // namespace nexplain::viewer
