#pragma once
#include <cstddef>
#include <string>

namespace nexplain::cuda {

struct DeviceInfo {
  bool available = false;
  int count = 0;   // devices visible to this process (CUDA_VISIBLE_DEVICES applies)
  int index = 0;   // the device described, current for the calling host thread
  std::string name;
  int sm_major = 0, sm_minor = 0;
  std::size_t memory_bytes = 0;
  std::string reason;  // why not available
};

// Is there a usable device, and why not. local_rank >= 0 first makes device
// local_rank % count current for the calling host thread (cudaSetDevice, before this function or
// anything else creates a context), so that the ranks of one node spread over its GPUs; the
// local rank itself comes from host code (src/collect/node_local_rank.hpp), because cuda/ cannot
// call the library's MPI code. local_rank < 0: the current device, unchanged.
DeviceInfo query_device(int local_rank = -1);

}  // namespace nexplain::cuda
