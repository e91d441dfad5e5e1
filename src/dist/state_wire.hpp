#pragma once
// Reduction states as flat bytes for MPI messages between ranks of one job (same build, same
// endianness): the arrays of CaptureArrays concatenated in a fixed order. The receiver knows the
// shapes from the params, so only the payload travels; boundaries are identical on every rank
// (the pre-pass is allreduced) and are not sent.
#include <cstdint>
#include <vector>

#include <mpi.h>

#include "capture/capture_state.hpp"

namespace nexplain {

std::vector<std::uint8_t> pack_state(const CaptureState& s);
// Rebuilds a state with `boundaries` from pack_state bytes (Error when the size is wrong).
CaptureState unpack_state(const CaptureParams& params, std::uint32_t n_neurons, const std::vector<double>& boundaries,
                          const std::vector<std::uint8_t>& bytes);

// Point-to-point byte messages of any size (split into pieces below INT_MAX).
void send_bytes(const std::vector<std::uint8_t>& bytes, int dest, int tag, MPI_Comm comm);
std::vector<std::uint8_t> recv_bytes(int source, int tag, MPI_Comm comm);

}  // namespace nexplain
