#pragma once
#include <cstddef>
#include <string>

namespace nexplain::cuda {

struct DeviceInfo {
  bool available = false;
  int count = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  std::size_t memory_bytes = 0;
  std::string reason;  // why not available
};

DeviceInfo query_device();

}  // namespace nexplain::cuda
