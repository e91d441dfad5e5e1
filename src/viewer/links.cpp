#include "viewer/links.hpp"

namespace nexplain::viewer {

namespace {
std::string run_dir(std::size_t run) { return "run-" + std::to_string(run) + "/"; }
}  // namespace

std::optional<std::string> ServerLinks::index(std::size_t run, const IndexQuery& q) const {
  return "/run/" + std::to_string(run) + "/" + to_query_string(q);
}
std::string ServerLinks::neuron(std::size_t run, std::uint32_t layer, std::uint32_t neuron) const {
  return "/run/" + std::to_string(run) + "/neuron/" + std::to_string(layer) + "/" + std::to_string(neuron);
}
std::string ServerLinks::sweep(std::size_t run) const { return "/run/" + std::to_string(run) + "/sweep"; }

std::optional<std::string> StaticLinks::index_file(std::size_t run, const IndexQuery& q) {
  if (q.layer || q.min_score || q.max_score || !q.text.empty() || q.status != StatusFilter::all || q.per_page != 100)
    return std::nullopt;
  if (q.sort == SortKey::neuron && !q.descending) return run_dir(run) + "by-neuron-" + std::to_string(q.page) + ".html";
  if (q.sort == SortKey::score && q.descending) return run_dir(run) + "by-score-" + std::to_string(q.page) + ".html";
  return std::nullopt;
}
std::string StaticLinks::neuron_file(std::size_t run, std::uint32_t layer, std::uint32_t neuron) {
  return run_dir(run) + "neurons/" + std::to_string(layer) + "/" + std::to_string(neuron) + ".html";
}
std::string StaticLinks::sweep_file(std::size_t run) { return run_dir(run) + "sweep.html"; }

std::optional<std::string> StaticLinks::index(std::size_t run, const IndexQuery& q) const {
  auto f = index_file(run, q);
  if (!f) return std::nullopt;
  return prefix_ + *f;
}
std::string StaticLinks::neuron(std::size_t run, std::uint32_t layer, std::uint32_t neuron) const {
  return prefix_ + neuron_file(run, layer, neuron);
}
std::string StaticLinks::sweep(std::size_t run) const { return prefix_ + sweep_file(run); }

}  // namespace nexplain::viewer
