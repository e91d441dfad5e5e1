#pragma once
// Where a page's links point. The same page renderers serve two sites: the live server (absolute
// URLs, any query) and the static report written by `nexplain report --html` (relative file
// names, only the pages that were written: the index in two orders, every neuron, the sweep).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "viewer/index_query.hpp"

namespace nexplain::viewer {

class Links {
 public:
  virtual ~Links() = default;
  virtual std::string home() const = 0;
  // nullopt when that view of the index does not exist (static report: filters and most orders).
  virtual std::optional<std::string> index(std::size_t run, const IndexQuery& q) const = 0;
  virtual std::string neuron(std::size_t run, std::uint32_t layer, std::uint32_t neuron) const = 0;
  virtual std::string sweep(std::size_t run) const = 0;
  // The JSON behind a page (server only), shown as a link for people scripting against it.
  virtual std::optional<std::string> api(const std::string& path) const = 0;
  // Live site: search form, self-refreshing sweep page.
  virtual bool live() const = 0;
};

// The server's URLs: /, /run/<i>/?<query>, /run/<i>/neuron/<L>/<N>, /run/<i>/sweep, /api/...
class ServerLinks final : public Links {
 public:
  std::string home() const override { return "/"; }
  std::optional<std::string> index(std::size_t run, const IndexQuery& q) const override;
  std::string neuron(std::size_t run, std::uint32_t layer, std::uint32_t neuron) const override;
  std::string sweep(std::size_t run) const override;
  std::optional<std::string> api(const std::string& path) const override { return "/api/" + path; }
  bool live() const override { return true; }
};

// The static report's files, relative to the page being written: `prefix` leads from that page's
// directory to the report's root ("", "../", "../../../").
class StaticLinks final : public Links {
 public:
  explicit StaticLinks(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string home() const override { return prefix_ + "index.html"; }
  std::optional<std::string> index(std::size_t run, const IndexQuery& q) const override;
  std::string neuron(std::size_t run, std::uint32_t layer, std::uint32_t neuron) const override;
  std::string sweep(std::size_t run) const override;
  std::optional<std::string> api(const std::string&) const override { return std::nullopt; }
  bool live() const override { return false; }

  // The file (relative to the report root) of a static index page, nullopt when not written:
  // unfiltered, 100 a page, by neuron ascending or by score descending.
  static std::optional<std::string> index_file(std::size_t run, const IndexQuery& q);
  static std::string neuron_file(std::size_t run, std::uint32_t layer, std::uint32_t neuron);
  static std::string sweep_file(std::size_t run);

 private:
  std::string prefix_;
};

}  // namespace nexplain::viewer
