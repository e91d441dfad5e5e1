// Device discovery for the CUDA backend. The backend proper (forward + on-device reduction)
// builds on this; without a GPU every entry point reports "no device" instead of failing.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "device_info.hpp"

namespace nexplain::cuda {

DeviceInfo query_device() {
  DeviceInfo info;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    info.reason = err != cudaSuccess ? cudaGetErrorString(err) : "no CUDA device present";
    cudaGetLastError();  // clear the sticky error so later queries start clean
    return info;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  info.available = true;
  info.count = count;
  info.name = prop.name;
  info.sm_major = prop.major;
  info.sm_minor = prop.minor;
  info.memory_bytes = prop.totalGlobalMem;
  // Touch cuBLAS so a broken installation shows here, not mid-run.
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
