#pragma once
// The runs named on the command line of `nexplain serve` and `nexplain report --html`, with the
// tokenizer that turns their token ids into text.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "viewer/viewer_run.hpp"

namespace nexplain::viewer {

// args: RESULTS arguments (resolve_run). records: only with a single argument. tokenizer_dir:
// explicit (Error when it cannot be loaded) or empty (the default search; without files the
// pages show token ids, with a warning).
std::vector<std::unique_ptr<ViewerRun>> open_runs(const std::vector<std::string>& args, const std::string& records,
                                                  const std::string& tokenizer_dir);

}  // namespace nexplain::viewer
