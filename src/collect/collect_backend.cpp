#include "collect/collect_backend.hpp"

#include "core/error.hpp"

namespace nexplain {

// Backends that keep moments elsewhere (device memory) must export them block by block before
// they can run under the MPI driver; until then say so instead of producing wrong moments.
std::vector<std::vector<Moments>> CollectBackend::take_moments() {
  fail("collect backend {}: moment blocks cannot be exported yet; run the MPI collect with --device cpu", name());
}

void CollectBackend::stage(const std::uint32_t*, float*, const std::uint64_t*, int) {
  fail("collect backend {}: pipeline stages are not supported; run with --pipeline-stages 1 or --device cpu", name());
}

}  // namespace nexplain
