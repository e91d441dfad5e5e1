#pragma once
// `nexplain report --html DIR`: the viewer's pages written as files, for a cluster's shared
// filesystem or a laptop without a server. The same renderers as the server, with relative links:
//   DIR/index.html                      the runs (or, for one run, its index by neuron)
//   DIR/run-<i>/by-neuron-<p>.html      the index, 100 neurons a page, by (layer, neuron)
//   DIR/run-<i>/by-score-<p>.html       the same by score, best first
//   DIR/run-<i>/neurons/<L>/<N>.html    every explained neuron
//   DIR/run-<i>/sweep.html              the sweep's progress when the report was written
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "viewer/viewer_run.hpp"

namespace nexplain::viewer {

struct ReportStats {
  std::size_t files = 0;
  std::size_t neurons = 0;
};

// progress(done, total) is called every few hundred neuron pages.
ReportStats write_html_report(std::vector<std::unique_ptr<ViewerRun>>& runs, const std::filesystem::path& dir,
                              const std::function<void(std::size_t, std::size_t)>& progress = {});

}  // namespace nexplain::viewer
