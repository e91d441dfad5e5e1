#include "model/thread_pool.hpp"

#include <algorithm>

namespace nexplain {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < std::max(threads, 1); ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

// Chunks are claimed under the lock; they are coarse (a few per thread), so the lock is cold.
void ThreadPool::run_chunks(int id) {
  std::unique_lock lock(mu_);
  while (next_ < n_) {
    const std::int64_t b = next_;
    const std::int64_t e = std::min(n_, b + chunk_);
    next_ = e;
    lock.unlock();
    try {
      (*fn_)(b, e, id);
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
      next_ = n_;  // abandon the rest of the job
      continue;
    }
    lock.lock();
  }
}

void ThreadPool::worker_loop(int id) {
  std::uint64_t seen = 0;
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    ++busy_;
    lock.unlock();
    run_chunks(id);
    lock.lock();
    if (--busy_ == 0) done_.notify_all();
  }
}

void ThreadPool::parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t, int)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_ = 0;
    // ~4 chunks per thread balances uneven work (causal attention rows) without much locking.
    chunk_ = std::max<std::int64_t>(1, n / (4 * size()));
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  run_chunks(0);
  std::exception_ptr err;
  {
    std::unique_lock lock(mu_);
    // Workers that woke late find no chunks left and leave at once; wait for those still working.
    done_.wait(lock, [&] { return busy_ == 0; });
    fn_ = nullptr;
    err = error_;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace nexplain
