#include "cuda_check.hpp"

#include "core/error.hpp"

namespace nexplain::cuda {

namespace {
// "…/main/cuda/transformer_device.cpp" -> "cuda/transformer_device.cpp": the project-relative part.
const char* short_path(const char* file) {
  const char* best = file;
  for (const char* p = file; *p; ++p)
    if (p[0] == '/' && p[1] == 'c' && p[2] == 'u' && p[3] == 'd' && p[4] == 'a' && p[5] == '/') best = p + 1;
  return best;
}
}  // namespace

void throw_cuda_error(const char* file, int line, const char* expr, cudaError_t err) {
  throw Error(fmt::format("CUDA error at {}:{}: {}: {} ({})", short_path(file), line, expr, cudaGetErrorName(err),
                          cudaGetErrorString(err)));
}

void throw_cublas_error(const char* file, int line, const char* expr, cublasStatus_t status) {
  throw Error(fmt::format("cuBLAS error at {}:{}: {}: {} ({})", short_path(file), line, expr, cublasGetStatusName(status),
                          cublasGetStatusString(status)));
}

void throw_logic_error(const char* file, int line, const char* what) {
  throw Error(fmt::format("CUDA backend: internal error at {}:{}: {}", short_path(file), line, what));
}

}  // namespace nexplain::cuda
