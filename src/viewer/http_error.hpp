#pragma once
// An Error that carries the HTTP status it should be answered with (404 for an unknown neuron,
// 400 for a malformed query). Any other nexplain::Error reaching the router is a 400 too; other
// exceptions are 500s. The message is the answer's text, so it must never hold secrets.
#include "core/error.hpp"

namespace nexplain::viewer {

class HttpError : public Error {
 public:
  HttpError(int status, const std::string& what) : Error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

template <typename... Args>
[[noreturn]] void not_found(fmt::format_string<Args...> format, Args&&... args) {
  throw HttpError(404, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace nexplain::viewer
