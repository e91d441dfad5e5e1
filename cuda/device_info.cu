// Device discovery for the CUDA backend. The backend proper (forward + on-device reduction)
// builds on this; without a GPU every entry point reports "no device" instead of failing.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "device_info.hpp"

namespace nexplain::cuda {

DeviceInfo query_device(int local_rank) {
  DeviceInfo info;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    info.reason = err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device present";
    cudaGetLastError();  // clear the sticky error so later queries start clean
    return info;
  }
  info.count = count;
  int device = 0;
  if (local_rank >= 0) {
    device = local_rank % count;
    err = cudaSetDevice(device);
  } else {
    err = cudaGetDevice(&device);
  }
  cudaDeviceProp prop{};
  if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) {
    info.reason = std::string("device ") + std::to_string(device) + ": " + cudaGetErrorString(err);
    cudaGetLastError();
    return info;
  }
  info.available = true;
  info.index = device;
  info.name = prop.name;
  info.sm_major = prop.major;
  info.sm_minor = prop.minor;
  info.memory_bytes = prop.totalGlobalMem;
  // Touch cuBLAS so a broken installation shows here, not mid-run (on the chosen device: this
  // creates its context).
  cublasHandle_t h = nullptr;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    info.available = false;
    info.reason = "cuBLAS could not be initialised";
    return info;
  }
  cublasDestroy(h);
  return info;
}

}  // namespace nexplain::cuda
