#pragma once
// Status checks for every CUDA runtime and cuBLAS(Lt) call of the backend. A failure throws
// nexplain::Error naming the call, the source position and the library's error string, e.g.
//   "CUDA error at cuda/transformer_device.cpp:120: cudaMalloc(&p, bytes): cudaErrorMemoryAllocation
//    (out of memory)".
// Internal to cuda/: includes CUDA headers. The throwing functions live in cuda_check.cpp (host
// C++20) so that .cu files never include fmt.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace nexplain::cuda {

[[noreturn]] void throw_cuda_error(const char* file, int line, const char* expr, cudaError_t err);
[[noreturn]] void throw_cublas_error(const char* file, int line, const char* expr, cublasStatus_t status);
[[noreturn]] void throw_logic_error(const char* file, int line, const char* what);

}  // namespace nexplain::cuda

#define NX_CUDA(expr)                                                                        \
  do {                                                                                       \
    const cudaError_t nx_err_ = (expr);                                                      \
    if (nx_err_ != cudaSuccess) ::nexplain::cuda::throw_cuda_error(__FILE__, __LINE__, #expr, nx_err_); \
  } while (0)

#define NX_CUBLAS(expr)                                                                      \
  do {                                                                                       \
    const cublasStatus_t nx_st_ = (expr);                                                    \
    if (nx_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      ::nexplain::cuda::throw_cublas_error(__FILE__, __LINE__, #expr, nx_st_);               \
  } while (0)

// After a kernel launch: reports a bad launch configuration at once (execution errors surface at
// the next synchronising call, which is checked too).
#define NX_CUDA_LAUNCHED(what) NX_CUDA(cudaGetLastError())
