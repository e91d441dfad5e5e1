#pragma once
// A fixed set of worker threads for the CPU forward's data-parallel loops (attention heads,
// LayerNorm and GELU rows). The calling thread takes part, so a pool of n threads keeps n cores
// busy with n - 1 workers; workers sleep on a condition variable between calls.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nexplain {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end, worker) on disjoint chunks covering [0, n), `worker` in [0, size()),
  // and returns when all are done. The first exception thrown by fn is rethrown here.
  void parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t, int)>& fn);

 private:
  void worker_loop(int id);
  void run_chunks(int id);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  // The current job.
  const std::function<void(std::int64_t, std::int64_t, int)>* fn_ = nullptr;
  std::int64_t n_ = 0, chunk_ = 1, next_ = 0;
  int busy_ = 0;
  std::exception_ptr error_;
};

}  // namespace nexplain
