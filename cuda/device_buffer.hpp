#pragma once
// RAII owners of device and pinned host memory for the CUDA backend (internal to cuda/).
// Allocation failures throw nexplain::Error through NX_CUDA; destructors never throw.
#include <cstddef>
#include <cstdint>
#include <utility>

#include "cuda_check.hpp"

namespace nexplain::cuda {

// n elements of T in device memory (cudaMalloc: 256-byte aligned, as cuBLASLt's default
// alignment preference assumes). Contents are uninitialised after resize.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) { resize(n); }
  ~DeviceArray() { reset(); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  void resize(std::size_t n) {
    reset();
    if (n == 0) return;
    void* p = nullptr;
    NX_CUDA(cudaMalloc(&p, n * sizeof(T)));
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  void reset() noexcept {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }

  T* get() const { return p_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }

  // Synchronous copies of the first n elements (n <= size()).
  void upload(const T* host, std::size_t n) {
    if (n > n_) throw_logic_error(__FILE__, __LINE__, "DeviceArray::upload beyond the allocation");
    if (n) NX_CUDA(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, std::size_t n) const {
    if (n > n_) throw_logic_error(__FILE__, __LINE__, "DeviceArray::download beyond the allocation");
    if (n) NX_CUDA(cudaMemcpy(host, p_, n * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// n elements of T in page-locked host memory (for asynchronous uploads).
template <typename T>
class PinnedArray {
 public:
  PinnedArray() = default;
  ~PinnedArray() { reset(); }
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;

  void resize(std::size_t n) {
    reset();
    if (n == 0) return;
    void* p = nullptr;
    NX_CUDA(cudaMallocHost(&p, n * sizeof(T)));
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  void reset() noexcept {
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// A CUDA event for ordering host reuse of pinned buffers against the stream.
class Event {
 public:
  Event() { NX_CUDA(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }
  void record(cudaStream_t s) {
    NX_CUDA(cudaEventRecord(e_, s));
    recorded_ = true;
  }
  void wait_host() {
    if (recorded_) NX_CUDA(cudaEventSynchronize(e_));
  }

 private:
  cudaEvent_t e_ = nullptr;
  bool recorded_ = false;
};

}  // namespace nexplain::cuda
