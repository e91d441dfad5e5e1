#include "dist/state_wire.hpp"

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/error.hpp"

namespace nexplain {

namespace {

// Calls f(vector&) on every array that a state accumulates, in the wire order.
template <typename A, typename F>
void for_each_array(A& a, F&& f) {
  f(a.topk_count), f(a.topk_ids), f(a.topk_max), f(a.topk_acts);
  f(a.random_count), f(a.random_ids), f(a.random_hash), f(a.random_max), f(a.random_acts);
  f(a.quantile_count), f(a.quantile_ids), f(a.quantile_hash), f(a.quantile_max), f(a.quantile_acts);
  f(a.hist);
  f(a.mom_count), f(a.mom_mean), f(a.mom_m2), f(a.mom_m3), f(a.mom_m4);
}

constexpr std::size_t kPiece = std::size_t{1} << 30;  // bytes per MPI message piece

}  // namespace

std::vector<std::uint8_t> pack_state(const CaptureState& s) {
  std::vector<std::uint8_t> out;
  for_each_array(s.arrays(), [&](const auto& v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
    out.insert(out.end(), p, p + v.size() * sizeof(v[0]));
  });
  return out;
}

CaptureState unpack_state(const CaptureParams& params, std::uint32_t n_neurons, const std::vector<double>& boundaries,
                          const std::vector<std::uint8_t>& bytes) {
  CaptureArrays a = CaptureArrays::empty(params, n_neurons, boundaries);
  std::size_t off = 0;
  for_each_array(a, [&](auto& v) {
    const std::size_t n = v.size() * sizeof(v[0]);
    if (off + n > bytes.size())
      fail("state message (layer {}): {} bytes, shorter than the state's arrays", params.layer, bytes.size());
    std::memcpy(v.data(), bytes.data() + off, n);
    off += n;
  });
  if (off != bytes.size())
    fail("state message (layer {}): {} bytes, expected {}", params.layer, bytes.size(), off);
  return CaptureState(params, std::move(a));
}

void send_bytes(const std::vector<std::uint8_t>& bytes, int dest, int tag, MPI_Comm comm) {
  const std::uint64_t n = bytes.size();
  MPI_Send(&n, 1, MPI_UINT64_T, dest, tag, comm);
  for (std::size_t off = 0; off < bytes.size(); off += kPiece) {
    const std::size_t k = std::min(kPiece, bytes.size() - off);
    MPI_Send(bytes.data() + off, static_cast<int>(k), MPI_BYTE, dest, tag, comm);
  }
}

std::vector<std::uint8_t> recv_bytes(int source, int tag, MPI_Comm comm) {
  std::uint64_t n = 0;
  MPI_Recv(&n, 1, MPI_UINT64_T, source, tag, comm, MPI_STATUS_IGNORE);
  std::vector<std::uint8_t> bytes(n);
  for (std::size_t off = 0; off < bytes.size(); off += kPiece) {
    const std::size_t k = std::min(kPiece, bytes.size() - off);
    MPI_Recv(bytes.data() + off, static_cast<int>(k), MPI_BYTE, source, tag, comm, MPI_STATUS_IGNORE);
  }
  return bytes;
}

}  // namespace nexplain
